//! The few messages of Temporal's API (`temporal.api.*.v1`) that we send
//! and read, written by hand with their field numbers from
//! temporalio/api; prost skips fields we leave out, so an answer from a
//! newer server still decodes.

use prost_types::{Duration, Timestamp};

/// `temporal.api.taskqueue.v1.TaskQueue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskQueue {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// 1 = normal.
    #[prost(int32, tag = "2")]
    pub kind: i32,
}

impl TaskQueue {
    /// A normal queue named `name`.
    pub fn normal(name: &str) -> TaskQueue {
        TaskQueue {
            name: name.to_string(),
            kind: 1,
        }
    }
}

/// `TaskQueueType`: WORKFLOW = 1, ACTIVITY = 2.
pub const TASK_QUEUE_TYPE_WORKFLOW: i32 = 1;
/// See [`TASK_QUEUE_TYPE_WORKFLOW`].
pub const TASK_QUEUE_TYPE_ACTIVITY: i32 = 2;

/// `DescribeTaskQueueRequest` (default mode: one type per call).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeTaskQueueRequest {
    /// Namespace.
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// The queue.
    #[prost(message, optional, tag = "2")]
    pub task_queue: Option<TaskQueue>,
    /// Which pollers: workflow or activity.
    #[prost(int32, tag = "3")]
    pub task_queue_type: i32,
}

/// `DescribeTaskQueueResponse`: its pollers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeTaskQueueResponse {
    /// Who polled in the last few minutes (the server's poller history).
    #[prost(message, repeated, tag = "1")]
    pub pollers: Vec<PollerInfo>,
}

/// `temporal.api.taskqueue.v1.PollerInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PollerInfo {
    /// When it last started or ended a poll (the server's clock).
    #[prost(message, optional, tag = "1")]
    pub last_access_time: Option<Timestamp>,
    /// The worker's identity (SDK default: `PID@HOST`).
    #[prost(string, tag = "2")]
    pub identity: String,
}

/// `temporal.api.common.v1.WorkflowType`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkflowType {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `temporal.api.common.v1.WorkflowExecution`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkflowExecution {
    /// Workflow id.
    #[prost(string, tag = "1")]
    pub workflow_id: String,
    /// Run id ("" = the latest run).
    #[prost(string, tag = "2")]
    pub run_id: String,
}

/// `StartWorkflowExecutionRequest`, the fields we set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartWorkflowExecutionRequest {
    /// Namespace.
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// Workflow id.
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    /// Its type.
    #[prost(message, optional, tag = "3")]
    pub workflow_type: Option<WorkflowType>,
    /// Where its tasks would go.
    #[prost(message, optional, tag = "4")]
    pub task_queue: Option<TaskQueue>,
    /// Who starts it.
    #[prost(string, tag = "9")]
    pub identity: String,
    /// Idempotency key.
    #[prost(string, tag = "10")]
    pub request_id: String,
    /// 1 = allow duplicate.
    #[prost(int32, tag = "11")]
    pub workflow_id_reuse_policy: i32,
    /// Delay before the first workflow task: none is dispatched before.
    #[prost(message, optional, tag = "20")]
    pub workflow_start_delay: Option<Duration>,
    /// 3 = terminate a running one with the same id.
    #[prost(int32, tag = "22")]
    pub workflow_id_conflict_policy: i32,
}

/// `StartWorkflowExecutionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartWorkflowExecutionResponse {
    /// The new run.
    #[prost(string, tag = "1")]
    pub run_id: String,
}

/// `TerminateWorkflowExecutionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TerminateWorkflowExecutionRequest {
    /// Namespace.
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// Which run.
    #[prost(message, optional, tag = "2")]
    pub workflow_execution: Option<WorkflowExecution>,
    /// Why (kept in its history).
    #[prost(string, tag = "3")]
    pub reason: String,
    /// Who.
    #[prost(string, tag = "5")]
    pub identity: String,
}

/// `TerminateWorkflowExecutionResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TerminateWorkflowExecutionResponse {}

/// `ListWorkersRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListWorkersRequest {
    /// Namespace.
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// Page size.
    #[prost(int32, tag = "2")]
    pub page_size: i32,
    /// e.g. `TaskQueue = 'orders'`.
    #[prost(string, tag = "4")]
    pub query: String,
}

/// `ListWorkersResponse`: the full heartbeats (deprecated field 1, which
/// servers up to 1.32 at least still fill; the newer list form has no
/// heartbeat time).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListWorkersResponse {
    /// One per worker.
    #[prost(message, repeated, tag = "1")]
    pub workers_info: Vec<WorkerInfo>,
}

/// `temporal.api.worker.v1.WorkerInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerInfo {
    /// Its last heartbeat.
    #[prost(message, optional, tag = "1")]
    pub worker_heartbeat: Option<WorkerHeartbeat>,
}

/// `temporal.api.worker.v1.WorkerHeartbeat`, the fields we read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerHeartbeat {
    /// The worker's identity (as it polls).
    #[prost(string, tag = "2")]
    pub worker_identity: String,
    /// Host and process.
    #[prost(message, optional, tag = "3")]
    pub host_info: Option<WorkerHostInfo>,
    /// Its task queue.
    #[prost(string, tag = "4")]
    pub task_queue: String,
    /// 1 running, 2 shutting down, 3 shut down.
    #[prost(int32, tag = "8")]
    pub status: i32,
    /// When the worker sent it (the worker's clock).
    #[prost(message, optional, tag = "10")]
    pub heartbeat_time: Option<Timestamp>,
    /// Since its previous heartbeat: the worker's interval.
    #[prost(message, optional, tag = "11")]
    pub elapsed_since_last_heartbeat: Option<Duration>,
}

/// `temporal.api.worker.v1.WorkerHostInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerHostInfo {
    /// Host name.
    #[prost(string, tag = "1")]
    pub host_name: String,
    /// The process id, as text.
    #[prost(string, tag = "2")]
    pub process_id: String,
}

/// `WorkerStatus`: shutting down, or shut down.
pub const WORKER_STATUS_SHUTTING_DOWN: i32 = 2;
