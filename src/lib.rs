//! stigmer-local: start, stop, inspect and supervise the local Temporal
//! dev server (`temporal server start-dev`), one instance per state dir.
//!
//! # Map
//! ```text
//! main.rs ─ cli (clap) ─ config (options: every start option once, as flag, env and
//!                        │         file key; Config: the checked form, handed over unchanged)
//!                        └ commands/{start,stop,status,restart,logs}
//!                            short-lived; discover the instance via lock → pidfile →
//!                            the daemon's /status (http::client)
//!                                   │ start: takes the lock, hands it, the Config (memfd)
//!                                   ▼ and a report pipe (startup::Report) to
//! daemon ── preflight (reclaim what a dead daemon left) → named setup steps; holds the
//!   │       lock for its whole life
//!   ├── http (axum router; server: bounded accept loop that drains at shutdown)
//!   │         /livez /readyz /healthz /status /metrics; reads the published Snapshot
//!   ├── metrics (prometheus) and telemetry::spans (OTLP) ── both supervisor::Observer
//!   └── supervisor (own thread + runtime)
//!         ├── state     pure step(state, event, now) -> (state, actions), split by source
//!         │             state, + allowed-transitions table
//!         ├── policy    restart delays: immediate first, then exponential + jitter, capped
//!         ├── registry  the one writer of the lock file and the PID file
//!         └── actor     owns the child: exit via pidfd event, probes, timers, commands → events
//!               ├── health   six layers that only look: lock, pid_file, process, identity,
//!               │            port, grpc
//!               ├── process  proc (the one reader of /proc, on procfs), spawn (own group,
//!               │            PDEATHSIG, spawner thread), identity, group signal/reap, ports
//!               └── logfile  Temporal's stdout/stderr → size-rotated log
//! paths: state-dir layout and safety (0700, owner, no symlinks) · exit: exit codes
//! ```
//!
//! A crash flows: kernel → pidfd readable → actor `Event::Exited` → `step`
//! → `[ReapGroup, WakeAt(now), RecordRestart]` → wake → `Spawn` → probes
//! every 10 ms until gRPC SERVING → `Ready`. A hang flows: gRPC probe times
//! out `failure_threshold` times → `Kill` (SIGKILL to the group) → exit
//! event → same path. A deleted lock file flows: lock probe fails →
//! `Event::Tampered` → `Action::Repair` → registry re-creates and locks it.

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod health;
pub mod http;
pub mod lock;
pub mod logfile;
pub mod metrics;
pub mod paths;
pub mod pidfile;
pub mod process;
pub mod startup;
pub mod status;
pub mod supervisor;
pub mod telemetry;
