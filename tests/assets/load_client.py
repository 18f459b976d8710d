"""A steady workflow load for the reload tests: LANES lanes (default 8)
each start workflow `Greet` (tests/assets/tq_worker.py) on `$TASK_QUEUE`,
with an execution timeout, wait for its end and start the next, until the
file STOP exists; then they wait for the ones in flight, and the load
reads every workflow's history and writes a summary to SUMMARY as JSON.
While it runs, SUMMARY.progress holds the number completed.

Closed, not open: a lane starts a workflow only when its last one ended,
so the load follows what the machine can do. A fixed rate of starts
(20 a second, as this file once had) is more than Temporal and a Python
worker complete on a busy two-core machine: the backlog then grows until
every workflow outlives its execution timeout, with or without a reload,
and a test of the reload measures the machine instead.

The summary is what Temporal recorded, not what the client saw: a client
call that gives up (an RPC deadline) is retried and counted apart
(`rpc_errors`), never as a failed workflow. Its keys:
- `started`, `completed`, `failed` (failed, terminated or cancelled),
  `timed_out` (the execution timeout), `running` (not ended when read),
  `start_errors` (starts refused);
- troubles inside the histories, task attempts that did not end well:
  `sticky_timeouts` (a workflow task left on the sticky queue of a worker
  that stopped polling without telling Temporal), `workflow_task_timeouts`
  (a workflow task a worker took and never finished), `activity_retries`
  (an activity attempt that timed out and was retried: a worker took it
  and never finished it), `task_failures`; `problems` names the first
  few (workflow id, trouble);
- `workers`: per worker identity (`PID@HOST`), the tasks it started;
- `max_latency_s`, `rpc_errors`: for information only.

Usage: load_client.py ADDRESS STOP SUMMARY [LANES]
"""

import asyncio
import json
import os
import sys
import time
from datetime import timedelta

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowFailureError

STARTED = [
    "workflow_task_started_event_attributes",
    "activity_task_started_event_attributes",
]
CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "failed",
}


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


async def wait_end(handle, stats):
    """Until the workflow has ended; a client call that gives up is
    retried (the workflow's own timeout bounds this)."""
    while True:
        try:
            await handle.result()
            return True
        except WorkflowFailureError:
            return False
        except Exception:
            stats["rpc_errors"] += 1
            await asyncio.sleep(0.5)


async def lane(client, queue, n, stop, stats, handles, summary):
    k = 0
    while not os.path.exists(stop):
        wid = f"load-{os.getpid()}-{n}-{k}"
        k += 1
        t0 = time.monotonic()
        try:
            handle = await client.start_workflow(
                "Greet",
                wid,
                id=wid,
                task_queue=queue,
                execution_timeout=timedelta(seconds=20),
            )
        except Exception:
            stats["start_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["started"] += 1
        handles.append(handle)
        if await wait_end(handle, stats):
            stats["seen_completed"] += 1
            write_atomic(summary + ".progress", str(stats["seen_completed"]))
        stats["max_latency_s"] = max(stats["max_latency_s"], time.monotonic() - t0)


def trouble(e):
    """The kind of trouble a history event records, if any."""
    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        kind = e.workflow_task_timed_out_event_attributes.timeout_type
        # Only a sticky queue has a schedule-to-start timeout.
        if kind == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
            return "sticky_timeouts"
        return "workflow_task_timeouts"
    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        return "activity_retries"
    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        # An attempt that timed out and was retried leaves no event of
        # its own: the next attempt's number tells.
        if e.activity_task_started_event_attributes.attempt > 1:
            return "activity_retries"
        return None
    if e.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    ):
        return "task_failures"
    return None


async def read_history(handle, stats, gate):
    """Count the workflow's end, who worked on it, and its troubles."""
    async with gate:
        history = await handle.fetch_history()
    end = "running"
    for e in history.events:
        for started in STARTED:
            if e.HasField(started):
                who = getattr(e, started).identity
                stats["workers"][who] = stats["workers"].get(who, 0) + 1
        if e.event_type in CLOSED:
            end = CLOSED[e.event_type]
        kind = trouble(e)
        if kind:
            stats[kind] += 1
            if len(stats["problems"]) < 10:
                stats["problems"].append({"workflow_id": handle.id, "trouble": kind})
    stats[end] += 1


async def main() -> None:
    address, stop, summary = sys.argv[1], sys.argv[2], sys.argv[3]
    lanes = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    queue = os.environ.get("TASK_QUEUE", "orders")
    client = await Client.connect(address)
    counts = ["started", "completed", "failed", "timed_out", "running", "start_errors"]
    counts += ["sticky_timeouts", "workflow_task_timeouts", "activity_retries"]
    counts += ["task_failures", "rpc_errors", "seen_completed"]
    stats = dict.fromkeys(counts, 0)
    stats.update(max_latency_s=0.0, problems=[], workers={})
    handles = []
    await asyncio.gather(
        *(lane(client, queue, n, stop, stats, handles, summary) for n in range(lanes))
    )
    gate = asyncio.Semaphore(8)
    await asyncio.gather(*(read_history(h, stats, gate) for h in handles))
    del stats["seen_completed"]
    write_atomic(summary, json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
    # The summary is written. Skip the interpreter's teardown: the SDK's
    # Rust threads can outlive it and abort the process ("Fatal Python
    # error: PyGILState_Release ... finalizing", temporalio/sdk-python#300),
    # which would turn a finished load into a failed one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
