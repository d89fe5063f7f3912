# A Temporal worker for the peer benchmark: polls the task queue of flow.py with high
# concurrency limits (run several of these processes: one Python process is one core at most).
# Usage: python worker.py [--address 127.0.0.1:7233] [--sandbox]
import argparse
import asyncio

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from flow import TASK_QUEUE, ReviewPeer, send_sms


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1:7233")
    ap.add_argument("--sandbox", action="store_true", help="keep the workflow sandbox (slower)")
    a = ap.parse_args()
    client = await Client.connect(a.address)
    kw = {} if a.sandbox else {"workflow_runner": UnsandboxedWorkflowRunner()}
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[ReviewPeer],
        activities=[send_sms],
        max_concurrent_workflow_tasks=1000,
        max_concurrent_activities=1000,
        max_concurrent_workflow_task_polls=16,
        max_concurrent_activity_task_polls=16,
        max_cached_workflows=20000,
        **kw,
    )
    print("worker ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
