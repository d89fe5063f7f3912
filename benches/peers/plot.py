#!/usr/bin/env python3
# Draws the peer benchmark's plot (docs/peers.svg) from benches/peers/results.json, with the
# standard library only (hand-written SVG): left, flows finished/s (solid) and flows that sent
# their review, not timed out, per second (dashed) against offered flows/s; right, completion
# lateness p50 (solid) and p99 (dashed) against offered flows/s; log-log, one colour per engine (aftercart, Restate, Temporal). Uses the "sweep" runs, else every run.
# Usage: python3 benches/peers/plot.py [results.json] [out.svg]
import json
import math
import sys
from xml.sax.saxutils import escape

COLOURS = {"aftercart": "#1b9e77", "restate": "#d95f02", "temporal": "#7570b3"}
W, H = 980, 430
PANEL_W, PANEL_H = 380, 300
LEFT1, LEFT2, TOP = 80, 570, 70


def decades(lo, hi):
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    return a, b


class Axes:
    def __init__(self, x0, y0, xr, yr):
        self.x0, self.y0 = x0, y0
        self.xa, self.xb = decades(*xr)
        self.ya, self.yb = decades(*yr)

    def x(self, v):
        f = (math.log10(v) - self.xa) / (self.xb - self.xa)
        return self.x0 + f * PANEL_W

    def y(self, v):
        f = (math.log10(v) - self.ya) / (self.yb - self.ya)
        return self.y0 + PANEL_H - f * PANEL_H

    def frame(self, title, xlabel, ylabel):
        s = [f'<rect x="{self.x0}" y="{self.y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#444"/>']
        for e in range(self.xa, self.xb + 1):
            x = self.x(10**e)
            s.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + PANEL_H}" stroke="#ddd"/>')
            s.append(f'<text x="{x:.1f}" y="{self.y0 + PANEL_H + 16}" text-anchor="middle">{fmt(10**e)}</text>')
        for e in range(self.ya, self.yb + 1):
            y = self.y(10**e)
            s.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + PANEL_W}" y2="{y:.1f}" stroke="#ddd"/>')
            s.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(10**e)}</text>')
        s.append(f'<text x="{self.x0 + PANEL_W / 2}" y="{self.y0 - 10}" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
        s.append(f'<text x="{self.x0 + PANEL_W / 2}" y="{self.y0 + PANEL_H + 34}" text-anchor="middle">{escape(xlabel)}</text>')
        cy = self.y0 + PANEL_H / 2
        s.append(f'<text x="{self.x0 - 52}" y="{cy}" text-anchor="middle" transform="rotate(-90 {self.x0 - 52} {cy})">{escape(ylabel)}</text>')
        return s

    def line(self, pts, colour, dash=False):
        pts = [(a, b) for a, b in pts if a > 0 and b > 0 and math.isfinite(b)]
        if not pts:
            return []
        d = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in pts)
        extra = ' stroke-dasharray="6 4"' if dash else ""
        s = [f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"{extra}/>']
        for a, b in pts:
            s.append(f'<circle cx="{self.x(a):.1f}" cy="{self.y(b):.1f}" r="3" fill="{colour}"/>')
        return s


def reviews_per_s(r):
    # Flows that ended with their review (not on the timeout) per second of the run.
    last = r.get("last_completion_s") or 0
    return r["completed"] / last if last and last == last and r["completed"] else 0


def fmt(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "benches/peers/results.json"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/peers.svg"
    doc = json.load(open(src))
    runs = doc["runs"]
    sweep = [r for r in runs if r.get("phase") == "sweep"] or runs
    engines = [e for e in COLOURS if any(r["engine"] == e for r in sweep)]
    series = {}
    for e in engines:
        rs = sorted((r for r in sweep if r["engine"] == e), key=lambda r: r["rate"])
        series[e] = rs
    rates = [r["rate"] for r in sweep]
    tput = [r["flows_per_s"] for r in sweep if r["flows_per_s"] > 0] + rates
    tput += [reviews_per_s(r) for r in sweep if reviews_per_s(r) > 0]
    lat = [v for r in sweep for v in (r["lateness_p50_ms"], r["lateness_p99_ms"]) if v and v > 0 and math.isfinite(v)]
    a1 = Axes(LEFT1, TOP, (min(rates), max(rates)), (min(tput), max(tput)))
    a2 = Axes(LEFT2, TOP, (min(rates), max(rates)), (max(min(lat), 0.1), max(lat)))
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
    v, m = doc.get("versions", {}), doc.get("machine", {})
    date = max((r.get("date", "") for r in sweep), default="")
    loads = [float(r["load_before"].split()[0]) for r in sweep if r.get("load_before")]
    load = f"load {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    s.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
             f'Review-request flow (1 s wait, 2 s delivery timeout): aftercart vs Restate vs Temporal</text>')
    s.append(f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">'
             + escape(f'{m.get("cores", "?")} cores, {load}, {date[:10]}; aftercart {v.get("aftercart", "?")}, '
                      f'{v.get("restate_server", "restate ?")}, {v.get("temporal_cli", "temporal ?").splitlines()[0] if v.get("temporal_cli") else "temporal ?"}; '
                      f'one point = one fresh run, same machine, same session')
             + '</text>')
    s += a1.frame("Flows finished/s (solid); with their review sent/s (dashed)", "offered load (flows/s)", "flows/s")
    lo, hi = 10**a1.xa, 10**a1.xb
    s.append(f'<line x1="{a1.x(lo):.1f}" y1="{a1.y(max(lo, 10**a1.ya)):.1f}" x2="{a1.x(min(hi, 10**a1.yb)):.1f}" '
             f'y2="{a1.y(min(hi, 10**a1.yb)):.1f}" stroke="#999" stroke-dasharray="2 3"/>')
    s += a2.frame("Completion lateness (p50 solid, p99 dashed)", "offered load (flows/s)", "lateness (ms)")
    for e, rs in series.items():
        c = COLOURS[e]
        s += a1.line([(r["rate"], r["flows_per_s"]) for r in rs], c)
        s += a1.line([(r["rate"], reviews_per_s(r)) for r in rs], c, dash=True)
        s += a2.line([(r["rate"], r["lateness_p50_ms"]) for r in rs], c)
        s += a2.line([(r["rate"], r["lateness_p99_ms"]) for r in rs], c, dash=True)
    for k, e in enumerate(engines):
        x = LEFT1 + 10 + k * 130
        y = H - 20
        s.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{COLOURS[e]}" stroke-width="3"/>')
        s.append(f'<text x="{x + 30}" y="{y}">{e}</text>')
    s.append(f'<text x="{LEFT2}" y="{H - 16}" fill="#555">dotted line: finished = offered (keeps up)</text>')
    s.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(s) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
