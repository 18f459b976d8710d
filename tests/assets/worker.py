"""A real Temporal worker (Python SDK) for the stack tests: workflow
`Greet` runs activity `greet`. It prints its readiness line once it is
connected and about to poll, as upstream stigmer's runner does."""

import asyncio
import os
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
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
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    worker = Worker(
        client,
        task_queue=os.environ.get("TASK_QUEUE", "stack"),
        workflows=[Greet],
        activities=[greet],
    )
    print("Worker ready, polling for tasks", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
