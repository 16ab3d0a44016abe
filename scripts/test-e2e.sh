#!/usr/bin/env bash
# The end-to-end tests (tests/e2e/*.e2e.ts): compose.yaml built offline and brought up with
# docker compose / docker-compose, and two Docker engines behind one API (a second dockerd, see
# scripts/second-engine.sh). Slower than `npm test` and root only; .ci/run runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
bash scripts/ensure-infra.sh
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { echo "[sessionbox] error: install docker-compose (sudo apt-get install -y docker-compose) or the compose plugin" >&2; exit 1; }
  echo "[sessionbox] apt-get install docker-compose (log: /var/log/sessionbox-apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker-compose \
    </dev/null >>/var/log/sessionbox-apt.log 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -q </dev/null >>/var/log/sessionbox-apt.log 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker-compose \
        </dev/null >>/var/log/sessionbox-apt.log 2>&1; } \
    || { tail -n 20 /var/log/sessionbox-apt.log >&2; exit 1; }
fi
exec npx jest --testMatch '**/tests/e2e/**/*.e2e.ts' "$@"
