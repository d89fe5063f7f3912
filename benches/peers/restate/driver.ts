// The Restate driver of the peer benchmark: offers N flows at RATE flows/s through the ingress
// (flow i: POST /ReviewPeer/<key>/run/send at i/RATE s, then POST /ReviewPeer/<key>/delivered
// 0.5 s (even i) or 1.5 s (odd i) later), then attaches to every workflow for its result (the
// instant its review reached the "provider" ctx.run) and prints ONE JSON line with the fields
// benches/peers/plot.py reads (definitions in examples/peer_load.rs: lateness from SCHEDULED
// instants, no coordinated omission).
// Usage: npx tsx driver.ts --n 1000 --rate 1000 [--ingress http://127.0.0.1:8080]
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";

const WAIT_MS = 1000;
const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const k = args.indexOf(name);
  return k >= 0 ? args[k + 1] : dflt;
};
const n = Number(arg("--n", "1000"));
const rate = Number(arg("--rate", "1000"));
const ingress = arg("--ingress", "http://127.0.0.1:8080");
const delivery = (i: number) => (i % 2 === 0 ? 500 : 1500);
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const pct = (v: number[], p: number) => (v.length ? v[Math.round((v.length - 1) * p)] : NaN);
const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

async function post(path: string, body: unknown): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(ingress + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (r.ok || attempt >= 5) return r;
    } catch (e) {
      if (attempt >= 5) throw e;
    }
    await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
  }
}

async function main() {
  const loadBefore = loadavg();
  const run = randomUUID().slice(0, 8);
  const start = Date.now() + 500;
  const started: number[] = new Array(n);
  const failures: string[] = [];
  const offer = async (i: number) => {
    const key = `rp-${run}-${i}`;
    const at = start + i / rate * 1000;
    await sleepUntil(at);
    const r = await post(`/ReviewPeer/${key}/run/send`, i);
    if (!r.ok) failures.push(`start ${i}: ${r.status} ${await r.text()}`);
    else await r.arrayBuffer();
    started[i] = Date.now();
    await sleepUntil(at + delivery(i));
    const s = await post(`/ReviewPeer/${key}/delivered`, null);
    if (!s.ok) failures.push(`delivered ${i}: ${s.status} ${await s.text()}`);
    else await s.arrayBuffer();
  };
  await Promise.all(Array.from({ length: n }, (_, i) => offer(i)));
  const offeredSecs = (Date.now() - start) / 1000;
  const done: [number, number][] = [];
  const timedOut: [number, number][] = [];
  // Results: attach to each workflow (a few at a time; completed ones answer at once).
  let next = 0;
  const attach = async () => {
    while (next < n) {
      const i = next++;
      const r = await fetch(`${ingress}/restate/workflow/ReviewPeer/rp-${run}-${i}/attach`);
      const t = Number(await r.text());
      if (r.ok && t > 0) done.push([i, t]);
      else if (r.ok && t < 0) timedOut.push([i, -t]);
      else if (!r.ok) failures.push(`attach ${i}: ${r.status}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, attach));
  const loadAfter = loadavg();
  const ideal = (i: number) => start + i / rate * 1000 + Math.max(WAIT_MS, delivery(i));
  const lateness = done.map(([i, t]) => t - ideal(i)).sort((a, b) => a - b);
  const startLag = started.map((t, i) => t - (start + i / rate * 1000)).sort((a, b) => a - b);
  const last = (Math.max(...done.concat(timedOut).map(([, t]) => t)) - start) / 1000;
  console.log(JSON.stringify({
    engine: "restate",
    n,
    rate,
    offered_events_per_s: 2 * rate,
    completed: done.length,
    timed_out: timedOut.length,
    finished: done.length + timedOut.length,
    flows_per_s: (done.length + timedOut.length) / last,
    lateness_p50_ms: pct(lateness, 0.5),
    lateness_p99_ms: pct(lateness, 0.99),
    lateness_max_ms: pct(lateness, 1.0),
    offered_secs: offeredSecs,
    last_completion_s: last,
    start_lag_p50_ms: pct(startLag, 0.5),
    start_lag_p99_ms: pct(startLag, 0.99),
    failures: failures.length,
    first_failures: failures.slice(0, 3),
    durability: "restate-server defaults (fsync on)",
    load_before: loadBefore,
    load_after: loadAfter,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
