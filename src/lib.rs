//! stigmer-local: start, stop, inspect and supervise the local Temporal
//! dev server (`temporal server start-dev`), one instance per state dir.
//!
//! # Map
//! ```text
//! main.rs ─ cli (clap) ─ config (validated flags) ─ commands/{start,stop,status,restart,logs}
//!                                                     │ short-lived; discover the instance via
//!                                                     │ lock → pidfile → daemon's HTTP /status
//!                                                     ▼
//! daemon ── holds lock (flock, the truth) for its whole life, writes pidfile (discovery)
//!   ├── http (axum router on a bounded hyper accept loop: /livez /readyz /healthz /status
//!   │         /metrics) ── reads the published Snapshot; status = the /status document
//!   ├── metrics (prometheus) and telemetry::spans (OTLP) ── both supervisor::Observer
//!   │         telemetry: tracing subscriber, OTLP exporter (gRPC or HTTP/protobuf)
//!   └── supervisor (own thread + runtime)
//!         ├── state   pure step(state, event, now) -> (state, actions) + allowed-transitions table
//!         ├── policy  restart delays: immediate first, then exponential + jitter, capped
//!         └── actor   owns the child: exit via pidfd event, probes, timers, commands → events
//!               ├── health   six layers: lock, pid_file, process, identity, port, grpc
//!               ├── process  spawn (own group, PDEATHSIG, spawner thread), identity (/proc),
//!               │            group signal/reap, port owners
//!               └── logfile  Temporal's stdout/stderr → size-rotated log
//! paths: state-dir layout and safety (0700, owner, no symlinks) · exit: exit codes
//! ```
//!
//! A crash flows: kernel → pidfd readable → actor `Event::Exited` → `step`
//! → `[ReapGroup, WakeAt(now), RecordRestart]` → wake → `Spawn` → probes
//! every 10 ms until gRPC SERVING → `Ready`. A hang flows: gRPC probe times
//! out `failure_threshold` times → `Kill` (SIGKILL to the group) → exit
//! event → same path.

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
