#!/usr/bin/env bash
# Brings everything up: npm deps, Docker engine, Redis, the runner image, then api and worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
bash scripts/ensure-infra.sh
node --import tsx apps/console/build.ts
# Warm containers for default-limit sessions: 4 with numpy, pandas and matplotlib imported (~72 MiB each)
# and 16 lazy ones that import on first use (~20 MiB each), so a burst of 20 conversations starts at once.
# SESSIONBOX_POOL_SIZE=0 SESSIONBOX_POOL_LAZY_SIZE=0 turns the pool off.
export SESSIONBOX_POOL_SIZE="${SESSIONBOX_POOL_SIZE:-4}"
export SESSIONBOX_POOL_LAZY_SIZE="${SESSIONBOX_POOL_LAZY_SIZE:-16}"
port="${SESSIONBOX_PORT:-8000}"
host="${SESSIONBOX_HOST:-127.0.0.1}"
pids=()
stop() {
  trap - INT TERM
  echo "[sessionbox] stopping api and worker"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM
node --import tsx apps/worker/src/main.ts & pids+=($!)
node --import tsx apps/api/src/main.ts & pids+=($!)
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 || curl -fsS "http://${host}:${port}/healthz" >/dev/null 2>&1; then
    shown_host="$host"; [ "$host" = "0.0.0.0" ] && shown_host="127.0.0.1"
    echo "[sessionbox] ready: http://${shown_host}:${port}  (Ctrl-C stops api and worker)"
    echo "[sessionbox] console: http://${shown_host}:${port}/console"
    break
  fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "[sessionbox] a process exited during start-up" >&2; stop; }; done
  sleep 0.2
done
wait -n "${pids[@]}" || true
stop
