//! The host's CPU pressure (Linux PSI, `/proc/pressure/cpu`): the share
//! of wall time during which some runnable task waited for a CPU.
//!
//! The detector's timer lag shows when the *daemon* is slow; this shows
//! when *everything* is: a check of a server that ten log floods starve
//! of CPU times out although the server is fine, while a hung (stopped)
//! server makes no pressure at all. Read at the start of a health round
//! (one `pread` of a file kept open, a few microseconds) and, only if a
//! check timed out, at its end.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PSI file, opened once (`None`: the kernel has no PSI, or it is off).
fn file() -> Option<&'static File> {
    static FILE: OnceLock<Option<File>> = OnceLock::new();
    FILE.get_or_init(|| File::open("/proc/pressure/cpu").ok())
        .as_ref()
}

/// `some … total=N`: the microseconds some task has waited, since boot.
fn parse_some_total(text: &[u8]) -> Option<u64> {
    let line = text.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("some ")?;
    rest.split(' ')
        .find_map(|kv| kv.strip_prefix("total="))?
        .parse()
        .ok()
}

fn some_total() -> Option<Duration> {
    let mut buf = [0u8; 256];
    let n = file()?.read_at(&mut buf, 0).ok()?;
    parse_some_total(&buf[..n]).map(Duration::from_micros)
}

/// A PSI reading to measure a stretch of time from.
#[derive(Debug, Clone, Copy)]
pub struct Since {
    at: Instant,
    waited: Duration,
}

impl Since {
    /// Now, if the kernel reports CPU pressure.
    pub fn now() -> Option<Since> {
        Some(Since {
            waited: some_total()?,
            at: Instant::now(),
        })
    }

    /// The share (0..=1) of the time since then during which some task
    /// waited for a CPU.
    pub fn share(&self) -> Option<f64> {
        let waited = some_total()?.saturating_sub(self.waited);
        let wall = self.at.elapsed();
        (!wall.is_zero()).then(|| (waited.as_secs_f64() / wall.as_secs_f64()).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_some_total_is_read_from_the_first_line() {
        let text = b"some avg10=0.00 avg60=0.00 avg300=1.25 total=3019723033\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_some_total(text), Some(3_019_723_033));
        assert_eq!(parse_some_total(b"full avg10=0.00 total=5\n"), None);
        assert_eq!(parse_some_total(b"some avg10=0.00 total=x\n"), None);
        assert_eq!(parse_some_total(b""), None);
    }

    #[test]
    fn a_busy_host_shows_pressure_and_an_idle_wait_does_not_exceed_one() {
        let Some(s) = Since::now() else {
            return; // no PSI on this kernel: nothing to measure
        };
        // Three spinning threads on however many cores: with fewer cores
        // than runnable threads, some wait.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores + 2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut share = 0.0;
        while t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
            share = s.share().unwrap();
            if share > 0.2 {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        assert!(share > 0.2 && share <= 1.0, "share {share}");
    }
}
