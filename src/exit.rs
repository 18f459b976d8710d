//! Exit codes: one per failure class, documented in the README. `main`
//! maps every [`Failure`] to its code; nothing deeper calls `exit`.

use crate::config::file::FileError;
use crate::config::{BinaryError, ConfigError, LoadError};
use crate::lock::LockError;
pub use crate::model::Code;
use crate::paths::StateDirError;
use crate::pidfile::WriteError;

/// A command's failure: a message for the user and its exit class.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`FileError`].
    #[error(transparent)]
    File(#[from] FileError),
    /// See [`crate::config::temporal::SettingsError`].
    #[error(transparent)]
    TemporalSettings(#[from] crate::config::temporal::SettingsError),
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
            Failure::TemporalSettings(_) => Code::TemporalSettings,
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

impl From<crate::reclaim::ReclaimError> for Failure {
    fn from(e: crate::reclaim::ReclaimError) -> Self {
        use crate::reclaim::ReclaimError;
        match e {
            ReclaimError::Signal { .. } => Failure::Internal(e.to_string()),
            ReclaimError::DaemonRuns(_) | ReclaimError::StillExiting { .. } => {
                Failure::StartFailed(e.to_string())
            }
        }
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Values(e) => Failure::Config(e),
            LoadError::File(e) => Failure::File(e),
            LoadError::Temporal(e) => Failure::TemporalSettings(e),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Internal(e.to_string())
    }
}
