#!/usr/bin/env bash
# `npm run bench`: sessionbox against `docker exec` / `docker run` per call, on this machine's real
# engine (npm deps, Docker, Redis and the runner image are installed and started when missing).
# Options: --quick, --only <sections>, --mode in-process, --cpu-prof, --help (see bench/run.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
bash scripts/ensure-infra.sh
exec node --import tsx bench/run.ts "$@"
