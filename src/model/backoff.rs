//! Backoff: how long to wait before restart attempt N. Pure and
//! deterministic (jitter comes from a seeded hash, not a global RNG), so
//! tests can pin every delay.
//!
//! The restart after a run that served (became ready, and ran for its
//! `min_uptime`) is immediate: a crash of a server that was fine costs
//! only Temporal's own start time, as with runit or daemontools, and such
//! a run starts a new failure streak at one (it proved the command works).
//! Delay belongs to *repeated* failures of runs that never served: the
//! first is immediate, the 2nd waits ~`base`, then doubling up to `cap`,
//! each with ±`jitter` so many instances do not restart in lockstep; from
//! `crash_loop_after` in a row the state shows `crash_loop`. A process that
//! dies at once is therefore never respawned in a hot loop, and one that
//! serves and dies is respawned at its own start pace. Serving for
//! `stable_after` (1 s) resets the count to zero.

use std::time::Duration;

/// Tunables of the restart policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Delay of the second consecutive attempt (the first is immediate).
    pub base: Duration,
    /// Largest delay between attempts.
    pub cap: Duration,
    /// Relative jitter, 0.0..1.0 (0.2 = ±20 %).
    pub jitter: f64,
    /// Consecutive failures after which the state is shown as crash-loop.
    pub crash_loop_after: u32,
    /// Serving this long without failure resets the attempt counter.
    pub stable_after: Duration,
    /// Seed for the jitter hash.
    pub seed: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            jitter: 0.2,
            crash_loop_after: 5,
            stable_after: Duration::from_secs(1),
            seed: 0x5715_3e12,
        }
    }
}

impl Policy {
    /// Delay before restart attempt `attempt` (1-based count of consecutive
    /// failures so far).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = (attempt - 2).min(30);
        let raw = self.base.saturating_mul(1u32 << exp.min(20)).min(self.cap);
        let unit = unit_interval(self.seed ^ u64::from(attempt));
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        raw.mul_f64(factor.max(0.0)).min(self.cap)
    }

    /// Is `attempt` consecutive failures a crash loop?
    pub fn is_crash_loop(&self, attempt: u32) -> bool {
        attempt >= self.crash_loop_after
    }
}

/// splitmix64 → [0, 1).
fn unit_interval(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_grows_to_cap() {
        let p = Policy::default();
        assert_eq!(p.delay(1), Duration::ZERO);
        let d: Vec<Duration> = (2..=14).map(|a| p.delay(a)).collect();
        // Within jitter of base * 2^(n-2).
        for (i, got) in d.iter().enumerate() {
            let ideal = p.base.saturating_mul(1 << i).min(p.cap).as_secs_f64();
            let got = got.as_secs_f64();
            assert!(
                got >= ideal * 0.8 - 1e-9 && got <= (ideal * 1.2).min(30.0) + 1e-9,
                "attempt {}: {got} vs {ideal}",
                i + 2
            );
        }
        assert!(d[1] > d[0] && d[2] > d[1], "grows: {d:?}");
        assert!(d.iter().all(|x| *x <= p.cap));
        assert!(p.delay(u32::MAX) <= p.cap);
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_varies_across_seeds() {
        let a = Policy::default();
        let b = Policy {
            seed: 99,
            ..Policy::default()
        };
        assert_eq!(a.delay(4), a.delay(4));
        assert_ne!(a.delay(4), b.delay(4));
        let none = Policy {
            jitter: 0.0,
            ..Policy::default()
        };
        assert_eq!(none.delay(3), Duration::from_millis(200));
    }

    #[test]
    fn crash_loop_threshold() {
        let p = Policy::default();
        assert!(!p.is_crash_loop(4));
        assert!(p.is_crash_loop(5));
    }
}
