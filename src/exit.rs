//! Exit codes: one per failure class, documented in the README. `main`
//! maps every [`Failure`] to its code; nothing deeper calls `exit`.

use crate::config::file::FileError;
use crate::config::{BinaryError, ConfigError};
use crate::lock::LockError;
use crate::paths::StateDirError;
use crate::pidfile::WriteError;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success (also: already running, already stopped).
    Ok = 0,
    /// `status`: the daemon runs but Temporal is not (yet) healthy.
    NotReady = 1,
    /// Command-line usage error (clap).
    Usage = 2,
    /// `status`: nothing is running.
    NotRunning = 3,
    /// The Temporal binary is missing or not executable.
    Binary = 4,
    /// A port we need is held by another process.
    PortInUse = 5,
    /// The state directory (or a file in it) cannot be used safely.
    StateDir = 6,
    /// Temporal did not become ready within `--timeout`.
    StartTimeout = 7,
    /// Temporal (or the daemon) failed during startup.
    StartFailed = 8,
    /// `stop` could not make everything go away in time.
    StopFailed = 9,
    /// Flag or environment values out of range.
    Config = 10,
    /// The configuration file is invalid (syntax, unknown key, bad value,
    /// unknown dependency, dependency cycle, port clash).
    ConfigFile = 11,
    /// `upgrade`: the new binary did not take over; the running daemon
    /// still supervises, and nothing was restarted.
    UpgradeFailed = 12,
    /// A configuration file (or a file it names) is not trusted: owned by
    /// another user, or writable by others.
    Untrusted = 13,
    /// Unexpected internal error.
    Internal = 70,
    /// `logs -f`: stopped by Ctrl-C (SIGINT).
    Interrupted = 130,
    /// `logs -f`: stopped by SIGTERM.
    Terminated = 143,
}

impl Code {
    /// Every code, in order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::NotReady,
        Code::Usage,
        Code::NotRunning,
        Code::Binary,
        Code::PortInUse,
        Code::StateDir,
        Code::StartTimeout,
        Code::StartFailed,
        Code::StopFailed,
        Code::Config,
        Code::ConfigFile,
        Code::UpgradeFailed,
        Code::Untrusted,
        Code::Internal,
        Code::Interrupted,
        Code::Terminated,
    ];
}

impl TryFrom<u8> for Code {
    type Error = u8;
    /// The code with this number; the number itself when there is none.
    fn try_from(n: u8) -> Result<Code, u8> {
        Code::ALL.into_iter().find(|c| *c as u8 == n).ok_or(n)
    }
}

/// A command's failure: a message for the user and its exit class.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`FileError`].
    #[error(transparent)]
    File(#[from] FileError),
    /// See [`BinaryError`].
    #[error(transparent)]
    Binary(#[from] BinaryError),
    /// See [`StateDirError`].
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// The lock could not be taken or probed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The PID file could not be written.
    #[error(transparent)]
    PidWrite(#[from] WriteError),
    /// A port is taken.
    #[error(
        "port {port} ({what}) is already in use by {owner}; stop it or choose another port with --{flag}"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// What we wanted it for.
        what: &'static str,
        /// Who holds it ("pid 123 (nc)" or "another process").
        owner: String,
        /// The flag that moves it.
        flag: &'static str,
    },
    /// Not ready in time.
    #[error("Temporal did not become ready within {secs} s: {reason}")]
    StartTimeout {
        /// The timeout.
        secs: f64,
        /// Last known reason.
        reason: String,
    },
    /// Startup failed.
    #[error("{0}")]
    StartFailed(String),
    /// Stop failed.
    #[error("{0}")]
    StopFailed(String),
    /// A failure the daemon reported over the startup pipe, with its class.
    #[error("{1}")]
    Relayed(Code, String),
    /// The new binary did not take over.
    #[error("the upgrade failed: {0}; the running daemon still supervises (nothing was restarted)")]
    Upgrade(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl Failure {
    /// The exit code for this failure.
    pub fn code(&self) -> Code {
        match self {
            Failure::Config(e) if e.1 => Code::ConfigFile,
            Failure::Config(_) => Code::Config,
            Failure::File(e) if e.untrusted => Code::Untrusted,
            Failure::File(_) => Code::ConfigFile,
            Failure::Binary(_) => Code::Binary,
            Failure::StateDir(_) => Code::StateDir,
            Failure::Lock(_) | Failure::PidWrite(_) => Code::StateDir,
            Failure::PortInUse { .. } => Code::PortInUse,
            Failure::StartTimeout { .. } => Code::StartTimeout,
            Failure::StartFailed(_) => Code::StartFailed,
            Failure::StopFailed(_) => Code::StopFailed,
            Failure::Relayed(code, _) => *code,
            Failure::Upgrade(_) => Code::UpgradeFailed,
            Failure::Internal(_) => Code::Internal,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_convert_both_ways() {
        for c in Code::ALL {
            assert_eq!(Code::try_from(c as u8), Ok(c));
        }
        assert_eq!(Code::try_from(14), Err(14));
        assert_eq!(Code::try_from(255), Err(255));
    }
}
