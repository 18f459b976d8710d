"""A steady workflow load for the reload tests: starts workflow `Greet`
(tests/assets/tq_worker.py) on `$TASK_QUEUE` every INTERVAL seconds, each
with an execution timeout, until the file STOP exists; then waits for the
ones in flight and writes a summary to SUMMARY as JSON:
{"started", "completed", "failed", "timed_out", "max_latency_s"}; while
it runs, SUMMARY.progress holds the number completed.

Usage: load_client.py ADDRESS STOP SUMMARY [INTERVAL]
"""

import asyncio
import json
import os
import sys
import time
from datetime import timedelta

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import TimeoutError as WorkflowTimeout


async def one(client, queue, n, stats):
    t0 = time.monotonic()
    try:
        await client.execute_workflow(
            "Greet",
            f"load-{n}",
            id=f"load-{os.getpid()}-{n}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=20),
        )
        stats["completed"] += 1
        progress = stats["summary"] + ".progress"
        with open(progress + ".tmp", "w") as f:
            f.write(str(stats["completed"]))
        os.replace(progress + ".tmp", progress)
    except WorkflowFailureError as e:
        if isinstance(e.cause, WorkflowTimeout):
            stats["timed_out"] += 1
        else:
            stats["failed"] += 1
    except Exception:
        stats["failed"] += 1
    stats["max_latency_s"] = max(stats["max_latency_s"], time.monotonic() - t0)


async def main() -> None:
    address, stop, summary = sys.argv[1], sys.argv[2], sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    queue = os.environ.get("TASK_QUEUE", "orders")
    client = await Client.connect(address)
    stats = {"started": 0, "completed": 0, "failed": 0, "timed_out": 0, "max_latency_s": 0.0}
    stats["summary"] = summary
    tasks = []
    while not os.path.exists(stop):
        tasks.append(asyncio.create_task(one(client, queue, stats["started"], stats)))
        stats["started"] += 1
        await asyncio.sleep(interval)
    await asyncio.gather(*tasks)
    del stats["summary"]
    tmp = summary + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, summary)


if __name__ == "__main__":
    asyncio.run(main())
