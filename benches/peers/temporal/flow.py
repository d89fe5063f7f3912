# The review-request flow of the peer benchmark as a Temporal workflow (Python SDK), with the
# same compressed timings as benches/peers/aftercart/review_peer.flow: send a confirmation
# (activity); sleep 1 s; wait for the "delivered" signal for at most 2 s; send the review
# request (activity) or, on timeout, nothing. The activity stands for the SMS provider: it
# returns the wall-clock instant the message reached it, and the workflow returns the review's.
import asyncio
import time
from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "review-peer"
WAIT_S = 1.0
DELIVERY_TIMEOUT_S = 2.0


@activity.defn
async def send_sms(kind: str, i: int) -> float:
    # The provider call: nothing to send on loopback, so it only notes when it ran.
    return time.time()


@workflow.defn
class ReviewPeer:
    def __init__(self) -> None:
        self.delivered = False

    @workflow.signal
    def delivered_signal(self) -> None:
        self.delivered = True

    @workflow.run
    async def run(self, i: int) -> float:
        await workflow.execute_activity(
            send_sms, args=["confirmation", i], start_to_close_timeout=timedelta(seconds=60)
        )
        await workflow.sleep(WAIT_S)
        try:
            await workflow.wait_condition(lambda: self.delivered, timeout=DELIVERY_TIMEOUT_S)
        except asyncio.TimeoutError:
            # Timed out: finished without a review, at (about) this instant, as a negative.
            return -workflow.now().timestamp()
        return await workflow.execute_activity(
            send_sms, args=["review", i], start_to_close_timeout=timedelta(seconds=60)
        )
