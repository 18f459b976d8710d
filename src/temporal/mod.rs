//! Temporal as a client sees it: how to reach it ([`Connection`]: one
//! endpoint with its TLS and credentials, and the stack's namespace), its
//! own environment configuration ([`envconfig`]: `temporal.toml` profiles
//! and `TEMPORAL_*` variables), and the few calls supervision makes
//! ([`Client`]): who polls a task queue, which workers heartbeat, and one
//! write (start and terminate a workflow that never runs).

pub mod envconfig;
pub mod proto;

use crate::grpc::{self, CallError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The header naming the namespace of a call (Temporal Cloud and proxies
/// route and authorize by it).
const NAMESPACE_HEADER: &str = "temporal-namespace";

/// The gRPC service Temporal reports health for.
pub const HEALTH_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";

/// The namespace of the managed dev server's write check: created at
/// launch, so the check never writes into a namespace of the user's.
pub const CHECK_NAMESPACE: &str = "stigmer-health";

/// The task queue (and workflow type and id) of the write check. No
/// worker polls it: the workflow is started with a start delay, so no task
/// is ever dispatched, and terminated at once.
pub const CHECK_QUEUE: &str = "stigmer-persistence-check";

/// How to reach one Temporal, and the namespace the stack works in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// Address, TLS and the headers of every call (the API key among
    /// them).
    pub endpoint: grpc::Endpoint,
    /// The stack's namespace.
    pub namespace: String,
}

impl Connection {
    /// A local dev server: plaintext, no credentials.
    pub fn local(addr: SocketAddr, namespace: &str) -> Connection {
        Connection {
            endpoint: grpc::Endpoint::plain(addr),
            namespace: namespace.to_string(),
        }
    }

    /// Whether calls go over TLS.
    pub fn tls(&self) -> bool {
        self.endpoint.tls.is_some()
    }

    /// Whether calls carry credentials (an `authorization` header).
    pub fn has_credentials(&self) -> bool {
        self.endpoint
            .headers
            .iter()
            .any(|h| h.name == "authorization")
    }
}

/// The kinds of task a worker polls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// Workflow tasks.
    Workflow,
    /// Activity tasks.
    Activity,
}

impl QueueType {
    fn wire(self) -> i32 {
        match self {
            QueueType::Workflow => proto::TASK_QUEUE_TYPE_WORKFLOW,
            QueueType::Activity => proto::TASK_QUEUE_TYPE_ACTIVITY,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Workflow => "workflow",
            QueueType::Activity => "activity",
        }
    }
}

/// The calls supervision makes, over one kept connection.
#[derive(Debug, Clone)]
pub struct Client {
    grpc: grpc::Client,
}

/// A worker's identity as the SDKs make it by default, `PID@HOST` (Go
/// adds a trailing `@`): its pid and host.
pub fn identity_pid(identity: &str) -> Option<(i32, &str)> {
    let (pid, rest) = identity.split_once('@')?;
    let host = rest.split('@').next().unwrap_or(rest);
    Some((pid.parse().ok().filter(|p: &i32| *p > 0)?, host))
}

impl Client {
    /// A client of `conn`, connected on first use.
    pub fn new(conn: &Connection) -> Client {
        Client {
            grpc: grpc::Client::new(conn.endpoint.clone()),
        }
    }

    /// The underlying gRPC client (health checks).
    pub fn grpc(&self) -> &grpc::Client {
        &self.grpc
    }

    /// The pollers of `queue` of one type (workflow or activity) that the
    /// server saw in the last few minutes.
    pub async fn pollers(
        &self,
        namespace: &str,
        queue: &str,
        kind: QueueType,
        timeout: Duration,
    ) -> Result<Vec<proto::PollerInfo>, CallError> {
        let r: proto::DescribeTaskQueueResponse = self
            .grpc
            .unary(
                const_path::DESCRIBE_TASK_QUEUE,
                proto::DescribeTaskQueueRequest {
                    namespace: namespace.to_string(),
                    task_queue: Some(proto::TaskQueue::normal(queue)),
                    task_queue_type: kind.wire(),
                },
                &[(NAMESPACE_HEADER, namespace)],
                timeout,
            )
            .await?;
        Ok(r.pollers)
    }

    /// The last heartbeats of the workers of `queue` (servers that keep
    /// them: 1.29 with heartbeats enabled, on by default since 1.30).
    pub async fn heartbeats(
        &self,
        namespace: &str,
        queue: &str,
        timeout: Duration,
    ) -> Result<Vec<proto::WorkerHeartbeat>, CallError> {
        let r: proto::ListWorkersResponse = self
            .grpc
            .unary(
                const_path::LIST_WORKERS,
                proto::ListWorkersRequest {
                    namespace: namespace.to_string(),
                    page_size: 100,
                    query: format!("TaskQueue = '{queue}'"),
                },
                &[(NAMESPACE_HEADER, namespace)],
                timeout,
            )
            .await?;
        Ok(r.workers_info
            .into_iter()
            .filter_map(|w| w.worker_heartbeat)
            .collect())
    }

    /// One write through the frontend: start a workflow of
    /// [`CHECK_QUEUE`] in `namespace` (delayed a day, so it never runs)
    /// and terminate it. Closed, it is deleted after the namespace's
    /// retention: the history stays bounded.
    pub async fn write_check(
        &self,
        namespace: &str,
        identity: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let started: proto::StartWorkflowExecutionResponse = self
            .grpc
            .unary(
                const_path::START_WORKFLOW,
                proto::StartWorkflowExecutionRequest {
                    namespace: namespace.to_string(),
                    workflow_id: CHECK_QUEUE.to_string(),
                    workflow_type: Some(proto::WorkflowType {
                        name: CHECK_QUEUE.to_string(),
                    }),
                    task_queue: Some(proto::TaskQueue::normal(CHECK_QUEUE)),
                    identity: identity.to_string(),
                    request_id: request_id(),
                    workflow_id_reuse_policy: 1,
                    workflow_start_delay: Some(prost_types::Duration {
                        seconds: 86_400,
                        nanos: 0,
                    }),
                    workflow_id_conflict_policy: 3,
                },
                &[(NAMESPACE_HEADER, namespace)],
                timeout,
            )
            .await?;
        let terminated: Result<proto::TerminateWorkflowExecutionResponse, _> = self
            .grpc
            .unary(
                const_path::TERMINATE_WORKFLOW,
                proto::TerminateWorkflowExecutionRequest {
                    namespace: namespace.to_string(),
                    workflow_execution: Some(proto::WorkflowExecution {
                        workflow_id: CHECK_QUEUE.to_string(),
                        run_id: started.run_id,
                    }),
                    reason: "stigmer persistence check".into(),
                    identity: identity.to_string(),
                },
                &[(NAMESPACE_HEADER, namespace)],
                timeout,
            )
            .await;
        match terminated {
            // Already closed: what terminating it was for.
            Err(e) if e.code() == Some(tonic::Code::NotFound) => Ok(()),
            r => r.map(drop),
        }
    }
}

/// A request id unique to this call (idempotent retries are not needed:
/// each check is a new write).
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "stigmer-{}-{now:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The RPC paths of the workflow service.
mod const_path {
    pub const DESCRIBE_TASK_QUEUE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/DescribeTaskQueue";
    pub const LIST_WORKERS: &str = "/temporal.api.workflowservice.v1.WorkflowService/ListWorkers";
    pub const START_WORKFLOW: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
    pub const TERMINATE_WORKFLOW: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/TerminateWorkflowExecution";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_identities_name_their_process() {
        assert_eq!(identity_pid("4242@devbox"), Some((4242, "devbox")));
        assert_eq!(identity_pid("4242@devbox@"), Some((4242, "devbox")));
        assert_eq!(identity_pid("worker-a"), None);
        assert_eq!(identity_pid("0@devbox"), None);
        assert_eq!(identity_pid("-1@devbox"), None);
    }
}
