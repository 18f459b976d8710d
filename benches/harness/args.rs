//! Command-line flags of the benchmark (after `cargo bench --bench
//! supervisors --`), through clap like the CLI's own.

use clap::Parser;
use clap::builder::PossibleValuesParser;
use std::path::PathBuf;
use std::time::Duration;

/// Every contender, in the default order (the floor first).
/// `stigmer-stack` is stigmer with three stand-in services beside Temporal.
pub const ALL_CONTENDERS: [&str; 7] = [
    "floor",
    "stigmer",
    "stigmer-stack",
    "runit",
    "s6",
    "daemontools",
    "supervisord",
];

/// Every phase, for `--skip`.
pub const ALL_PHASES: [&str; 8] = [
    "cold", "stop", "start", "status", "kill", "hang", "idle", "load",
];

/// Seconds as a non-negative number.
fn secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a non-negative number of seconds: {v:?}"))
}

/// Milliseconds as a non-negative number.
fn millis(v: &str) -> Result<Duration, String> {
    secs(v).map(|d| d / 1000)
}

/// Supervises the same real Temporal dev server command under each
/// contender in turn and measures kill/hang recovery, start/status/stop
/// latency, cold start, idle overhead and HTTP endpoint latency. Writes
/// OUT/results.md and OUT/samples.json and prints the table.
#[derive(Debug, Clone, Parser)]
#[command(name = "cargo bench --bench supervisors --")]
pub struct Args {
    /// Cycles per measured figure.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub cycles: u16,
    /// Run the whole contender sequence this many times, each round
    /// measuring --cycles cycles of each figure; samples are pooled. The
    /// machine's slow drift then falls on every contender alike (a ratio
    /// between contenders measured in one block each can drift ±15 %).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub rounds: u16,
    /// SIGSTOP cycles [default: --cycles].
    #[arg(long)]
    pub hang_cycles: Option<u16>,
    /// Give up on a hung server after this long (its result reads "never").
    #[arg(long, default_value = "10", value_parser = secs, value_name = "SECS")]
    pub hang_wait: Duration,
    /// Contenders, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = ALL_CONTENDERS,
        value_parser = PossibleValuesParser::new(ALL_CONTENDERS),
        required = false
    )]
    pub contenders: Vec<String>,
    /// Phases to skip.
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(ALL_PHASES))]
    pub skip: Vec<String>,
    /// Idle window for supervisor RSS/CPU.
    #[arg(long = "idle-secs", default_value = "60", value_parser = secs, value_name = "SECS")]
    pub idle: Duration,
    /// Duration of each HTTP load run (at least 1 s).
    #[arg(long = "load-secs", default_value = "5", value_parser = secs, value_name = "SECS")]
    pub load: Duration,
    /// Concurrent connections of the HTTP load.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub load_connections: u32,
    /// HTTP load client: wrk if installed (auto), wrk, or the built-in one.
    #[arg(long, default_value = "auto", value_parser = ["auto", "wrk", "builtin"])]
    pub load_tool: String,
    /// Confirmed SERVING before each cycle.
    #[arg(long, default_value = "1.5", value_parser = secs, value_name = "SECS")]
    pub settle: Duration,
    /// gRPC health poll interval.
    #[arg(long = "poll-ms", default_value = "2", value_parser = millis, value_name = "MS")]
    pub poll: Duration,
    /// Give up on a kill/cold/stop cycle after this long (at least 1 s).
    #[arg(long, default_value = "30", value_parser = secs, value_name = "SECS")]
    pub bound: Duration,
    /// Extra argument for every contender's Temporal command (repeatable,
    /// e.g. `--temporal-arg=--sqlite-pragma=journal_mode=wal`): how the
    /// floor experiments of docs/benchmark.md were run. stigmer gets
    /// `--sqlite-pragma` and `--log-level` as its own options.
    #[arg(long = "temporal-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub temporal_extra: Vec<String>,
    /// Temporal binary [default: `temporal` on PATH, pyenv shim resolved].
    #[arg(long, value_name = "PATH")]
    pub temporal_bin: Option<PathBuf>,
    /// The `stigmer` binary the stigmer contenders run [default: the one
    /// this `cargo bench` built]. scripts/bench.sh passes the static
    /// release build (README, "Install").
    #[arg(long, value_name = "PATH")]
    pub stigmer_bin: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "bench-results", value_name = "DIR")]
    pub out: PathBuf,
    /// Appended by cargo.
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Libtest's; ignored.
    #[arg(long, hide = true)]
    pub nocapture: bool,
    /// The flags as given (for the report).
    #[arg(skip)]
    pub raw: String,
}

impl Args {
    /// Parse the process arguments; the error is clap's (help included).
    pub fn from_env() -> Result<Args, clap::Error> {
        let mut a = Args::try_parse()?;
        a.load = a.load.max(Duration::from_secs(1));
        a.bound = a.bound.max(Duration::from_secs(1));
        a.raw = std::env::args()
            .skip(1)
            .filter(|s| s != "--bench" && s != "--nocapture")
            .collect::<Vec<_>>()
            .join(" ");
        Ok(a)
    }

    /// Is `phase` to be measured?
    pub fn runs(&self, phase: &str) -> bool {
        !self.skip.iter().any(|s| s == phase)
    }

    /// Measured cycles per figure.
    pub fn cycles(&self) -> usize {
        usize::from(self.cycles)
    }

    /// SIGSTOP cycles.
    pub fn hang_cycles(&self) -> usize {
        usize::from(self.hang_cycles.unwrap_or(self.cycles))
    }
}
