//! The checked configuration, from the launching CLI to the daemon it
//! spawns: one message in an anonymous memory file whose fd the daemon
//! inherits (`daemon run --config-fd`). The daemon runs with exactly what
//! the CLI checked and resolved, instead of re-reading flags, environment
//! and files that could have changed in between.

use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The hand-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The checked configuration (its Temporal binary resolved).
    pub config: Config,
}

/// Why the hand-off could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The memory file.
    #[error("configuration hand-off: {0}")]
    Io(#[from] std::io::Error),
    /// Its contents.
    #[error("configuration hand-off: {0}")]
    Frame(#[from] super::FrameError),
}

/// A memory file holding `cfg`, positioned at its start. Close-on-exec:
/// the launcher clears that flag in the one child that should inherit it.
pub fn write(cfg: &Config) -> Result<OwnedFd, HandoffError> {
    let fd =
        nix::sys::memfd::memfd_create(c"stigmer-config", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&super::encode(&Handoff {
        config: cfg.clone(),
    }))?;
    file.rewind()?;
    Ok(file.into())
}

/// Read the configuration from an inherited fd (and close it).
///
/// # Safety
/// `fd` must be an open fd owned by nobody else in this process.
pub unsafe fn read(fd: RawFd) -> Result<Config, HandoffError> {
    // SAFETY: forwarded to the caller.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut line = Vec::new();
    (&mut file).take(super::MAX_LINE).read_to_end(&mut line)?;
    Ok(super::decode::<Handoff>(&line)?.config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::Options;
    use crate::paths::StateDir;
    use clap::Parser;
    use std::os::fd::IntoRawFd;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn the_daemon_reads_exactly_what_the_cli_wrote() {
        let options = Cli::parse_from(["x", "--port", "7301", "--namespace", "a"]).options;
        let cfg = Config::new(StateDir::new("/tmp/h"), &options, &Default::default()).unwrap();
        let fd = write(&cfg).unwrap();
        // SAFETY: we own the fd and give it away.
        let back = unsafe { read(fd.into_raw_fd()) }.unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn the_configuration_of_0_1_0_still_reads() {
        let old = include_str!("../../tests/fixtures/compat-0.1.0/config-handoff-v1.json");
        let cfg: Config = serde_json::from_str(old).expect("0.1.0's checked configuration");
        assert_eq!(cfg.port, 27233);
        assert_eq!(cfg.services.len(), 1);
    }
}
