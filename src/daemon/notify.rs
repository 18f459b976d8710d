//! systemd's notification protocol, for a daemon run in the foreground by
//! a `Type=notify` unit (`NOTIFY_SOCKET` set): `READY=1` once Temporal and
//! every service are ready, a `STATUS=` line whenever a unit's state
//! changes, `WATCHDOG=1` every half `WATCHDOG_USEC` while every supervisor
//! is alive, and `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` nothing
//! is sent. The variables are not passed on to the children.

use crate::supervisor::Handle;
use sd_notify::NotifyState;
use std::time::Duration;

/// The variables of the protocol, kept from every child.
pub const VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// A notifier bound to `NOTIFY_SOCKET`.
#[derive(Debug, Clone, Copy)]
pub struct Systemd;

impl Systemd {
    /// When the service manager asked for notifications.
    pub fn from_env() -> Option<Systemd> {
        std::env::var_os("NOTIFY_SOCKET").map(|_| Systemd)
    }

    fn send(self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// Everything is ready.
    pub fn ready(self, handle: &Handle) {
        let status = summary(handle);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// Startup failed; supervision goes on (and retries).
    pub fn failed(self, why: &str) {
        self.send(&[NotifyState::Status(&format!("startup failed: {why}"))]);
    }

    /// Shutting down.
    pub fn stopping(self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Send a `STATUS=` line now and on every state change, and `WATCHDOG=1`
    /// pings when the manager wants them, until the task is dropped.
    pub async fn follow(self, handle: Handle) {
        let ping = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut ticker = tokio::time::interval(ping.unwrap_or(Duration::from_secs(3600)));
        let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
        for u in &handle.units() {
            // The STATUS= line names each unit's state.
            u.forward_changes(|s| s.state, tx.clone());
        }
        // The states as they are now: the units may have reached them
        // before this task subscribed, and then no change would follow
        // (Temporal held in `starting` sent no STATUS= at all).
        let _ = tx.send(());
        let mut last = String::new();
        loop {
            tokio::select! {
                _ = ticker.tick(), if ping.is_some() => {
                    // Only while the supervisor loop beats and every unit's
                    // supervisor lives: a stuck loop must let the
                    // manager's watchdog fire.
                    if handle.alive() {
                        self.send(&[NotifyState::Watchdog]);
                    }
                }
                Some(()) = changed.recv() => {
                    let now = summary(&handle);
                    if now != last {
                        self.send(&[NotifyState::Status(&now)]);
                        last = now;
                    }
                }
            }
        }
    }
}

/// "temporal running; worker starting; api waiting".
fn summary(handle: &Handle) -> String {
    handle
        .snapshots()
        .iter()
        .map(|(name, s)| format!("{name} {}", s.state.as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}
