//! What kind of unit a unit is: the one place that knows how each kind
//! is named and shown, so nothing else compares a unit's name with
//! `"temporal"`.

use serde::{Deserialize, Serialize};

/// The name of the stack's Temporal unit, whichever kind it is (and so a
/// name no declared service may take).
pub const TEMPORAL: &str = "temporal";

/// A unit's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The Temporal dev server this stack runs.
    Temporal,
    /// A Temporal running elsewhere, only probed.
    AttachedTemporal,
    /// A declared service.
    Service,
}

impl Kind {
    /// The stack's Temporal, run here or attached.
    pub fn is_temporal(self) -> bool {
        matches!(self, Kind::Temporal | Kind::AttachedTemporal)
    }

    /// A process of ours (not an attached Temporal).
    pub fn is_managed(self) -> bool {
        !matches!(self, Kind::AttachedTemporal)
    }

    /// How messages name a unit of this kind called `name`: "Temporal",
    /// or "service NAME".
    pub fn title(self, name: &str) -> String {
        if self.is_temporal() {
            "Temporal".to_string()
        } else {
            format!("service {name}")
        }
    }

    /// The kind a unit called `name` has in a stack: the documented name
    /// `temporal` is the stack's Temporal, any other a service. For what
    /// reads names from outside (a PID file, a command line, a log file
    /// name), where the kind did not travel with the name.
    pub fn of_name(name: &str) -> Kind {
        if name == TEMPORAL {
            Kind::Temporal
        } else {
            Kind::Service
        }
    }
}
