//! stigmer-local: start, stop, inspect and supervise the local Temporal
//! dev server (`temporal server start-dev`), one instance per state dir.
//!
//! # Map
//! ```text
//! main.rs ─ cli (clap; each subcommand's arguments built only when invoked)
//!   │       config (options: every start option once, as flag, env and file key;
//!   │               file: stigmer.toml; services: [services.NAME], checked;
//!   │               Config: the checked form, handed over unchanged)
//!   └ commands/{start,stop,status,restart,logs,config,upgrade,completions}
//!       short-lived; discover the instance via control.sock (status live,
//!       restart SERVICE, upgrade; an answer there is the running instance)
//!       → lock → PID file + the daemon's /status (http::client)
//!                │ start: takes the lock, hands it, the Config (memfd)
//!                ▼ and a report pipe (startup::Report) to
//! daemon ── main thread: process::Spawner's loop (spawns every child; execs on upgrade)
//!   │       daemon thread: preflight (reclaim what a dead daemon left) → named setup
//!   │       steps, or adopt an upgrade's handover; holds the lock for its whole life
//!   ├── http (axum router; server: bounded accept loop that drains at shutdown)
//!   │         / (status page) /livez /readyz[/NAME] /healthz /status[?check=live] /metrics
//!   ├── control (control.sock: status, restart SERVICE, upgrade) · notify (systemd)
//!   ├── upgrade (freeze → handover in a memfd → new binary checks it → exec in place;
//!   │            adopt, or hand back to the previous binary)
//!   ├── metrics (prometheus; carried across an upgrade) and telemetry::spans (OTLP),
//!   │   both supervisor::Observer
//!   └── supervisor (own thread + runtime)
//!         ├── stack     every unit: starts each once its dependencies are ready, stops
//!         │             in reverse order, or freezes them all for a handover
//!         ├── unit      what one supervised process is (Temporal or a service)
//!         ├── state     pure step(state, event, now) -> (state, actions), split by source
//!         │             state, + allowed-transitions table
//!         ├── policy    restart delays: immediate after a run that served, then
//!         │             exponential + jitter, capped
//!         ├── registry  the one writer of the lock file and the PID file
//!         ├── external  attach mode: an external Temporal, only probed
//!         ├── frozen    a unit's supervisor as an upgrade hands it over
//!         └── actor     owns one unit's child: exit via pidfd event, probes, timers,
//!               │       commands → events; execute carries out actions
//!               ├── health   layers that only look: lock, pid_file, process, identity,
//!               │            port, grpc (kept channel), http, tcp, exec, log
//!               ├── process  proc (the one reader of /proc, on procfs), spawn (own group,
//!               │            PDEATHSIG), identity, group signal/reap, ports
//!               └── logfile  a child's stdout/stderr → size-rotated log (pumps that
//!                            can hand their pipe back)
//! paths: state-dir layout and safety (0700, owner, no symlinks) · exit: exit codes
//!
//! builds: `cargo build` (glibc; build.rs links it non-PIE, without libgcc_s)
//!         scripts/build-static.sh (musl, non-PIE, dlmalloc: what we ship and bench)
//! ```
//!
//! A crash flows: kernel → pidfd readable → actor `Event::Exited` → `step`
//! → `[ReapGroup, WakeAt(now), RecordRestart]` → wake → `Spawn` → probes
//! every 10 ms until gRPC SERVING → `Ready`. A hang flows: a gRPC check
//! times out → `Unhealthy`, confirming checks at once → after
//! `failure_threshold` failures `Kill` (SIGKILL to the group) → exit event
//! → same path. A deleted lock file flows: lock probe fails →
//! `Event::Tampered` → `Action::Repair` → registry re-creates and locks it.
//! An upgrade flows: control.sock → `Halt::Freeze` → every actor returns
//! its `FrozenUnit` → handover memfd → `NEW local start --takeover-check` → exec
//! from the main thread → `Actor::adopt` → answer on the client's socket.

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod exit;
pub mod health;
pub mod http;
pub mod http_client;
pub mod ipc;
pub mod lock;
pub mod logfile;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod pidfile;
pub mod process;
pub mod reclaim;
pub mod redact;

pub mod status;
pub mod supervisor;
pub mod telemetry;
