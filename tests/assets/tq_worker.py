"""A real Temporal worker (Python SDK) for the stack and Temporal-aware tests.

It finds Temporal the way a worker of a stigmer stack should: through
Temporal's environment configuration (`TEMPORAL_ADDRESS`,
`TEMPORAL_NAMESPACE`, `TEMPORAL_PROFILE` + `TEMPORAL_CONFIG_FILE`, TLS and
API key variables), which stigmer sets. Workflow `Greet` runs activity
`greet` on task queue `$TASK_QUEUE`.

Knobs (environment):
- READY_EARLY_SECS: print the readiness line this many seconds *before*
  polling (a log line that lies about readiness);
- NEVER_CONNECT: print the readiness line and never connect;
- HEARTBEAT_SECS: worker heartbeat interval (default 1; the SDK's is 60).
"""

import asyncio
import os
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn(name="Greet")
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )


async def main() -> None:
    if os.environ.get("NEVER_CONNECT"):
        print("Worker ready, polling for tasks", flush=True)
        await asyncio.Event().wait()
    early = float(os.environ.get("READY_EARLY_SECS", "0"))
    if early:
        print("Worker ready, polling for tasks", flush=True)
        await asyncio.sleep(early)
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    runtime = Runtime(
        telemetry=TelemetryConfig(),
        worker_heartbeat_interval=timedelta(
            seconds=float(os.environ.get("HEARTBEAT_SECS", "1"))
        ),
    )
    client = await Client.connect(**config, runtime=runtime)
    worker = Worker(
        client,
        task_queue=os.environ.get("TASK_QUEUE", "orders"),
        workflows=[Greet],
        activities=[greet],
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    # SIGTERM (stigmer's stop signal): stop polling, finish the tasks in
    # hand, then exit, as a worker reloaded with an overlap should.
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: asyncio.ensure_future(worker.shutdown())
    )
    if not early:
        print("Worker ready, polling for tasks", flush=True)
    print(f"connected to {config['target_host']} namespace {client.namespace}", file=sys.stderr, flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
