//! `stigmer local upgrade`: the binary running this command (or
//! `--binary`) replaces the running daemon, which keeps its pid, its lock
//! and every supervised process (see the daemon's upgrade module). Exit 0
//! with one line saying from what to what and how long the handover
//! took; 12 when the new binary did not take over (the old daemon still
//! supervises); 3 when nothing runs.

use super::{home, running};
use crate::cli::UpgradeArgs;
use crate::exit::Failure;
use crate::ipc::control::{Reply, Request, ask};
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
    let done = match ask(
        &home.control_socket(),
        &Request::Upgrade { binary },
        TIMEOUT,
    ) {
        Ok(Reply::Upgraded(done)) => done,
        Ok(Reply::Error { message }) => return Err(Failure::Upgrade(message)),
        Ok(other) => return Err(Failure::Upgrade(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(Failure::Upgrade(e.to_string())),
    };
    let temporal = done.temporal_pid.map_or_else(String::new, |p| {
        format!("; Temporal kept running (pid {p})")
    });
    println!(
        "Upgraded the daemon (pid {}) from stigmer {} ({}) to stigmer {} ({}) in {:.0} ms{temporal}.",
        done.pid, done.from.version, done.from.exe, done.to.version, done.to.exe, done.handover_ms
    );
    Ok(Code::Ok)
}
