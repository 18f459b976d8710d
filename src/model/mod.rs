//! The value types every layer shares, and nothing else: unit names,
//! exit codes, health layer names, state names, restart reasons and
//! policies, how a process ended, and the clock. It uses no other module
//! of this crate, so everything may use it.

mod backoff;
pub mod clock;
mod code;
mod exit_status;
mod kind;
mod layer;
mod restart;
mod secret;
mod state;

pub use backoff::Policy;
pub use code::Code;
pub use exit_status::ExitStatus;
pub use kind::{Kind, TEMPORAL};
pub use layer::Layer;
pub use restart::{RestartKind, RestartPolicy, RestartReason, Rules};
pub use secret::Secret;
pub use state::StateName;

/// The service manager's notification variables (systemd): the daemon's
/// own, never passed to its children.
pub const SYSTEMD_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// How messages name unit `name` when only its name is known (a PID
/// file, a command line): "Temporal", or "service NAME".
pub fn unit_title(name: &str) -> String {
    Kind::of_name(name).title(name)
}
