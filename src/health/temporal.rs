//! The checks that ask Temporal itself: does this service's worker poll
//! its task queue (and, where the server keeps worker heartbeats, does it
//! still heartbeat), and does Temporal still write.
//!
//! A poller is this service's when its identity names a process of the
//! service's process group on this host (the SDKs' default identity is
//! `PID@HOST`; wrappers such as `uv run` or `npm` make the real worker a
//! child in the same group), or equals the configured `identity`.
//!
//! Staleness. The server lists a poller for 5 minutes after its last poll
//! (its poller history), and updates the poll time when a poll starts and
//! when it ends; a long poll lasts up to a minute. So a live, idle worker
//! was seen at most ~60 s ago, and [`POLL_STALE`] (75 s) past that means
//! it stopped polling. Worker heartbeats (servers 1.30+ by default; Python
//! SDK 1.20+, Go 1.41+, every 60 s unless configured) tell sooner: a worker
//! whose last heartbeat is older than [`HEARTBEAT_MISSES`] of its own
//! intervals is not running.

use super::{Probe, Problem};
use crate::grpc::CallError;
use crate::model::Layer;
use crate::process::proc;
use crate::temporal::{self, QueueType, proto};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A poll older than this means the worker stopped polling: the server's
/// long poll (60 s) plus margin.
pub const POLL_STALE: Duration = Duration::from_secs(75);

/// Heartbeat intervals a worker may miss before it counts as stopped.
pub const HEARTBEAT_MISSES: u32 = 3;

/// A worker's heartbeat interval when it has sent only one (the SDKs'
/// default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// What a task-queue check saw of the service's workers (shown in the
/// status and as metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSeen {
    /// This service's pollers (distinct identities) on the queue.
    pub pollers: u32,
    /// Its latest poll (the server's clock), Unix ms.
    pub last_poll_unix_ms: Option<u64>,
    /// Its latest worker heartbeat (the worker's clock), Unix ms, where
    /// the server keeps heartbeats.
    pub last_heartbeat_unix_ms: Option<u64>,
}

/// What a task-queue check looks for; shared by the unit's rounds.
#[derive(Debug, Clone)]
pub struct QueueCheck {
    /// Temporal.
    pub client: temporal::Client,
    /// Its namespace.
    pub namespace: String,
    /// The queue.
    pub queue: String,
    /// The kinds that must be polled; empty = any.
    pub types: Vec<QueueType>,
    /// The identity to match instead of `PID@HOST`.
    pub identity: Option<String>,
    /// Whether the server answers `ListWorkers` (learnt at the first
    /// UNIMPLEMENTED).
    heartbeats: Arc<AtomicBool>,
}

impl QueueCheck {
    /// A check of `queue` in `namespace`.
    pub fn new(
        client: temporal::Client,
        namespace: String,
        queue: String,
        types: Vec<QueueType>,
        identity: Option<String>,
    ) -> QueueCheck {
        QueueCheck {
            client,
            namespace,
            queue,
            types,
            identity,
            heartbeats: Arc::new(AtomicBool::new(true)),
        }
    }
}

/// One check of a [`QueueCheck`] for the process group `pgid`.
pub struct TaskQueueProbe {
    /// What to look for.
    pub check: QueueCheck,
    /// The service's process group.
    pub pgid: i32,
    /// Deadline of each call.
    pub timeout: Duration,
    /// What it saw, for the round to attach to its check.
    pub seen: Mutex<Option<QueueSeen>>,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn unix_ms(t: &prost_types::Timestamp) -> u64 {
    (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000
}

fn call_problem(what: &str, e: CallError) -> Problem {
    match e {
        CallError::Timeout(t) => Problem::Timeout(t),
        e if e.is_auth() => Problem::Rejected(e.to_string()),
        e => Problem::Call(format!("{what}: {e}")),
    }
}

impl TaskQueueProbe {
    /// Is `identity` (or pid `process_id` on `host`) this service's worker?
    fn ours(&self, identity: &str, host: &str) -> bool {
        if let Some(want) = &self.check.identity {
            return identity == want;
        }
        let Some((pid, id_host)) = temporal::identity_pid(identity) else {
            return false;
        };
        (id_host == host || id_host.is_empty())
            && proc::stat(pid).is_some_and(|s| s.pgrp == self.pgid)
    }

    /// The newest heartbeat of this service's workers, when the server
    /// keeps them: (heartbeat time, interval, shutting down).
    async fn heartbeat(&self, host: &str) -> Option<(u64, Duration, bool)> {
        if !self.check.heartbeats.load(Ordering::Relaxed) {
            return None;
        }
        let c = &self.check;
        let beats = match c
            .client
            .heartbeats(&c.namespace, &c.queue, self.timeout)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                if e.code() == Some(tonic::Code::Unimplemented) {
                    c.heartbeats.store(false, Ordering::Relaxed);
                }
                return None;
            }
        };
        beats
            .iter()
            .filter(|b| self.ours(&b.worker_identity, host))
            .filter_map(|b| {
                let at = unix_ms(b.heartbeat_time.as_ref()?);
                let interval = b
                    .elapsed_since_last_heartbeat
                    .as_ref()
                    .and_then(|d| Duration::try_from(*d).ok())
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_HEARTBEAT);
                Some((at, interval, b.status >= proto::WORKER_STATUS_SHUTTING_DOWN))
            })
            .max_by_key(|(at, ..)| *at)
    }

    async fn look(&self) -> Result<(QueueSeen, Vec<QueueType>), Problem> {
        let c = &self.check;
        let host = this_host();
        let types = if c.types.is_empty() {
            vec![QueueType::Workflow, QueueType::Activity]
        } else {
            c.types.clone()
        };
        let mut ids = std::collections::BTreeSet::new();
        let mut polled = Vec::new();
        let mut seen = QueueSeen::default();
        for t in types {
            let pollers = c
                .client
                .pollers(&c.namespace, &c.queue, t, self.timeout)
                .await
                .map_err(|e| call_problem("DescribeTaskQueue", e))?;
            for p in pollers.iter().filter(|p| self.ours(&p.identity, &host)) {
                ids.insert(p.identity.clone());
                if !polled.contains(&t) {
                    polled.push(t);
                }
                let at = p.last_access_time.as_ref().map(unix_ms);
                seen.last_poll_unix_ms = seen.last_poll_unix_ms.max(at);
            }
        }
        seen.pollers = ids.len() as u32;
        Ok((seen, polled))
    }
}

impl Probe for TaskQueueProbe {
    const LAYER: Layer = Layer::TaskQueue;
    async fn check(&self) -> Result<String, Problem> {
        let (mut seen, polled) = self.look().await?;
        let beat = if seen.pollers > 0 {
            self.heartbeat(&this_host()).await
        } else {
            None
        };
        seen.last_heartbeat_unix_ms = beat.map(|(at, ..)| at);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen.clone());
        self.verdict(&seen, &polled, beat)
    }
}

impl TaskQueueProbe {
    fn verdict(
        &self,
        seen: &QueueSeen,
        polled: &[QueueType],
        beat: Option<(u64, Duration, bool)>,
    ) -> Result<String, Problem> {
        let c = &self.check;
        let queue = format!("{}/{}", c.namespace, c.queue);
        if seen.pollers == 0 {
            return Err(Problem::NotPolling(format!(
                "no worker of this service polls {queue}"
            )));
        }
        if let Some(missing) = c.types.iter().find(|t| !polled.contains(t)) {
            return Err(Problem::NotPolling(format!(
                "no {} poller of this service on {queue}",
                missing.as_str()
            )));
        }
        let now = crate::model::clock::unix_now_ms();
        let age = |at: u64| Duration::from_millis(now.saturating_sub(at));
        if let Some(at) = seen.last_poll_unix_ms
            && age(at) > POLL_STALE
        {
            return Err(Problem::NotPolling(format!(
                "last poll of {queue} {} s ago",
                age(at).as_secs()
            )));
        }
        if let Some((at, interval, stopping)) = beat {
            if stopping {
                return Err(Problem::NotPolling(format!(
                    "its worker on {queue} is shutting down"
                )));
            }
            if age(at) > interval * HEARTBEAT_MISSES + Duration::from_secs(1) {
                return Err(Problem::NotPolling(format!(
                    "its worker on {queue} last heartbeat {:.1} s ago (every {:.1} s)",
                    age(at).as_secs_f64(),
                    interval.as_secs_f64()
                )));
            }
        }
        Ok(format!(
            "{} poller(s) on {queue}, last poll {} s ago",
            seen.pollers,
            seen.last_poll_unix_ms.map_or(0, |at| age(at).as_secs())
        ))
    }
}

/// Temporal writes: one workflow started and terminated.
pub struct PersistenceProbe {
    /// Temporal.
    pub client: temporal::Client,
    /// Where to write.
    pub namespace: String,
    /// Deadline of each call.
    pub timeout: Duration,
}

impl Probe for PersistenceProbe {
    const LAYER: Layer = Layer::Persistence;
    async fn check(&self) -> Result<String, Problem> {
        let identity = format!("stigmer@{}", this_host());
        match self
            .client
            .write_check(&self.namespace, &identity, self.timeout)
            .await
        {
            Ok(()) => Ok(format!(
                "started and terminated a workflow in {}",
                self.namespace
            )),
            Err(CallError::Timeout(t)) => Err(Problem::Timeout(t)),
            Err(e) if e.is_auth() => Err(Problem::Rejected(e.to_string())),
            Err(e) => Err(Problem::Write(e.to_string())),
        }
    }
}
