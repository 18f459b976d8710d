//! `stigmer local upgrade`: the binary running this command (or
//! `--binary`) replaces the running daemon, which keeps its pid, its lock
//! and every supervised process (see the daemon's upgrade module). Exit 0
//! with one line saying from what to what and how long the handover
//! took; 12 when the new binary did not take over (the old daemon still
//! supervises); 20 when nothing supervises any more; 3 when nothing ran.
//! The code says what is true once the upgrade is over, checked with the
//! daemon itself, not only what its answer said.

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
    let asked = ask(
        &home.control_socket(),
        &Request::Upgrade {
            binary: binary.clone(),
        },
        TIMEOUT,
    );
    // The answer says what the daemon meant to do; what is true now is
    // checked after the fact, and that is what the exit code says.
    let now = supervisor_after(&home, &binary);
    match (asked, now) {
        (Ok(Reply::Upgraded(done)), Supervisor::New) => {
            let temporal = done.temporal_pid.map_or_else(String::new, |p| {
                format!("; Temporal kept running (pid {p})")
            });
            println!(
                "Upgraded the daemon (pid {}) from stigmer {} ({}) to stigmer {} ({}) in {:.0} ms{temporal}.",
                done.pid,
                done.from.version,
                done.from.exe,
                done.to.version,
                done.to.exe,
                done.handover_ms
            );
            Ok(Code::Ok)
        }
        (_, Supervisor::New) => {
            println!(
                "Upgraded: the daemon now runs {} (its answer was lost).",
                binary.display()
            );
            Ok(Code::Ok)
        }
        (Ok(Reply::Error { message }), Supervisor::Old) => Err(Failure::Upgrade(message)),
        (Ok(other), Supervisor::Old) => Err(Failure::Upgrade(format!(
            "unexpected answer {}",
            other.legacy()
        ))),
        (Err(e), Supervisor::Old) => Err(Failure::Upgrade(e.to_string())),
        (answer, Supervisor::Nobody) => {
            let said = match answer {
                Ok(Reply::Upgraded(_)) => "the new daemon took over, then stopped".to_string(),
                Ok(Reply::Error { message }) => message,
                Ok(other) => other.legacy(),
                Err(e) => e.to_string(),
            };
            Err(Failure::Relayed(
                Code::NothingSupervises,
                format!(
                    "nothing supervises the stack in {} now ({said}): the daemon has ended, and Temporal and the services stopped with it; see {} and run `stigmer local start`",
                    home.root().display(),
                    home.daemon_log().display()
                ),
            ))
        }
    }
}

/// Who supervises a home after an upgrade.
enum Supervisor {
    /// A daemon running the binary asked for.
    New,
    /// A daemon running another binary (the one before).
    Old,
    /// No daemon.
    Nobody,
}

/// Ask the home's daemon who it is, for a while: right after a
/// handover it may still be adopting (the control socket queues the
/// request meanwhile), and one that is stopping answers until it is gone.
fn supervisor_after(home: &crate::paths::StateDir, binary: &std::path::Path) -> Supervisor {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = Request::Status { live: false };
    loop {
        match ask(&home.control_socket(), &status, Duration::from_secs(5)) {
            Ok(Reply::Status { document }) => {
                let exe = document.supervisor.exe.unwrap_or_default();
                let exe = exe.trim_end_matches(" (deleted)");
                let same = std::fs::canonicalize(exe).is_ok_and(|e| e == binary)
                    || std::path::Path::new(exe) == binary;
                return if same {
                    Supervisor::New
                } else {
                    Supervisor::Old
                };
            }
            _ if !running(home).unwrap_or(true) => return Supervisor::Nobody,
            _ if std::time::Instant::now() >= deadline => return Supervisor::Nobody,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
