//! `stigmer local reload [--dry-run]`: ask the daemon to read
//! `stigmer.toml` again and apply the difference (see
//! [`crate::daemon`]'s reload), print what it did unit by unit, then wait
//! until the units it started or replaced are ready. An invalid file
//! changes nothing and exits with the code `start` would (10, 11, 13, 14;
//! 4 for a command that is not installed).

use super::{Check, fetch_status, home, running};
use crate::cli::ReloadArgs;
use crate::exit::Failure;
use crate::ipc::control::{ReloadReport, Reply, Request, ask};
use crate::model::Code;
use std::time::{Duration, Instant};

/// Run `reload`.
pub fn run(args: &ReloadArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    if !running(&home)? {
        eprintln!(
            "stigmer is not running (nothing to reload); `stigmer local start` reads the file"
        );
        return Ok(Code::NotRunning);
    }
    let t0 = Instant::now();
    let request = Request::Reload {
        dry_run: args.dry_run,
    };
    // Removed services are stopped before the answer: allow their grace.
    let report = match ask(&home.control_socket(), &request, Duration::from_secs(120)) {
        Ok(Reply::Reloaded { report }) => report,
        Ok(Reply::Failed { code, message }) => {
            return Err(Failure::Relayed(
                code,
                format!("{message}; nothing changed"),
            ));
        }
        Ok(Reply::Error { message }) => return Err(Failure::StartFailed(message)),
        Ok(other) => return Err(Failure::Internal(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(Failure::StartFailed(e.to_string())),
    };
    print_report(&report);
    if args.dry_run {
        return Ok(Code::Ok);
    }
    wait_ready(
        &home,
        &report,
        t0,
        Duration::from_secs_f64(args.timeout.max(0.0)),
    )
}

fn print_report(r: &ReloadReport) {
    let verb = if r.applied {
        "Reloaded"
    } else {
        "Would reload"
    };
    println!("{verb} the configuration:");
    for c in &r.changes {
        if c.detail.is_empty() {
            println!("  {:<14} {}", c.unit, c.action);
        } else {
            println!("  {:<14} {} ({})", c.unit, c.action, c.detail);
        }
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
}

/// Wait until every unit the reload started or replaced is ready again;
/// print how each ended.
fn wait_ready(
    home: &crate::paths::StateDir,
    r: &ReloadReport,
    t0: Instant,
    timeout: Duration,
) -> Result<Code, Failure> {
    let touched: Vec<&str> = r
        .changes
        .iter()
        .filter(|c| matches!(c.action.as_str(), "added" | "changed" | "restarted"))
        .map(|c| c.unit.as_str())
        .collect();
    if touched.is_empty() {
        return Ok(Code::Ok);
    }
    let deadline = t0 + timeout;
    let mut progress = super::progress::Progress::new(home);
    loop {
        progress.tick();
        let doc = fetch_status(home, Check::Snapshot).ok();
        let pending: Vec<String> = touched
            .iter()
            .filter(|u| {
                let unit = doc.as_ref().and_then(|d| d.unit(u));
                // A replaced unit is ready again once no overlap or
                // restart is under way.
                !unit.is_some_and(|s| s.ready && s.overlap.is_none())
            })
            .map(|u| u.to_string())
            .collect();
        if pending.is_empty() {
            progress.clear();
            println!("Ready in {:.2}s.", t0.elapsed().as_secs_f64());
            return Ok(Code::Ok);
        }
        if Instant::now() >= deadline {
            progress.clear();
            let why: Vec<String> = pending
                .iter()
                .map(|u| {
                    let reason = doc
                        .as_ref()
                        .and_then(|d| d.unit(u))
                        .and_then(|s| s.not_ready_reason.clone())
                        .unwrap_or_else(|| "no status".into());
                    format!("{u}: {reason}")
                })
                .collect();
            return Err(Failure::Relayed(
                Code::StartTimeout,
                format!(
                    "not ready {:.0} s after the reload: {}",
                    timeout.as_secs_f64(),
                    why.join("; ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
