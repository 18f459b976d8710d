//! Exit codes: one per failure class, documented in the README. Here,
//! below everything, because the startup report and the supervisor name
//! them too; the exit module maps failures to them.

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
    /// The Temporal to attach to cannot be reached as configured: an
    /// unknown profile, an unreadable `temporal.toml`, certificate or key,
    /// an API key with TLS disabled, or an environment variable named for
    /// the key that is not set.
    TemporalSettings = 14,
    /// Temporal (or a proxy in front of it) rejected the credentials:
    /// gRPC UNAUTHENTICATED or PERMISSION_DENIED, HTTP 401 or 403.
    TemporalAuth = 15,
    /// `restart NAME` or `reload`: the daemon is busy (another reload, or
    /// the unit's queue of commands is full); nothing was done: try again.
    Busy = 16,
    /// `upgrade`: nothing supervises the stack any more (the daemon ended
    /// during the upgrade); run `start`.
    NothingSupervises = 20,
    /// Unexpected internal error.
    Internal = 70,
    /// `logs -f`: stopped by Ctrl-C (SIGINT).
    Interrupted = 130,
    /// `logs -f`: stopped by SIGTERM.
    Terminated = 143,
}

impl Code {
    /// Every code, in order.
    pub const ALL: [Code; 21] = [
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
        Code::TemporalSettings,
        Code::TemporalAuth,
        Code::Busy,
        Code::NothingSupervises,
        Code::Internal,
        Code::Interrupted,
        Code::Terminated,
    ];
}

/// On the wire (the startup report): its number.
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = <u8 as serde::Deserialize>::deserialize(d)?;
        Code::try_from(n).map_err(|n| serde::de::Error::custom(format!("unknown exit code {n}")))
    }
}

impl TryFrom<u8> for Code {
    type Error = u8;
    /// The code with this number; the number itself when there is none.
    fn try_from(n: u8) -> Result<Code, u8> {
        Code::ALL.into_iter().find(|c| *c as u8 == n).ok_or(n)
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
        assert_eq!(Code::try_from(21), Err(21));
        assert_eq!(Code::try_from(255), Err(255));
    }
}
