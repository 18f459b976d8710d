//! Supervisor state names: what the status, the metrics and the
//! transition table call each state of the supervisor's state machine.

use serde::{Deserialize, Serialize};

/// The state's name, for status output, metrics labels and the
/// allowed-transitions table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Waiting,
    Stopped,
    Spawning,
    Starting,
    Running,
    Unhealthy,
    Killing,
    Backoff,
    CrashLoop,
    Exited,
    Stopping,
}

impl StateName {
    /// Every state, for exporting one gauge per state.
    pub const ALL: [StateName; 11] = [
        StateName::Waiting,
        StateName::Stopped,
        StateName::Spawning,
        StateName::Starting,
        StateName::Running,
        StateName::Unhealthy,
        StateName::Killing,
        StateName::Backoff,
        StateName::CrashLoop,
        StateName::Exited,
        StateName::Stopping,
    ];

    /// snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StateName::Waiting => "waiting",
            StateName::Stopped => "stopped",
            StateName::Spawning => "spawning",
            StateName::Starting => "starting",
            StateName::Running => "running",
            StateName::Unhealthy => "unhealthy",
            StateName::Killing => "killing",
            StateName::Backoff => "backoff",
            StateName::CrashLoop => "crash_loop",
            StateName::Exited => "exited",
            StateName::Stopping => "stopping",
        }
    }

    /// A process of ours is alive in this state.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            StateName::Starting | StateName::Running | StateName::Unhealthy | StateName::Killing
        )
    }
}
