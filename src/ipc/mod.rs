//! Every message between the CLI and the daemon, each a serde type that
//! both sides compile against, framed the same way: one JSON object per
//! line, carrying the protocol version ([`PROTOCOL`]).
//!
//! - [`report`]: the startup report, daemon → the CLI that launched it
//!   (a pipe it inherits);
//! - [`handoff`]: the checked configuration, CLI → the daemon it launches
//!   (a memory file it inherits);
//! - [`control`]: requests and replies on `control.sock` (status,
//!   restart, upgrade, reload);
//! - [`upgrade`]: what a daemon hands the binary that replaces it, and
//!   that binary's answer to the check.
//!
//! 0.1.0 spoke text lines on the control socket and the report pipe; the
//! daemon still answers them, and the CLI falls back to them when it
//! talks to a 0.1.0 daemon ([`control::ask`]).

pub mod control;
pub mod handoff;
pub mod report;
pub mod upgrade;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version every message carries (0.1.0's unversioned
/// messages are version 1).
pub const PROTOCOL: u32 = 2;

/// The longest line a reader takes: a status document of a large stack
/// fits many times over; a flood does not grow the reader's memory.
pub const MAX_LINE: u64 = 8 << 20;

/// A message with its protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope<T> {
    protocol: u32,
    #[serde(flatten)]
    body: T,
}

/// Why a line is not a message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not a message of any known shape.
    #[error("unreadable message: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// A message of another protocol.
    #[error("message of protocol {0} (this stigmer speaks {PROTOCOL})")]
    Protocol(u32),
}

/// `message` as one line (with its newline).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Envelope {
        protocol: PROTOCOL,
        body: message,
    })
    .expect("messages always serialize");
    line.push(b'\n');
    line
}

/// The message in `line` (a trailing newline is fine).
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    #[derive(Deserialize)]
    struct Version {
        protocol: u32,
    }
    let version: Version = serde_json::from_slice(line)?;
    if version.protocol != PROTOCOL {
        return Err(FrameError::Protocol(version.protocol));
    }
    let e: Envelope<T> = serde_json::from_slice(line)?;
    Ok(e.body)
}

/// Read one line (at most [`MAX_LINE`] bytes) from `r`.
pub fn read_line(r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::BufRead;
    let mut line = Vec::new();
    std::io::BufReader::new(r.take(MAX_LINE)).read_until(b'\n', &mut line)?;
    Ok(line)
}
