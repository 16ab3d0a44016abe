#!/usr/bin/env bash
# Makes compose.yaml buildable on a machine with no container registry, where npm cannot run inside
# containers either. It builds, from what this machine already has:
#
#   the session image      scripts/build-runner-image.sh (which also makes the offline Debian base,
#                          sessionbox/debian-base:bookworm, with debootstrap when no registry answers)
#   sessionbox/node:<v>    images/node: the Debian base + this machine's node binary (>= 20.19),
#                          standing in for node:20-bookworm-slim
#   sessionbox/node-deps:<lock hash>
#                          images/node/deps.Dockerfile: this machine's node_modules (`npm ci`,
#                          scripts/ensure-deps.sh) pruned to production, standing in for `npm ci` in
#                          the build
#
# and prints, on stdout, the settings that point compose at them:
#
#   bash scripts/build-offline-images.sh > .env.offline
#   docker compose --env-file .env.offline up -d --build        # or: docker-compose --env-file …
#
# Each image is skipped when its tag already exists. SESSIONBOX_BASE_IMAGE picks another Debian 12
# base. Progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OFFLINE_BASE="sessionbox/debian-base:bookworm"

log() { echo "[sessionbox] $*" >&2; }
die() { echo "[sessionbox] error: $*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

command -v docker >/dev/null 2>&1 || die "docker client not found (run scripts/ensure-infra.sh)"

# ---- session image and base -------------------------------------------------------------------
RUNNER_TAG="$(bash "$ROOT/scripts/build-runner-image.sh")" || die "building the session image failed"
RUNNER_TAG="$(tail -n 1 <<<"$RUNNER_TAG")"
if [[ -n ${SESSIONBOX_BASE_IMAGE:-} ]]; then
  BASE="$SESSIONBOX_BASE_IMAGE"
elif have_image "$OFFLINE_BASE"; then
  BASE="$OFFLINE_BASE"
else
  BASE="debian:bookworm-slim" # the runner build reached a registry, so this one is local now
fi
have_image "$BASE" || die "base image $BASE is missing"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sessionbox-offline.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# ---- node runtime -----------------------------------------------------------------------------
NODE_BIN="$(readlink -f "$(command -v node)")" || die "node not found on this machine"
NODE_VERSION="$("$NODE_BIN" -p 'process.versions.node')"
IFS=. read -r major minor _ <<<"$NODE_VERSION"
((major > 20 || (major == 20 && minor >= 19))) || die "node $NODE_VERSION is too old: the code needs >= 20.19 (package.json engines)"
NODE_IMAGE="sessionbox/node:$NODE_VERSION"
if have_image "$NODE_IMAGE"; then
  log "$NODE_IMAGE is there"
else
  log "building $NODE_IMAGE from $BASE + $NODE_BIN"
  mkdir "$TMP/node"
  cp "$ROOT/images/node/Dockerfile" "$TMP/node/Dockerfile"
  install -m 0755 "$NODE_BIN" "$TMP/node/node"
  docker build --build-arg "BASE_IMAGE=$BASE" -t "$NODE_IMAGE" "$TMP/node" </dev/null >&2 || die "docker build of $NODE_IMAGE failed"
fi

# ---- production node_modules ------------------------------------------------------------------
LOCK_HASH="$(sha256sum "$ROOT/package-lock.json" | cut -c1-12)"
DEPS_IMAGE="sessionbox/node-deps:$LOCK_HASH"
if have_image "$DEPS_IMAGE"; then
  log "$DEPS_IMAGE is there"
else
  bash "$ROOT/scripts/ensure-deps.sh" >&2
  log "building $DEPS_IMAGE from this machine's node_modules (pruned to production)"
  mkdir "$TMP/deps"
  cp "$ROOT/package.json" "$ROOT/package-lock.json" "$TMP/deps/"
  cp -a "$ROOT/node_modules" "$TMP/deps/node_modules"
  (cd "$TMP/deps" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >&2) || die "npm prune failed"
  cp "$ROOT/images/node/deps.Dockerfile" "$TMP/deps/Dockerfile"
  docker build --build-arg "NODE_IMAGE=$NODE_IMAGE" -t "$DEPS_IMAGE" "$TMP/deps" </dev/null >&2 || die "docker build of $DEPS_IMAGE failed"
fi

log "offline images ready; build the stack with these settings (stdout)"
cat <<EOF
SESSIONBOX_BASE_IMAGE=$BASE
SESSIONBOX_NODE_IMAGE=$NODE_IMAGE
SESSIONBOX_DEPS_IMAGE=$DEPS_IMAGE
SESSIONBOX_IMAGE=${RUNNER_TAG%:*}:latest
EOF
