#!/usr/bin/env bash
# Runs the peer benchmark (benches/peers/README.md): the same review-request flow in aftercart,
# Restate and Temporal on this machine, one engine at a time, interleaved, at the same offered
# load: first N in $NS at $RATE flows/s (aftercart also measures raw sled and raw
# append+fdatasync in the same process), then a sweep of offered loads for the plot. Each peer
# point gets a fresh server and an empty state directory. Writes benches/peers/results.json
# (versions, machine, every run) and, unless PLOT=0, docs/peers.svg via plot.py.
#
# One command, from the repository root:   benches/peers/run.sh
# Knobs (environment; an empty NS or SWEEP skips that phase): PEERS_DIR (installs, default /work/scratch/peers), ENGINES, NS, RATE,
# SWEEP (flows/s), SWEEP_SECS, SWEEP_MAX, TEMPORAL_MAX (flows per Temporal point, it is ~100x
# slower), AFTERCART_TIMEOUT (s to wait for the last flow), TEMPORAL_N_MAX (largest N Temporal runs, default 1000), TEMPORAL_WORKERS (worker
# processes), SKIP_BUILD=1, OUT, PLOT=0.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/benches/peers
PEERS_DIR=${PEERS_DIR:-/work/scratch/peers}
ENGINES=${ENGINES-"aftercart restate temporal"}
NS=${NS-"1000 10000"}
RATE=${RATE:-1000}
SWEEP=${SWEEP-"10 100 500 1000 2000 5000 10000"}
SWEEP_SECS=${SWEEP_SECS:-4}
# 20,000: with 4,000 the top points measured the harness (4,000 flows offered in 0.8 s plus
# the 1.5 s flow bound finished flows/s at ~1,740 whatever the engine could do).
SWEEP_MAX=${SWEEP_MAX:-20000}
TEMPORAL_MAX=${TEMPORAL_MAX:-200}
TEMPORAL_WORKERS=${TEMPORAL_WORKERS:-2}
TEMPORAL_N_MAX=${TEMPORAL_N_MAX:-1000}
OUT=${OUT:-$HERE/results.json}
RUN_TIMEOUT=${RUN_TIMEOUT:-1200}
AFTERCART_TIMEOUT=${AFTERCART_TIMEOUT:-150}

TEMPORAL=$PEERS_DIR/temporal
RESTATE=$PEERS_DIR/restate
PY=$TEMPORAL/venv/bin/python
LINES=$(mktemp /tmp/peers-results.XXXXXX)  # every run's full JSON line, kept if the script dies
PIDS=()

log() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

# Background processes run in their own session; stop() ends each group we started, by id.
spawn() { # LOGFILE CMD...
  local logf=$1; shift
  setsid "$@" >"$logf" 2>&1 &
  PIDS+=($!)
}
stop_all() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -- "-$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$p" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT

wait_for() { # DESCRIPTION CMD...
  local what=$1; shift
  for _ in $(seq 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "timed out waiting for $what"; return 1
}

start_temporal() {
  rm -rf "$TEMPORAL/run" && mkdir -p "$TEMPORAL/run"
  spawn "$TEMPORAL/run/server.log" "$TEMPORAL/venv/bin/temporal" server start-dev --headless \
    --ip 127.0.0.1 --db-filename "$TEMPORAL/run/temporal.db" --sqlite-pragma synchronous=FULL \
    --log-level error --dynamic-config-value frontend.enableServerVersionCheck=false
  wait_for "temporal server" "$TEMPORAL/venv/bin/temporal" operator cluster health --address 127.0.0.1:7233
  for k in $(seq "$TEMPORAL_WORKERS"); do
    spawn "$TEMPORAL/run/worker$k.log" bash -c "cd '$HERE/temporal' && exec '$PY' worker.py"
  done
  wait_for "temporal workers" bash -c "[ \$(cat '$TEMPORAL'/run/worker*.log | grep -c 'worker ready') -ge $TEMPORAL_WORKERS ]"
}

start_restate() {
  rm -rf "$RESTATE/run" && mkdir -p "$RESTATE/run"
  spawn "$RESTATE/run/server.log" env RESTATE_DISABLE_TELEMETRY=true RESTATE_BIND_IP=127.0.0.1 \
    "$RESTATE/node_modules/.bin/restate-server" --listen-mode tcp --base-dir "$RESTATE/run/data"
  wait_for "restate server" curl -sf 127.0.0.1:9070/health
  spawn "$RESTATE/run/service.log" bash -c "cd '$HERE/restate' && NODE_PATH='$RESTATE/node_modules' NODE_OPTIONS='--import $HERE/restate/polyfill.mjs' exec '$RESTATE/node_modules/.bin/tsx' flow.ts"
  wait_for "restate service" bash -c "grep -q 'listening on' '$RESTATE/run/service.log'"
  wait_for "restate deployment" curl -sf -X POST 127.0.0.1:9070/deployments \
    -H 'content-type: application/json' -d '{"uri":"http://127.0.0.1:9080"}'
}

# run ENGINE N RATE PHASE [--raw]: one point; appends its JSON line (with the phase) to $LINES.
run() {
  local engine=$1 n=$2 rate=$3 phase=$4 extra=${5:-} line="" status=0
  log "$engine N=$n offered $rate flows/s ($phase)"
  case $engine in
    aftercart)
      line=$(timeout "$RUN_TIMEOUT" "$ROOT/target/release/examples/peer_load" --n "$n" --rate "$rate" --timeout "$AFTERCART_TIMEOUT" $extra) || status=$? ;;
    restate)
      start_restate || { log "restate did not start"; stop_all; return 0; }
      line=$(cd "$HERE/restate" && NODE_PATH="$RESTATE/node_modules" timeout "$RUN_TIMEOUT" \
        "$RESTATE/node_modules/.bin/tsx" driver.ts --n "$n" --rate "$rate") || status=$?
      stop_all ;;
    temporal)
      start_temporal || { log "temporal did not start"; stop_all; return 0; }
      line=$(cd "$HERE/temporal" && timeout "$RUN_TIMEOUT" "$PY" driver.py --n "$n" --rate "$rate" \
        --label "sqlite file, synchronous=FULL, $TEMPORAL_WORKERS worker processes") || status=$?
      stop_all ;;
  esac
  # A driver can exit non-zero after printing its result (a client torn down at exit, or the
  # timeout landing during shutdown): the result stands, and the log says which case it was.
  if [ "$status" -ne 0 ]; then
    if [ -n "$line" ]; then
      log "$engine exited with status $status after printing its result (result kept)"
    else
      log "$engine run failed (status $status)"
    fi
  fi
  [ -n "$line" ] || { log "$engine produced no result"; return 0; }
  echo "$line" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.read()); d['phase']='$phase'; print(json.dumps(d))" >>"$LINES"
  echo "$line" | cut -c1-400 >&2
}

cd "$ROOT"
log "results so far go to $LINES"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building (cargo build --release --example peer_load --bin aftercart)"
  cargo build --release --example peer_load --bin aftercart >&2
fi
"$ROOT/target/release/aftercart" check "$HERE/aftercart" >&2

# Versions and machine, once.
"$PY" - "$LINES" <<EOF
import json, os, platform, subprocess, sys
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        return f"? ({e})"
def npm_version(pkg):
    try:
        return json.load(open(os.path.join("$RESTATE/node_modules", pkg, "package.json")))["version"]
    except Exception:
        return "?"
v = {
    "kind": "versions",
    "aftercart": out("git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"),
    "rustc": out("rustc", "--version"),
    "temporal_cli": out("$TEMPORAL/venv/bin/temporal", "--version"),
    "temporalio": out("$PY", "-c", "import temporalio; print(temporalio.__version__)"),
    "python": platform.python_version(),
    "restate_server": out("$RESTATE/node_modules/.bin/restate-server", "--version"),
    "restate_sdk": npm_version("@restatedev/restate-sdk"),
    "tsx": npm_version("tsx"),
    "node": out("node", "--version"),
}
m = {
    "kind": "machine",
    "cores": os.cpu_count(),
    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "kernel": platform.release(),
    "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
    "settings": {"engines": "$ENGINES", "ns": "$NS", "rate": $RATE, "sweep": "$SWEEP",
                 "sweep_secs": $SWEEP_SECS, "sweep_max": $SWEEP_MAX, "temporal_max": $TEMPORAL_MAX,
                 "temporal_workers": $TEMPORAL_WORKERS},
}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(v) + "\n" + json.dumps(m) + "\n")
EOF

for n in $NS; do
  for e in $ENGINES; do
    if [ "$e" = temporal ] && [ "$n" -gt "$TEMPORAL_N_MAX" ]; then continue; fi
    extra=""; [ "$e" = aftercart ] && extra=--raw
    run "$e" "$n" "$RATE" n $extra
  done
done
for rate in $SWEEP; do
  n=$(( rate * SWEEP_SECS )); [ "$n" -gt "$SWEEP_MAX" ] && n=$SWEEP_MAX
  for e in $ENGINES; do
    m=$n; [ "$e" = temporal ] && [ "$m" -gt "$TEMPORAL_MAX" ] && m=$TEMPORAL_MAX
    run "$e" "$m" "$rate" sweep
  done
done

"$PY" - "$LINES" "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
doc = {
    "versions": next((r for r in rows if r.get("kind") == "versions"), {}),
    "machine": next((r for r in rows if r.get("kind") == "machine"), {}),
    "runs": [r for r in rows if "engine" in r],
}
json.dump(doc, open(sys.argv[2], "w"), indent=1)
print(f"wrote {sys.argv[2]}: {len(doc['runs'])} runs", file=sys.stderr)
EOF
rm -f "$LINES"
if [ "${PLOT:-1}" != 0 ]; then
  "$PY" "$HERE/plot.py" "$OUT" "$ROOT/docs/peers.svg"
fi
