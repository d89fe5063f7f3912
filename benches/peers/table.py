#!/usr/bin/env python3
# Prints the peer benchmark's results (benches/peers/results.json) as the markdown tables of
# docs/performance.md ("Against the peers"): the N runs with the ratios of aftercart to each
# peer, aftercart's in-process figures (events/s, raw sled, raw fdatasync, arrival -> outbox),
# and the sweep. Usage: python3 benches/peers/table.py [results.json]
import json
import sys


def f(v, digits=0):
    if v is None or v != v:
        return "—"
    if abs(v) >= 10000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ms(v):
    if v is None or v != v:
        return "—"
    return f"{v / 1000:,.1f} s" if abs(v) >= 10000 else f"{v:,.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def main():
    doc = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "benches/peers/results.json"))
    runs = doc["runs"]
    nruns = [r for r in runs if r.get("phase") == "n"]
    print("| Engine | N | Offered | Reviews sent / timed out | Flows/s | Lateness p50 / p99 (max) | aftercart ÷ engine | Load before → after | Date (UTC) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in nruns}):
        ac = next((r for r in nruns if r["n"] == n and r["engine"] == "aftercart"), None)
        for r in [r for r in nruns if r["n"] == n]:
            ratio = "1" if r["engine"] == "aftercart" else (
                f"**{ac['flows_per_s'] / r['flows_per_s']:.1f}x**" if ac and r["flows_per_s"] else "—")
            print(f"| {r['engine']} | {r['n']:,} | {f(r['rate'])} flows/s | {r['completed']:,} / {r.get('timed_out', 0):,} | {f(r['flows_per_s'], 1)} "
                  f"| {ms(r['lateness_p50_ms'])} / {ms(r['lateness_p99_ms'])} ({ms(r['lateness_max_ms'])}) | {ratio} "
                  f"| {r['load_before']} → {r['load_after']} | {r['date'][:16].replace('T', ' ')} |")
    print()
    print("| N | aftercart events/s end to end | raw sled batch+flush /1000 | raw append+fdatasync /1000 | runtime ÷ raw sled | runtime ÷ raw file | arrival → outbox p50 / p99 | → provider p50 / p99 | timers fired | Load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in [r for r in runs if r["engine"] == "aftercart"]:
        if r.get("phase") != "n" and "raw_sled_records_per_s" not in r:
            continue
        print(f"| {r['n']:,} at {f(r['rate'])} flows/s | {f(r['events_per_s'])} | {f(r.get('raw_sled_records_per_s'))} records/s "
              f"| {f(r.get('raw_file_records_per_s'))} records/s | {100 * r.get('ratio_runtime_to_raw_sled', float('nan')):.2f}% "
              f"| {100 * r.get('ratio_runtime_to_raw_file', float('nan')):.3f}% | {ms(r['to_outbox_p50_ms'])} / {ms(r['to_outbox_p99_ms'])} "
              f"| {ms(r['to_provider_p50_ms'])} / {ms(r['to_provider_p99_ms'])} | {r['timers_fired']:,} | {r['load_before']} → {r.get('load_after_raw', r['load_after'])} |")
    print()
    sweep = [r for r in runs if r.get("phase") == "sweep"]
    print("| Offered flows/s (events/s) | Engine | N | Reviews / timed out | Flows/s | Lateness p50 / p99 | aftercart arrival → outbox p50 / p99 | Load before |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(sweep, key=lambda r: (r["rate"], r["engine"])):
        extra = f"{ms(r['to_outbox_p50_ms'])} / {ms(r['to_outbox_p99_ms'])}" if r["engine"] == "aftercart" else ""
        print(f"| {f(r['rate'])} ({f(2 * r['rate'])}) | {r['engine']} | {r['n']:,} | {r['completed']:,} / {r.get('timed_out', 0):,} | {f(r['flows_per_s'], 1)} "
              f"| {ms(r['lateness_p50_ms'])} / {ms(r['lateness_p99_ms'])} | {extra} | {r['load_before']} |")


if __name__ == "__main__":
    main()
