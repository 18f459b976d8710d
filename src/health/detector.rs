//! How long a health check may take before it counts as failed: adapted
//! to what the checked server's answers have taken lately, and to how
//! late the daemon's own timers are.
//!
//! A fixed timeout is either slow (1 s: a hang costs seconds) or
//! trigger-happy. Like a phi-accrual detector (Hayashibara et al., 2004)
//! the threshold follows the observed round-trip distribution, here its
//! 99th percentile over the last [`WINDOW`] answers times [`MARGIN`],
//! held between a floor and a cap; like Lifeguard's local health
//! (arXiv 1707.00788) it widens by the daemon's own timer lag, so a
//! starved daemon does not blame the server for its own slowness. A
//! check whose timeout fired much later than asked (the daemon was not
//! scheduled) proves nothing about the server and does not count (see
//! [`late`]). Nor does one that timed out while the host's CPUs were
//! contended (see [`Detector::contended`]): it is asked once more with the
//! cap. An explicitly configured timeout pins the old, fixed behaviour.

use std::collections::VecDeque;
use std::time::Duration;

/// Answers remembered.
pub const WINDOW: usize = 512;
/// The threshold is this many times the 99th percentile answer.
pub const MARGIN: u32 = 4;
/// Fewest answers before the distribution is trusted (until then: the
/// cap). Few: with three answers the "99th percentile" is their maximum,
/// times the margin; what guards against a false alarm is not the sample
/// count but the two confirming checks that must time out as well. A
/// unit's first seconds (the ready check, the first health rounds) give
/// three answers, so a hang soon after a start is caught as fast as one
/// an hour later.
pub const MIN_SAMPLES: usize = 3;
/// The lowest threshold: a local gRPC answer takes ~1–5 ms, a busy one
/// tens; below this, scheduling noise alone would fail checks.
pub const FLOOR: Duration = Duration::from_millis(100);
/// A check that timed out while some task on the host waited for a CPU
/// for at least this share of the check's time (Linux PSI) proves
/// nothing yet: the server may only have been starved. A stopped or
/// deadlocked server makes no such pressure.
pub const PRESSURE: f64 = 0.25;

/// A unit's detector.
#[derive(Debug, Clone)]
pub struct Detector {
    /// A timeout configured explicitly: always that.
    fixed: Option<Duration>,
    /// The highest threshold.
    cap: Duration,
    /// The latest answers' round trips, in microseconds.
    samples: VecDeque<u32>,
}

impl Detector {
    /// An adaptive detector, never above `cap`.
    pub fn adaptive(cap: Duration) -> Detector {
        Detector {
            fixed: None,
            cap: cap.max(FLOOR),
            samples: VecDeque::with_capacity(WINDOW),
        }
    }

    /// Today's fixed behaviour: always `timeout`.
    pub fn fixed(timeout: Duration) -> Detector {
        Detector {
            fixed: Some(timeout),
            cap: timeout,
            samples: VecDeque::new(),
        }
    }

    /// Is it adaptive?
    pub fn is_adaptive(&self) -> bool {
        self.fixed.is_none()
    }

    /// An answer took `rtt`.
    pub fn observe(&mut self, rtt: Duration) {
        if self.fixed.is_some() {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples
            .push_back(rtt.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// The 99th percentile of the answers seen, once there are enough.
    pub fn p99(&self) -> Option<Duration> {
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let mut v: Vec<u32> = self.samples.iter().copied().collect();
        let i = (v.len() * 99).div_ceil(100).saturating_sub(1);
        let (_, q, _) = v.select_nth_unstable(i);
        Some(Duration::from_micros(u64::from(*q)))
    }

    /// The timeout of the next check, the daemon's timers being `lag`
    /// late lately.
    pub fn timeout(&self, lag: Duration) -> Duration {
        if let Some(t) = self.fixed {
            return t;
        }
        let base = match self.p99() {
            Some(q) => (q * MARGIN).clamp(FLOOR, self.cap),
            None => self.cap,
        };
        base + lag
    }

    /// A check that timed out with the host's CPU contended for `share`
    /// of its time: should it be asked again, with [`Detector::widened`],
    /// before it counts? (Adaptive detectors only: a fixed timeout is
    /// what the user asked for.)
    pub fn contended(&self, share: f64) -> bool {
        self.fixed.is_none() && share >= PRESSURE
    }

    /// The timeout of that second look: the cap (what the unit may take
    /// at worst), plus the daemon's timer lag.
    pub fn widened(&self, lag: Duration) -> Duration {
        self.fixed.unwrap_or(self.cap + lag)
    }
}

/// Did a check that timed out after `took` (asked: `timeout`) wait much
/// longer than asked? Then the daemon was not running when its timer
/// should have fired: the check says nothing about the server.
pub fn late(took: Duration, timeout: Duration) -> bool {
    took > timeout + (timeout / 2).max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_threshold_follows_the_answers_between_floor_and_cap() {
        let mut d = Detector::adaptive(ms(1000));
        assert_eq!(d.timeout(ms(0)), ms(1000), "no answers yet: the cap");
        for _ in 1..MIN_SAMPLES {
            d.observe(ms(2));
        }
        assert_eq!(d.timeout(ms(0)), ms(1000), "too few answers: the cap");
        d.observe(ms(30));
        assert_eq!(d.timeout(ms(0)), ms(120), "enough: 4 × the slowest of few");
        for _ in 0..100 {
            d.observe(ms(2));
        }
        assert_eq!(d.timeout(ms(0)), FLOOR, "fast answers: the floor");
        for _ in 0..100 {
            d.observe(ms(80));
        }
        assert_eq!(d.timeout(ms(0)), ms(320), "4 × p99");
        for _ in 0..WINDOW {
            d.observe(ms(900));
        }
        assert_eq!(d.timeout(ms(0)), ms(1000), "never above the cap");
        assert_eq!(d.timeout(ms(200)), ms(1200), "widened by the daemon's lag");
    }

    #[test]
    fn a_contended_host_earns_one_look_at_the_cap() {
        let mut d = Detector::adaptive(ms(1000));
        for _ in 0..100 {
            d.observe(ms(2));
        }
        assert!(!d.contended(0.0), "an idle host: the timeout counts");
        assert!(!d.contended(PRESSURE / 2.0));
        assert!(d.contended(PRESSURE));
        assert!(d.contended(1.0));
        assert_eq!(d.widened(ms(30)), ms(1030), "the cap, widened by the lag");
        let f = Detector::fixed(ms(400));
        assert!(!f.contended(1.0), "a fixed timeout is never second-guessed");
        assert_eq!(f.widened(ms(30)), ms(400));
    }

    #[test]
    fn a_fixed_timeout_stays_fixed() {
        let mut d = Detector::fixed(ms(1000));
        for _ in 0..100 {
            d.observe(ms(1));
        }
        assert_eq!(d.timeout(ms(500)), ms(1000));
        assert!(!d.is_adaptive());
    }

    #[test]
    fn a_timer_that_fired_much_too_late_proves_nothing() {
        assert!(!late(ms(155), ms(150)));
        assert!(late(ms(400), ms(150)));
        assert!(!late(ms(1200), ms(1000)));
        assert!(late(ms(1600), ms(1000)));
    }
}
