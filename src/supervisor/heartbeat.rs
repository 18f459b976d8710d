//! The supervisor loop's own heartbeat: a task on the supervisor's
//! runtime notes the time every [`EVERY`]. A loop that is stuck (a
//! blocking call, a bug) stops beating, and `/livez` and the systemd
//! watchdog, which read the beat, say so once it is older than
//! [`BOUND`]: "alive" means the loop runs, not merely that the process
//! exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the loop beats. Each beat wakes the supervisor's thread
/// twice (the timer, then tokio re-arming an earlier deadline): at
/// 100 ms that was most of the idle daemon's wake-ups. 250 ms keeps
/// several beats within a health interval, so a check starts with a
/// recent measure of the lag.
pub const EVERY: Duration = Duration::from_millis(250);
/// A beat older than this means the loop is stuck.
pub const BOUND: Duration = Duration::from_secs(2);

/// The last beat, readable from any thread.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last beat.
    last_ms: Arc<AtomicU64>,
    /// How late the loop's timers have been lately (µs): the largest
    /// lateness of a beat, halving each beat: a starved spell widens the
    /// timeouts for about a second after it ends.
    lag_us: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    /// Not beaten yet (stale until the first [`Heartbeat::beat`]).
    fn default() -> Self {
        // An epoch well in the past: "never" (0) is then long ago.
        let now = Instant::now();
        Heartbeat {
            epoch: now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
            last_ms: Arc::new(AtomicU64::new(0)),
            lag_us: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Heartbeat {
    /// Note that the loop runs now.
    pub fn beat(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Release);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Acquire)))
    }

    /// How late the loop's timers have fired lately (the health checks'
    /// timeouts widen by it: a starved daemon is not a hung server).
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_us.load(Ordering::Relaxed))
    }

    /// A beat `late` after it was due.
    fn note_lateness(&self, late: Duration) {
        let before = self.lag_us.load(Ordering::Relaxed);
        let now = (late.as_micros() as u64).max(before / 2);
        self.lag_us.store(now, Ordering::Relaxed);
    }

    /// Has the loop beaten within [`BOUND`]?
    pub fn fresh(&self) -> bool {
        self.age() <= BOUND
    }

    /// Beat every [`EVERY`] on the current runtime, until the runtime ends.
    pub fn spawn(&self) {
        let me = self.clone();
        me.beat();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let due = tick.tick().await;
                me.note_lateness(due.elapsed());
                me.beat();
            }
        });
    }
}

impl Heartbeat {
    /// Make the last beat look older than [`BOUND`] (tests of what reads it).
    #[cfg(test)]
    pub fn stop_for_test(&self) {
        self.last_ms.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_goes_stale() {
        let h = Heartbeat::default();
        assert!(!h.fresh(), "never beaten");
        h.beat();
        assert!(h.fresh());
        h.stop_for_test();
        assert!(!h.fresh(), "no beat for longer than the bound");
    }
}
