//! `stigmer local logs` without a unit: every unit's log as one, in the
//! order its lines were read from the processes (the capture times beside
//! each log, [`crate::logfile::merge`]), each line prefixed with its
//! unit's name, colored on a terminal unless `--no-color` or `NO_COLOR`;
//! `--json` prints one object per line instead.

use super::logs::{INSTANCE_CHECK, Signals, log_of};
use super::running;
use crate::cli::LogsArgs;
use crate::disk::Stream;
use crate::exit::Failure;
use crate::logfile::merge::{self, Line, Tailer};
use crate::model::{Code, Kind, TEMPORAL};
use crate::paths::StateDir;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often `-f` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// The units whose logs there are: Temporal first, then the services by
/// name.
fn units_present(home: &StateDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.log_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let unit = name.strip_suffix(".log")?.to_string();
            (unit != "daemon" && crate::config::services::valid_name(&unit)).then_some(unit)
        })
        .collect();
    names.sort_by_key(|n| (!Kind::of_name(n).is_temporal(), n.clone()));
    if names.is_empty() {
        names.push(TEMPORAL.to_string());
    }
    names
}

/// `--since`: a duration ago, or a time; Unix ms.
fn since(text: &str) -> Result<u64, Failure> {
    let now = SystemTime::now();
    let at = humantime::parse_duration(text)
        .map(|d| now - d)
        .or_else(|_| humantime::parse_rfc3339_weak(text))
        .map_err(|_| {
            Failure::Relayed(
                Code::Usage,
                format!(
                    "--since {text:?} is neither a duration (90s, 5m, 2h) nor a time (2026-12-02T07:00:00Z)"
                ),
            )
        })?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// How lines are printed.
struct Printer {
    names: Vec<String>,
    width: usize,
    color: bool,
    json: bool,
}

/// Colors of the units' names, in turn.
const COLORS: [&str; 6] = ["36", "32", "33", "35", "34", "31"];

impl Printer {
    fn print(&self, out: &mut impl Write, l: &Line) -> std::io::Result<()> {
        let name = &self.names[l.unit];
        let text = String::from_utf8_lossy(&l.text);
        if self.json {
            let ts = (l.ms > 0).then(|| {
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(l.ms))
                    .to_string()
            });
            let stream = match l.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            let obj = serde_json::json!({"unit": name, "ts": ts, "stream": stream, "line": text});
            return writeln!(out, "{obj}");
        }
        if self.color {
            let c = COLORS[l.unit % COLORS.len()];
            writeln!(out, "\x1b[{c}m{name:<w$} |\x1b[0m {text}", w = self.width)
        } else {
            writeln!(out, "{name:<w$} | {text}", w = self.width)
        }
    }
}

/// Run the interleaved `logs`.
pub fn run(args: &LogsArgs, home: &StateDir) -> Result<Code, Failure> {
    let names: Vec<String> = match (&args.service, args.services.is_empty()) {
        (Some(one), _) => vec![one.clone()],
        (None, false) => args.services.clone(),
        (None, true) => units_present(home),
    };
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| log_of(home, n))
        .collect::<Result<_, _>>()?;
    for p in &paths {
        crate::paths::refuse_symlink(p)?;
    }
    let since = args.since.as_deref().map(since).transpose()?;
    let printer = Printer {
        width: names.iter().map(String::len).max().unwrap_or(0),
        color: !args.no_color
            && !args.json
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stdout().is_terminal(),
        json: args.json,
        names,
    };
    let signals = args.follow.then(Signals::register).transpose()?;
    // Following starts where the lines shown end: none twice, none lost.
    let mut tailer = args.follow.then(|| Tailer::at_end(&paths));
    let ends = tailer.as_ref().map(Tailer::positions);
    let lines = merge::recent(&paths, args.lines, since, ends.as_deref())?;
    let mut out = std::io::stdout().lock();
    for l in &lines {
        if printer.print(&mut out, l).is_err() {
            return Ok(Code::Ok);
        }
    }
    let (Some(signals), Some(tailer)) = (signals, tailer.as_mut()) else {
        return Ok(Code::Ok);
    };
    if out.flush().is_err() {
        return Ok(Code::Ok);
    }
    let mut next_check = Instant::now() + INSTANCE_CHECK;
    loop {
        if signals.int.load(Ordering::Relaxed) {
            return Ok(Code::Interrupted);
        }
        if signals.term.load(Ordering::Relaxed) {
            return Ok(Code::Terminated);
        }
        let lines = tailer.poll()?;
        for l in &lines {
            if printer.print(&mut out, l).is_err() {
                return Ok(Code::Ok);
            }
        }
        if !lines.is_empty() && out.flush().is_err() {
            return Ok(Code::Ok);
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + INSTANCE_CHECK;
            if !running(home).unwrap_or(false) {
                // What the last processes wrote on their way out.
                for l in &tailer.poll()? {
                    let _ = printer.print(&mut out, l);
                }
                eprintln!(
                    "The instance in {} is not running: nothing more will be logged.",
                    home.root().display()
                );
                return Ok(Code::NotRunning);
            }
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
