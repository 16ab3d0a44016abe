#!/usr/bin/env bash
# The whole suite, on the real Docker engine and real Redis (installed and started when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
bash scripts/ensure-infra.sh
npx tsc --noEmit -p tsconfig.json
npx tsc --noEmit -p apps/console/tsconfig.json && node --import tsx apps/console/build.ts
exec npx jest "$@"
