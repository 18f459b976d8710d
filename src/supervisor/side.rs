//! A check that runs on its own schedule beside a unit's rounds:
//! Temporal's write check (the `persistence` layer). It costs a real write,
//! so it runs every `interval` (default 30 s) rather than every round, and
//! it may take longer than a round's timeout without delaying hang
//! detection. Its verdict reaches the unit's supervisor as
//! [`Command::Observed`]: the unit is not ready while it fails, and
//! restarts on it only when configured to.

use super::{Command, UnitHandle};
use crate::health::{self, temporal::PersistenceProbe};
use crate::model::StateName;
use std::time::Duration;

/// The first check after a new process starts serving waits this long
/// (at most the interval): verdicts belong to the process they measured,
/// so a new process has none until this one, and a monitor should not
/// wait long for it.
const FIRST_AFTER: Duration = Duration::from_millis(200);
/// After a failed check, the next one comes this soon.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Temporal's write check, on its schedule.
pub struct SideCheck {
    /// The check.
    pub probe: PersistenceProbe,
    /// Between checks.
    pub every: Duration,
    /// Whether `failure_threshold` failures in a row restart the unit.
    pub restart: bool,
}

fn serving(s: StateName) -> bool {
    matches!(s, StateName::Running | StateName::Unhealthy)
}

/// The process `status` serves with now (0 for a Temporal not ours), or
/// `None` when it does not serve.
fn serving_pid(snap: &super::Snapshot) -> Option<i32> {
    serving(snap.state).then(|| snap.process.as_ref().map_or(0, |p| p.pid))
}

impl SideCheck {
    /// Check while `unit` serves, until its supervisor is gone. A check of
    /// a process that is no longer the one serving is abandoned: its
    /// verdict would be about a process that is gone, and the new one is
    /// checked soon after it serves instead.
    pub async fn run(self, unit: UnitHandle) {
        let mut status = unit.status.clone();
        loop {
            // Until it serves (again).
            let pid = loop {
                if let Some(pid) = serving_pid(&status.borrow_and_update()) {
                    break pid;
                }
                if status.changed().await.is_err() {
                    return;
                }
            };
            let mut watch = status.clone();
            // True once the process changed; false once the supervisor
            // is gone.
            let replaced = async move {
                while watch.changed().await.is_ok() {
                    if serving_pid(&watch.borrow_and_update()) != Some(pid) {
                        return true;
                    }
                }
                false
            };
            tokio::select! {
                biased;
                again = replaced => if !again { return },
                () = self.check(pid, &unit) => return,
            }
        }
    }

    /// Check process `pid` on the schedule until the unit's supervisor is
    /// gone.
    async fn check(&self, pid: i32, unit: &UnitHandle) {
        tokio::time::sleep(FIRST_AFTER.min(self.every)).await;
        loop {
            let check = health::timed(&self.probe).await;
            let failed = !check.ok;
            let observed = Command::Observed {
                pid,
                check: Box::new(check),
                restart: self.restart,
            };
            if unit.commands.send(observed).await.is_err() {
                return;
            }
            // A failure is looked at again soon (a server still warming
            // up, a disk just freed), not a whole interval later: it keeps
            // the unit from being ready meanwhile.
            let wait = if failed { RETRY_AFTER } else { self.every };
            tokio::time::sleep(wait.min(self.every)).await;
        }
    }
}
