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

/// The first check after the unit starts serving waits this long (at most
/// the interval), so a fresh server has its namespaces loaded.
const FIRST_AFTER: Duration = Duration::from_secs(2);

/// Temporal's write check, on its schedule.
pub struct SideCheck {
    /// The check.
    pub probe: PersistenceProbe,
    /// Between checks.
    pub every: Duration,
}

fn serving(s: StateName) -> bool {
    matches!(s, StateName::Running | StateName::Unhealthy)
}

impl SideCheck {
    /// Check while `unit` serves, until its supervisor is gone.
    pub async fn run(self, unit: UnitHandle) {
        let mut status = unit.status.clone();
        loop {
            // Until it serves (again).
            let pid = loop {
                let snap = status.borrow_and_update().clone();
                if serving(snap.state) {
                    break snap.process.map(|p| p.pid);
                }
                if status.changed().await.is_err() {
                    return;
                }
            };
            tokio::time::sleep(FIRST_AFTER.min(self.every)).await;
            loop {
                let snap = status.borrow().clone();
                if !serving(snap.state) || snap.process.map(|p| p.pid) != pid {
                    break;
                }
                let check = health::timed(&self.probe).await;
                if unit
                    .commands
                    .send(Command::Observed(Box::new(check)))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(self.every).await;
            }
        }
    }
}
