//! The startup report: what a daemon tells the CLI that launched it, one
//! line per [`Report`] on an inherited pipe (the CLI fails fast with the
//! right exit code instead of waiting out its timeout). The supervisor
//! produces the first `Ready` or `Failed`, the daemon adds `Note`s, and
//! the CLI decodes them; encode and decode live together here.

use crate::model::Code;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};

/// One line of the startup report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Something the user should hear about; more lines follow.
    Note(String),
    /// Temporal answers its health check.
    Ready {
        /// Its pid.
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

impl Report {
    /// The line (without its newline; newlines inside become spaces).
    pub fn encode(&self) -> String {
        let line = match self {
            Report::Note(text) => format!("note {text}"),
            Report::Ready { pid } => format!("ready {pid}"),
            Report::Failed { code, message } => format!("failed {} {message}", *code as u8),
        };
        line.replace('\n', " ")
    }

    /// Read one line back; `None` for anything that is not a report.
    pub fn decode(line: &str) -> Option<Report> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "note" => Some(Report::Note(rest.to_string())),
            "ready" => Some(Report::Ready {
                pid: rest.trim().parse().ok()?,
            }),
            "failed" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = code
                    .parse::<u8>()
                    .ok()
                    .and_then(|c| Code::try_from(c).ok())?;
                Some(Report::Failed {
                    code,
                    message: message.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Write end of the startup pipe, held by the daemon.
pub struct Notifier(File);

impl Notifier {
    /// Adopt the inherited fd (made close-on-exec so Temporal never holds it).
    ///
    /// # Safety
    /// `fd` must be an open fd owned by nobody else in this process.
    pub unsafe fn from_inherited(fd: RawFd) -> std::io::Result<Self> {
        // SAFETY: forwarded to the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Notifier(file))
    }

    /// Send one report line (a CLI that has gone away is not an error).
    pub fn send(&mut self, report: &Report) {
        let _ = writeln!(self.0, "{}", report.encode());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_round_trips() {
        let reports = [
            Report::Note("stopped orphaned Temporal (pid 7)".into()),
            Report::Ready { pid: 4242 },
            Report::Failed {
                code: Code::PortInUse,
                message: "port 7233 is in use by pid 9 (nc)".into(),
            },
            Report::Failed {
                code: Code::StartFailed,
                message: String::new(),
            },
        ];
        for r in reports {
            assert_eq!(Report::decode(&r.encode()), Some(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn lines_stay_single_and_garbage_is_not_a_report() {
        let r = Report::Note("two\nlines".into());
        assert!(!r.encode().contains('\n'));
        for bad in ["", "ready", "ready x", "failed 300 x", "failed", "hello"] {
            assert_eq!(Report::decode(bad), None, "{bad:?}");
        }
    }
}
