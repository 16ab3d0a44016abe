#!/usr/bin/env bash
# Installs npm dependencies when they are missing or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[sessionbox] installing npm dependencies"
  # `npm install` honours the lock file as `npm ci` would; npm 11's `ci` refuses this lock because it
  # leaves out other platforms' optional binaries (@swc/core-*, @esbuild/*), which are never needed here.
  npm install --no-audit --no-fund --loglevel=error
fi
