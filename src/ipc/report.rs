//! The startup report: what a daemon tells the CLI that launched it, one
//! message per line on an inherited pipe, so the CLI fails fast with the
//! right exit code instead of waiting out its timeout. The supervisor
//! settles the first `Ready` or `Failed`, the daemon adds `Note`s.

use crate::model::Code;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};

/// One line of the startup report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Something the user should hear about; more lines follow.
    Note {
        /// What to say.
        text: String,
    },
    /// Every unit is ready.
    Ready {
        /// Temporal's pid (0 when it is not ours: attached).
        pid: i32,
    },
    /// Startup failed; the CLI exits with `code`.
    Failed {
        /// The exit class.
        code: Code,
        /// What happened.
        message: String,
    },
}

/// Write end of the startup pipe, held by the daemon.
pub struct Notifier(File);

impl Notifier {
    /// Adopt the inherited fd (made close-on-exec so no child holds it).
    ///
    /// # Safety
    /// `fd` must be an open fd owned by nobody else in this process.
    pub unsafe fn from_inherited(fd: RawFd) -> std::io::Result<Self> {
        // SAFETY: forwarded to the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        crate::process::spawn::close_on_exec(&file)?;
        Ok(Notifier(file))
    }

    /// Send one report (a CLI that has gone away is not an error).
    pub fn send(&mut self, report: &Report) {
        let _ = self.0.write_all(&super::encode(report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{decode, encode};

    #[test]
    fn every_report_round_trips_on_one_line() {
        let reports = [
            Report::Note {
                text: "stopped orphaned Temporal (pid 7)\nsecond line".into(),
            },
            Report::Ready { pid: 4242 },
            Report::Failed {
                code: Code::PortInUse,
                message: "port 7233 is in use by pid 9 (nc)".into(),
            },
        ];
        for r in reports {
            let line = encode(&r);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "{r:?}");
            assert_eq!(decode::<Report>(&line).unwrap(), r);
        }
        assert!(
            String::from_utf8(encode(&Report::Ready { pid: 1 }))
                .unwrap()
                .contains("\"protocol\":2")
        );
    }

    #[test]
    fn garbage_and_other_protocols_are_not_reports() {
        for bad in [
            &b""[..],
            b"ready 4242",
            b"{\"protocol\":2,\"report\":\"bogus\"}",
            b"{\"protocol\":2,\"report\":\"failed\",\"code\":300,\"message\":\"\"}",
            b"{\"protocol\":9,\"report\":\"ready\",\"pid\":1}",
        ] {
            assert!(
                decode::<Report>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
