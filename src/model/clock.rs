//! Time as the daemon records it: wall-clock Unix milliseconds for what
//! people read, and `Instant`s that survive an exec (an upgrade) as
//! CLOCK_MONOTONIC readings.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Current wall-clock time in Unix ms.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The CLOCK_MONOTONIC reading (ns) at `Instant::now()`, taken together.
fn now_pair() -> (Instant, u128) {
    let i = Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (i, ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128)
}

/// `t` as a CLOCK_MONOTONIC reading in nanoseconds.
pub fn to_mono(t: Instant) -> u128 {
    let (now, mono) = now_pair();
    if t <= now {
        mono.saturating_sub((now - t).as_nanos())
    } else {
        mono + (t - now).as_nanos()
    }
}

/// The instant of a CLOCK_MONOTONIC reading (ns) taken in this boot.
pub fn from_mono(ns: u128) -> Instant {
    let (now, mono) = now_pair();
    let d = |n: u128| std::time::Duration::from_nanos(n.min(u64::MAX as u128) as u64);
    if ns <= mono {
        now.checked_sub(d(mono - ns)).unwrap_or(now)
    } else {
        now + d(ns - mono)
    }
}

/// Serde for an `Instant` as a CLOCK_MONOTONIC reading.
pub mod mono {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_mono(*t).min(u64::MAX as u128) as u64)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        Ok(super::from_mono(u64::deserialize(d)?.into()))
    }
}

/// Serde for an `Option<Instant>` as a CLOCK_MONOTONIC reading.
pub mod mono_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&(super::to_mono(*t).min(u64::MAX as u128) as u64)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(|n| super::from_mono(n.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn instants_survive_the_round_trip_to_within_a_millisecond() {
        let now = Instant::now();
        for t in [
            now,
            now - Duration::from_secs(3),
            now + Duration::from_secs(5),
        ] {
            let back = from_mono(to_mono(t));
            let diff = if back > t { back - t } else { t - back };
            assert!(diff < Duration::from_millis(1), "{diff:?}");
        }
    }
}
