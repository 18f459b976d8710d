//! Command-line flags of the benchmark (after `cargo bench --bench supervisors --`).

use std::path::PathBuf;
use std::time::Duration;

/// Every contender, in the default order (the floor first).
pub const ALL_CONTENDERS: [&str; 5] = ["floor", "stigmer", "runit", "s6", "supervisord"];

/// Every phase, for `--skip`.
pub const ALL_PHASES: [&str; 8] = [
    "cold", "stop", "start", "status", "kill", "hang", "idle", "load",
];

pub const USAGE: &str = "\
usage: cargo bench --bench supervisors -- [FLAGS]

Supervises the same real Temporal dev server command under each contender in
turn and measures kill/hang recovery, start/status/stop latency, cold start,
idle overhead and HTTP endpoint latency. Writes OUT/results.md and
OUT/samples.json and prints the table.

  --cycles N            cycles per measured figure (default 20)
  --hang-cycles N       SIGSTOP cycles (default: --cycles)
  --hang-wait SECS      give up on a hung server after this long: \"never\" (default 10)
  --contenders LIST     comma-separated, in order (default floor,stigmer,runit,s6,supervisord)
  --skip LIST           phases to skip: cold,stop,start,status,kill,hang,idle,load
  --idle-secs SECS      idle window for supervisor RSS/CPU (default 60)
  --load-secs SECS      duration of each HTTP load run (default 5)
  --load-connections N  concurrent connections of the HTTP load (default 4)
  --load-tool TOOL      auto (wrk if installed), wrk or builtin (default auto)
  --settle SECS         confirmed SERVING before each cycle (default 1.5)
  --poll-ms MS          gRPC health poll interval (default 2)
  --bound SECS          give up on a kill/cold/stop cycle after this long (default 30)
  --temporal-bin PATH   Temporal binary (default: `temporal` on PATH, pyenv shim resolved)
  --out DIR             output directory (default bench-results)
  --help                this text
";

/// Parsed flags.
#[derive(Debug, Clone)]
pub struct Args {
    pub cycles: usize,
    pub hang_cycles: usize,
    pub hang_wait: Duration,
    pub contenders: Vec<String>,
    pub skip: Vec<String>,
    pub idle: Duration,
    pub load: Duration,
    pub load_connections: u32,
    pub load_tool: String,
    pub settle: Duration,
    pub poll: Duration,
    pub bound: Duration,
    pub temporal_bin: Option<PathBuf>,
    pub out: PathBuf,
    /// The flags as given (for the report).
    pub raw: String,
}

impl Args {
    /// Is `phase` to be measured?
    pub fn runs(&self, phase: &str) -> bool {
        !self.skip.iter().any(|s| s == phase)
    }

    /// Parse; `Err` carries the message to print (usage for `--help`).
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut a = Args {
            cycles: 20,
            hang_cycles: 0,
            hang_wait: Duration::from_secs(10),
            contenders: ALL_CONTENDERS.iter().map(|s| s.to_string()).collect(),
            skip: Vec::new(),
            idle: Duration::from_secs(60),
            load: Duration::from_secs(5),
            load_connections: 4,
            load_tool: "auto".into(),
            settle: Duration::from_millis(1500),
            poll: Duration::from_millis(2),
            bound: Duration::from_secs(30),
            temporal_bin: None,
            out: PathBuf::from("bench-results"),
            raw: String::new(),
        };
        let mut hang_cycles = None;
        let mut given = Vec::new();
        let mut it = raw.iter().peekable();
        while let Some(arg) = it.next() {
            // cargo appends --bench; libtest-style flags are ignored too.
            if arg == "--bench" || arg == "--nocapture" {
                continue;
            }
            if arg == "--help" || arg == "-h" {
                return Err(USAGE.to_string());
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Result<String, String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}")),
                }
            };
            let v = match flag.as_str() {
                "--cycles" | "--hang-cycles" | "--hang-wait" | "--contenders" | "--skip"
                | "--idle-secs" | "--load-secs" | "--load-connections" | "--load-tool"
                | "--settle" | "--poll-ms" | "--bound" | "--temporal-bin" | "--out" => value()?,
                _ => return Err(format!("unknown flag {arg:?}\n\n{USAGE}")),
            };
            given.push(format!("{flag} {v}"));
            let num = |v: &str| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("{flag}: not a non-negative number: {v:?}"))
            };
            let count = |v: &str| -> Result<usize, String> {
                v.parse::<usize>()
                    .map_err(|_| format!("{flag}: not a count: {v:?}"))
            };
            let list = |v: &str, allowed: &[&str]| -> Result<Vec<String>, String> {
                let items: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                match items.iter().find(|i| !allowed.contains(&i.as_str())) {
                    Some(bad) => Err(format!(
                        "{flag}: unknown {bad:?} (known: {})",
                        allowed.join(",")
                    )),
                    None => Ok(items),
                }
            };
            match flag.as_str() {
                "--cycles" => a.cycles = count(&v)?.max(1),
                "--hang-cycles" => hang_cycles = Some(count(&v)?),
                "--hang-wait" => a.hang_wait = Duration::from_secs_f64(num(&v)?),
                "--contenders" => a.contenders = list(&v, &ALL_CONTENDERS)?,
                "--skip" => a.skip = list(&v, &ALL_PHASES)?,
                "--idle-secs" => a.idle = Duration::from_secs_f64(num(&v)?),
                "--load-secs" => a.load = Duration::from_secs_f64(num(&v)?.max(1.0)),
                "--load-connections" => a.load_connections = count(&v)?.clamp(1, 256) as u32,
                "--load-tool" => match v.as_str() {
                    "auto" | "wrk" | "builtin" => a.load_tool = v.clone(),
                    _ => return Err(format!("--load-tool: auto, wrk or builtin, not {v:?}")),
                },
                "--settle" => a.settle = Duration::from_secs_f64(num(&v)?),
                "--poll-ms" => a.poll = Duration::from_secs_f64(num(&v)? / 1000.0),
                "--bound" => a.bound = Duration::from_secs_f64(num(&v)?.max(1.0)),
                "--temporal-bin" => a.temporal_bin = Some(PathBuf::from(v)),
                "--out" => a.out = PathBuf::from(v),
                _ => unreachable!(),
            }
        }
        if a.contenders.is_empty() {
            return Err(format!("--contenders: empty\n\n{USAGE}"));
        }
        a.hang_cycles = hang_cycles.unwrap_or(a.cycles);
        a.raw = given.join(" ");
        Ok(a)
    }
}
