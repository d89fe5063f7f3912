# The Temporal driver of the peer benchmark: offers N flows at RATE flows/s (flow i starts at
# i/RATE s; its "delivered" signal follows 0.5 s (even i) or 1.5 s (odd i) later), then reads
# every workflow's result (the instant its review reached the "provider" activity) and prints
# ONE JSON line with the fields benches/peers/plot.py reads (see examples/peer_load.rs for
# their definitions: lateness is measured from SCHEDULED instants, no coordinated omission).
# Usage: python driver.py --n 1000 --rate 1000 [--address 127.0.0.1:7233]
import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import datetime, timezone

from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from flow import TASK_QUEUE, WAIT_S, ReviewPeer

DELIVERY_EVEN_S = 0.5
DELIVERY_ODD_S = 1.5


def pct(v, p):
    if not v:
        return float("nan")
    return v[round((len(v) - 1) * p)]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def retry(call, attempts=10):
    # An overloaded dev server times RPCs out: try again (starts are idempotent on the id).
    for k in range(attempts):
        try:
            return await call()
        except RPCError:
            if k == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (k + 1))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--address", default="127.0.0.1:7233")
    ap.add_argument("--label", default="sqlite")
    a = ap.parse_args()
    load_before = loadavg()
    client = await Client.connect(a.address)
    run = uuid.uuid4().hex[:8]
    start = time.time() + 0.5
    started = [None] * a.n

    def delivery(i):
        return DELIVERY_EVEN_S if i % 2 == 0 else DELIVERY_ODD_S

    async def offer(i):
        at = start + i / a.rate
        await asyncio.sleep(max(0.0, at - time.time()))
        h = await retry(lambda: client.start_workflow(
            ReviewPeer.run, i, id=f"rp-{run}-{i}", task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=timedelta(seconds=60),
        ))
        started[i] = time.time()
        await asyncio.sleep(max(0.0, at + delivery(i) - time.time()))
        await retry(lambda: h.signal(ReviewPeer.delivered_signal, rpc_timeout=timedelta(seconds=60)))
        return h

    handles = await asyncio.gather(*(offer(i) for i in range(a.n)))
    offered_secs = time.time() - start
    done, timed_out = [], []
    for i, h in enumerate(handles):
        t = await h.result(rpc_timeout=timedelta(seconds=600))
        (done if t > 0 else timed_out).append((i, abs(t)))
    load_after = loadavg()
    ideal = lambda i: start + i / a.rate + max(WAIT_S, delivery(i))
    lateness = sorted((t - ideal(i)) * 1e3 for i, t in done)
    start_lag = sorted((started[i] - (start + i / a.rate)) * 1e3 for i in range(a.n))
    last = max(t for _, t in done + timed_out) - start if done or timed_out else float("nan")
    out = {
        "engine": "temporal",
        "n": a.n,
        "rate": a.rate,
        "offered_events_per_s": 2 * a.rate,
        "completed": len(done),
        "timed_out": len(timed_out),
        "finished": len(done) + len(timed_out),
        "flows_per_s": (len(done) + len(timed_out)) / last if done or timed_out else 0.0,
        "lateness_p50_ms": pct(lateness, 0.5),
        "lateness_p99_ms": pct(lateness, 0.99),
        "lateness_max_ms": pct(lateness, 1.0),
        "offered_secs": offered_secs,
        "last_completion_s": last,
        "start_lag_p50_ms": pct(start_lag, 0.5),
        "start_lag_p99_ms": pct(start_lag, 0.99),
        "durability": a.label,
        "load_before": load_before,
        "load_after": load_after,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
