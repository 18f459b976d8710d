//! Everything that touches OS processes: reading the process table
//! (`proc`, the one place that reads `/proc`), a process's identity,
//! spawning Temporal in its own group from a long-lived thread, awaiting
//! its exit as an event (pidfd), signalling and reaping whole groups, and
//! finding who owns a listening port.

pub mod group;
pub mod identity;
pub mod ports;
pub mod proc;
pub mod signals;
pub mod spawn;

pub use group::{GroupOwner, signal_group, wait_group_gone};
pub use identity::{Identity, Verdict};
pub use spawn::{SpawnSpec, Spawned, Spawner};
