//! The control socket's messages (`HOME/control.sock`): one request, one
//! reply, each a line. The socket lives in the private state directory
//! and both ends check that the other is the same user.
//!
//! 0.1.0 spoke text lines here (`status`, `status live`, `restart NAME`,
//! `upgrade {JSON}`; answered by the document, `ok`, `ok {JSON}` or
//! `error WHY`): the daemon still answers them ([`Request::from_legacy`],
//! [`Reply::legacy`]), and [`ask`] falls back to them when the daemon is
//! a 0.1.0 one.

use super::upgrade::Upgraded;
use crate::status::StatusDoc;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the CLI asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The status document; `live` adds a gRPC health check of Temporal
    /// made for this request.
    Status {
        /// Check Temporal now.
        #[serde(default)]
        live: bool,
    },
    /// Restart a unit gracefully (a new process); Temporal when `unit`
    /// is `None`.
    Restart {
        /// The unit's name.
        #[serde(default)]
        unit: Option<String>,
    },
    /// Replace the daemon with this binary (see
    /// [`crate::daemon::upgrade`]).
    Upgrade {
        /// The binary that takes over.
        binary: PathBuf,
    },
    /// Read the configuration again and apply the difference; with
    /// `dry_run`, only say what would change.
    Reload {
        /// Plan only.
        #[serde(default)]
        dry_run: bool,
    },
}

/// What a reload did (or would do), unit by unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Applied (false for a dry run).
    pub applied: bool,
    /// One entry per unit, Temporal first.
    pub changes: Vec<UnitChange>,
    /// What changed but is not applied while the daemon runs.
    pub notes: Vec<String>,
}

/// What a reload does to one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitChange {
    /// The unit.
    pub unit: String,
    /// `added`, `removed`, `changed`, `restarted` or `unchanged`.
    pub action: String,
    /// What changed, or what happens.
    pub detail: String,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The status document.
    Status {
        /// The document, as `/status` serves it.
        document: Box<StatusDoc>,
    },
    /// The unit is being restarted.
    Restarting {
        /// Its name.
        unit: String,
    },
    /// The new binary supervises.
    Upgraded(Upgraded),
    /// The configuration was reloaded (or a dry run planned).
    Reloaded {
        /// What it did.
        report: ReloadReport,
    },
    /// The request failed in a class the CLI exits with.
    Failed {
        /// The exit class.
        code: crate::model::Code,
        /// Why.
        message: String,
    },
    /// The request could not be carried out.
    Error {
        /// Why.
        message: String,
    },
}

impl Request {
    /// A 0.1.0 text request.
    pub fn from_legacy(line: &str) -> Option<Request> {
        let line = line.trim();
        match line.split_once(' ').unwrap_or((line, "")) {
            ("status", "") => Some(Request::Status { live: false }),
            ("status", "live") => Some(Request::Status { live: true }),
            ("restart", name) if !name.trim().is_empty() => Some(Request::Restart {
                unit: Some(name.trim().to_string()),
            }),
            ("upgrade", json) => {
                #[derive(Deserialize)]
                struct Upgrade {
                    binary: PathBuf,
                }
                let u: Upgrade = serde_json::from_str(json).ok()?;
                Some(Request::Upgrade { binary: u.binary })
            }
            _ => None,
        }
    }

    /// The same request in 0.1.0's text, when 0.1.0 knew it.
    pub fn legacy(&self) -> Option<String> {
        match self {
            Request::Status { live: false } => Some("status".into()),
            Request::Status { live: true } => Some("status live".into()),
            Request::Restart { unit } => Some(format!(
                "restart {}",
                unit.as_deref().unwrap_or(crate::model::TEMPORAL)
            )),
            Request::Upgrade { binary } => Some(format!(
                "upgrade {}",
                serde_json::json!({ "binary": binary, "fault": null })
            )),
            Request::Reload { .. } => None,
        }
    }
}

impl Reply {
    /// A failure.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error {
            message: message.into(),
        }
    }

    /// The answer line in 0.1.0's text (for a 0.1.0 client).
    pub fn legacy(&self) -> String {
        match self {
            Reply::Status { document } => {
                serde_json::to_string(document).unwrap_or_else(|e| format!("error {e}"))
            }
            Reply::Restarting { .. } => "ok".into(),
            Reply::Upgraded(u) => format!("ok {}", serde_json::to_string(u).unwrap_or_default()),
            Reply::Reloaded { .. } => "ok".into(),
            Reply::Error { message } | Reply::Failed { message, .. } => {
                format!("error {}", message.replace('\n', " "))
            }
        }
    }

    /// A 0.1.0 answer line, read as the reply to `request`.
    fn from_legacy(request: &Request, line: &str) -> Result<Reply, AskError> {
        let line = line.trim_end();
        if let Some(message) = line.strip_prefix("error ") {
            return Ok(Reply::error(message));
        }
        let unreadable = |e: serde_json::Error| AskError::Unreadable(e.to_string());
        match request {
            Request::Status { .. } => Ok(Reply::Status {
                document: Box::new(serde_json::from_str(line).map_err(unreadable)?),
            }),
            Request::Restart { unit } if line == "ok" => Ok(Reply::Restarting {
                unit: unit.clone().unwrap_or_default(),
            }),
            Request::Upgrade { .. } => match line.strip_prefix("ok ") {
                Some(json) => Ok(Reply::Upgraded(
                    serde_json::from_str(json).map_err(unreadable)?,
                )),
                None => Err(AskError::Unreadable(format!("unexpected answer {line:?}"))),
            },
            Request::Restart { .. } | Request::Reload { .. } => {
                Err(AskError::Unreadable(format!("unexpected answer {line:?}")))
            }
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing answers at the socket.
    #[error("cannot reach the daemon at {path}: {source}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another user's process serves the socket: not asked.
    #[error("{path} is served by uid {uid}, not by you (uid {me}): not asked")]
    Foreign {
        /// The socket.
        path: PathBuf,
        /// Its server's uid.
        uid: u32,
        /// Ours.
        me: u32,
    },
    /// The connection failed midway, or no answer came in time.
    #[error("no answer from the daemon: {0}")]
    NoAnswer(#[from] std::io::Error),
    /// An answer that is not a reply.
    #[error("unreadable answer from the daemon: {0}")]
    Unreadable(String),
    /// A 0.1.0 daemon, which cannot do this.
    #[error(
        "the daemon runs stigmer 0.1.0, which cannot do this; run `stigmer local upgrade` first"
    )]
    Legacy,
}

/// Ask the daemon of the socket at `path`, waiting at most `timeout` for
/// its reply; a 0.1.0 daemon is asked in its own text when it can be.
pub fn ask(path: &Path, request: &Request, timeout: Duration) -> Result<Reply, AskError> {
    let line = exchange(path, &super::encode(request), timeout)?;
    let text = String::from_utf8_lossy(&line);
    // 0.1.0 does not know a message: it says so in its own words.
    if text.starts_with("error unknown request") {
        let legacy = request.legacy().ok_or(AskError::Legacy)?;
        let mut legacy = legacy.into_bytes();
        legacy.push(b'\n');
        let line = exchange(path, &legacy, timeout)?;
        return Reply::from_legacy(request, &String::from_utf8_lossy(&line));
    }
    super::decode(&line).map_err(|e| AskError::Unreadable(e.to_string()))
}

/// Send `request` (one line) on a new connection and read the answer line.
fn exchange(path: &Path, request: &[u8], timeout: Duration) -> Result<Vec<u8>, AskError> {
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| AskError::Unreachable {
            path: path.to_path_buf(),
            source,
        })?;
    // Only a daemon of this user is believed (or given a request): the
    // socket's directory is ours, but trust is checked, not assumed.
    let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| AskError::NoAnswer(e.into()))?;
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() != me {
        return Err(AskError::Foreign {
            path: path.to_path_buf(),
            uid: peer.uid(),
            me,
        });
    }
    s.set_read_timeout(Some(timeout))?;
    // One write: the daemon reads a line, and a line in two writes costs
    // it a second wake-up.
    s.write_all(request)?;
    let line = super::read_line(&s)?;
    if line.is_empty() {
        return Err(AskError::NoAnswer(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        )));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{decode, encode};

    #[test]
    fn requests_round_trip_and_0_1_0_lines_are_understood() {
        let requests = [
            Request::Status { live: false },
            Request::Status { live: true },
            Request::Restart { unit: None },
            Request::Restart {
                unit: Some("api".into()),
            },
            Request::Upgrade {
                binary: "/usr/local/bin/stigmer".into(),
            },
        ];
        for r in &requests {
            assert_eq!(&decode::<Request>(&encode(r)).unwrap(), r);
            let text = r.legacy().expect("0.1.0 knew every request but reload");
            let back = Request::from_legacy(&text).unwrap();
            match r {
                // 0.1.0 named Temporal; it comes back by name.
                Request::Restart { unit: None } => assert_eq!(
                    back,
                    Request::Restart {
                        unit: Some("temporal".into())
                    }
                ),
                _ => assert_eq!(&back, r, "{text}"),
            }
        }
        // The lines 0.1.0's CLI sends (tests/fixtures/compat-0.1.0).
        let fixture = include_str!("../../tests/fixtures/compat-0.1.0/control-lines.txt");
        let sent: Vec<&str> = fixture
            .lines()
            .filter_map(|l| l.strip_prefix("> "))
            .collect();
        let understood: Vec<Option<Request>> =
            sent.iter().map(|l| Request::from_legacy(l)).collect();
        assert_eq!(
            understood,
            [
                Some(Request::Status { live: false }),
                Some(Request::Status { live: true }),
                Some(Request::Restart {
                    unit: Some("sleeper".into())
                }),
                Some(Request::Restart {
                    unit: Some("nope".into())
                }),
                None,
                Some(Request::Upgrade {
                    binary: "/usr/local/bin/stigmer".into()
                }),
            ]
        );
    }

    #[test]
    fn replies_round_trip_and_read_0_1_0_answers() {
        let doc: StatusDoc = serde_json::from_str(include_str!(
            "../../tests/fixtures/compat-0.1.0/control-status-reply.txt"
        ))
        .expect("0.1.0's status document");
        let replies = [
            Reply::Status {
                document: Box::new(doc.clone()),
            },
            Reply::Restarting { unit: "api".into() },
            Reply::error("no service named \"nope\""),
        ];
        for r in &replies {
            assert_eq!(&decode::<Reply>(&encode(r)).unwrap(), r);
        }
        let status = Request::Status { live: false };
        let legacy = Reply::Status {
            document: Box::new(doc),
        }
        .legacy();
        assert!(matches!(
            Reply::from_legacy(&status, &legacy),
            Ok(Reply::Status { .. })
        ));
        let restart = Request::Restart {
            unit: Some("x".into()),
        };
        assert_eq!(
            Reply::from_legacy(&restart, "error no service named \"x\"").unwrap(),
            Reply::error("no service named \"x\"")
        );
        let upgraded = "ok {\"pid\":432,\"from\":{\"version\":\"0.1.0\",\"exe\":\"/a\"},\"to\":{\"version\":\"0.1.0\",\"exe\":\"/b\"},\"handover_ms\":31.5,\"temporal_pid\":437}";
        let upgrade = Request::Upgrade {
            binary: "/b".into(),
        };
        assert!(matches!(
            Reply::from_legacy(&upgrade, upgraded),
            Ok(Reply::Upgraded(u)) if u.pid == 432
        ));
    }
}
