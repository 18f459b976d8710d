//! Handing the checked configuration from the launching CLI to the daemon
//! it spawns: the [`Config`] as JSON in an anonymous memory file whose fd
//! the daemon inherits (`--config-fd`). The daemon runs with exactly what
//! the CLI checked and resolved, instead of re-reading flags, environment
//! and files that could have changed in between.

use crate::config::Config;
use crate::exit::Failure;
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A memory file holding `cfg`, positioned at its start. Close-on-exec:
/// the launcher clears that flag in the one child that should inherit it.
pub fn write_config(cfg: &Config) -> Result<OwnedFd, Failure> {
    let fd =
        nix::sys::memfd::memfd_create(c"stigmer-config", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| {
                Failure::Internal(format!("cannot create the configuration handover: {e}"))
            })?;
    let mut file = std::fs::File::from(fd);
    let json = serde_json::to_vec(cfg).map_err(|e| Failure::Internal(e.to_string()))?;
    file.write_all(&json)?;
    file.rewind()?;
    Ok(file.into())
}

/// Read the configuration from an inherited fd (and close it).
///
/// # Safety
/// `fd` must be an open fd owned by nobody else in this process.
pub unsafe fn read_config(fd: RawFd) -> Result<Config, Failure> {
    // SAFETY: forwarded to the caller.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut json = Vec::new();
    file.read_to_end(&mut json)?;
    serde_json::from_slice(&json)
        .map_err(|e| Failure::Internal(format!("unreadable configuration handover: {e}")))
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
        let fd = write_config(&cfg).unwrap();
        // SAFETY: we own the fd and give it away.
        let back = unsafe { read_config(fd.into_raw_fd()) }.unwrap();
        assert_eq!(back, cfg);
    }
}
