//! `stigmer local upgrade`: the binary running this command (or
//! `--binary`) replaces the running daemon, which keeps its pid, its lock
//! and every supervised process (see [`crate::daemon::upgrade`]). Exit 0
//! with one line saying from what to what and how long the handover
//! took; 12 when the new binary did not take over (the old daemon still
//! supervises); 3 when nothing runs.

use super::{home, running};
use crate::cli::UpgradeArgs;
use crate::daemon::control::{self, Upgrade};
use crate::daemon::upgrade::Upgraded;
use crate::exit::Failure;
use crate::model::Code;
use std::time::Duration;

/// Longest the whole handover may take (the new binary's check is
/// bounded at 10 s; the rest takes milliseconds).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Run `upgrade`.
pub fn run(args: &UpgradeArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    if !running(&home)? {
        println!(
            "Nothing runs in {}: nothing to upgrade (`stigmer local` starts this binary).",
            home.root().display()
        );
        return Ok(Code::NotRunning);
    }
    let binary = match &args.binary {
        Some(p) => std::fs::canonicalize(p).map_err(|e| {
            Failure::Relayed(Code::Binary, format!("--binary {}: {e}", p.display()))
        })?,
        None => std::env::current_exe()?,
    };
    let request = Upgrade { binary };
    let json = serde_json::to_string(&request).map_err(|e| Failure::Internal(e.to_string()))?;
    let answer = control::query(&home.control_socket(), &format!("upgrade {json}"), TIMEOUT)
        .map_err(Failure::Upgrade)?;
    let done: Upgraded = answer
        .strip_prefix("ok ")
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| Failure::Upgrade(format!("unexpected answer {answer:?}")))?;
    let temporal = done.temporal_pid.map_or_else(String::new, |p| {
        format!("; Temporal kept running (pid {p})")
    });
    println!(
        "Upgraded the daemon (pid {}) from stigmer {} ({}) to stigmer {} ({}) in {:.0} ms{temporal}.",
        done.pid, done.from.version, done.from.exe, done.to.version, done.to.exe, done.handover_ms
    );
    Ok(Code::Ok)
}
