//! A credential (an API key, a private key): carried where it must go, never
//! shown. Its `Debug` and `Display` say `set`; only [`Secret::expose`]
//! gives the value, at the one place that sends it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that must not appear in a status, a log, a span or printed
/// configuration. Serialized in full: it travels to the daemon in the
/// configuration hand-off (a memfd), which nothing else reads.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("set")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_but_handed_over() {
        let s = Secret::new("k3y");
        assert_eq!(format!("{s} {s:?}"), "set set");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"k3y\"");
        assert_eq!(s.expose(), "k3y");
    }
}
