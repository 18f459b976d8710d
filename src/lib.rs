//! stigmer-local: start, stop, inspect and supervise the local Temporal
//! dev server (`temporal server start-dev`) and the services of its stack,
//! one instance per state dir.
//!
//! # Layers
//! ```text
//! commands · daemon                 the CLI's commands | the daemon (entry, preflight,
//!                                   control socket, upgrade, takeover, systemd notify)
//! cli · ipc · exit                  clap definitions | every CLI↔daemon message | exit
//!                                   codes and failures
//! http                              router, status page, bounded server
//! status · metrics · telemetry      the status document | Prometheus | logs and OTLP spans
//! supervisor                        stack, unit, actor, pure state machine, registry
//! plan                              every unit as a value (UnitSpec, its Kind); the diff
//!                                   of two plans that start and reload apply
//! health                            probes that only look, one per layer; the adaptive
//!                                   detector; the host's CPU pressure (PSI)
//! reclaim                           what a dead daemon left: verified, then stopped
//! pidfile · logfile · config        the PID record | log pumps, tail, follow | options,
//!                                   stigmer.toml, services, the Temporal the stack uses
//! temporal                          how to reach Temporal (connection, temporal.toml
//!                                   profiles) and the calls supervision makes
//! disk · process · lock · paths · redact · http_client · grpc
//!                                   the disk thread | /proc, spawn, identity, groups |
//!                                   the instance lock | state dir and trust | masking |
//!                                   HTTP clients (blocking; kept-alive for checks) |
//!                                   the gRPC client (TLS, headers)
//! model · faults                    shared values: unit names, exit codes, layer and
//!                                   state names, restart reasons, the clock | the
//!                                   test-faults build's fault switches (none shipped)
//! ```
//! A module uses only modules of the layers below its own (main.rs sits on
//! top); `scripts/module-graph.py` derives the graph of `crate::` paths and
//! fails CI on a cycle or an upward edge.
//!
//! # Map
//! ```text
//! main.rs ─ cli (clap) → commands/{start,stop,status,restart,logs,config,upgrade,...}
//!   │        short-lived; ask the daemon on control.sock (ipc::control), else the lock,
//!   │        the PID file and the daemon's /status (http_client)
//!   │        start: takes the lock, hands it, the Config (ipc::handoff, a memfd) and a
//!   │        report pipe (ipc::report) to `stigmer daemon run`; --foreground: main runs it
//!   ▼
//! daemon ── main thread: process::Spawner's loop (spawns every child; execs on upgrade)
//!   │       daemon thread: preflight (reclaim) → named setup steps, or adopt a handover
//!   ├── http (/ /livez /readyz[/NAME] /healthz /status /metrics; Host-checked)
//!   ├── control (control.sock) · notify (systemd) · upgrade / takeover (exec in place,
//!   │   hand back on any failure)
//!   ├── metrics and telemetry::spans, both supervisor::Observer
//!   ├── logfile::Logs: the pumps' runtime + the disk thread (all blocking file work)
//!   └── supervisor (own thread + runtime, a heartbeat that /livez and WATCHDOG read)
//!         ├── stack     starts each unit once its dependencies are ready, stops in
//!         │             reverse order, or freezes them all for a handover
//!         ├── unit      what one supervised process is (Temporal or a service)
//!         ├── state     pure, total step(life, event, now) -> (life, actions, outcome);
//!         │             its table is docs/transitions.md; stale events are counted
//!         ├── policy    restart delays · registry: the one writer of lock and PID file
//!         ├── external  attach mode: an external Temporal, only probed
//!         └── actor     owns one unit's child: exit via pidfd, probes (running units'
//!                       rounds on a shared CLOCK_MONOTONIC grid), timers, commands
//!
//! builds: `cargo build` (glibc; build.rs: the page's CSP hashes, non-PIE link)
//!         scripts/build-static.sh (musl, non-PIE, dlmalloc, the functions stigmer runs
//!         linked first: scripts/hot-text.txt; what we ship and bench)
//! ```
//!
//! A crash flows: kernel → pidfd readable → actor `Event::Exited { pid }` →
//! `step` → `[ReapGroup, WakeAt(now), RecordRestart]` → wake → `Spawn` → probes
//! every 10 ms until gRPC SERVING → `Ready`. A hang flows: a gRPC check
//! outlasts the unit's adaptive timeout (health::detector: 4 × p99 of
//! its answers, 0.1–1 s, + the heartbeat's lag; asked once more with
//! 1 s if the host's CPUs were contended, health::pressure) → `Unhealthy`,
//! confirming checks at once → after
//! `failure_threshold` failures `Kill` (SIGKILL to the group) → exit event
//! → same path. A deleted lock file flows: lock probe fails →
//! `Event::Tampered` → `Action::Repair` → registry re-creates and locks it.
//! An upgrade flows: control.sock → `Halt::Freeze` → every actor returns
//! its `FrozenUnit` → handover memfd → `NEW daemon takeover --check` →
//! exec from the main thread → adopt duplicates of the handover's fds →
//! answer on the client's socket (or hand back to the previous binary).

// What main.rs runs.
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod exit;
pub mod ipc;
pub mod telemetry;

// What the tests and the benchmark reach into: reading /proc, asking the
// daemon's HTTP and Temporal's gRPC health, parsing a configuration or a
// PID file.
pub mod config;
pub mod health;
pub mod http_client;
pub mod paths;
pub mod pidfile;
pub mod process;

mod disk;
mod faults;
mod grpc;
mod http;
mod lock;
mod logfile;
mod metrics;
mod model;
mod plan;
mod reclaim;
mod redact;
mod status;
mod supervisor;
mod temporal;
