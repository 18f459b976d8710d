//! How a process ended.

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with a code.
    Code(i32),
    /// Killed by a signal (number).
    Signal(i32),
}

impl ExitStatus {
    /// Human form: "exit code 1", "signal 9 (SIGKILL)".
    pub fn describe(&self) -> String {
        match *self {
            ExitStatus::Code(c) => format!("exit code {c}"),
            ExitStatus::Signal(s) => match Signal::try_from(s) {
                Ok(sig) => format!("signal {s} ({})", sig.as_str()),
                Err(_) => format!("signal {s}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits() {
        assert_eq!(ExitStatus::Code(1).describe(), "exit code 1");
        assert_eq!(ExitStatus::Signal(9).describe(), "signal 9 (SIGKILL)");
    }
}
