#!/usr/bin/env bash
# Builds the per-session image from images/python-runner.
#
#   sessionbox/python-runner:<hash12>   hash12 = first 12 hex of a sha256 over every file in
#                                        images/python-runner (relative paths + contents, sorted)
#   sessionbox/python-runner:latest     always moved to the image above
#
# Skips the build when the hash tag already exists. Base image, in order:
#   $SESSIONBOX_BASE_IMAGE if set; debian:bookworm-slim if a registry answers within 20 s;
#   otherwise sessionbox/debian-base:bookworm, built offline with debootstrap when absent.
#
# Progress goes to stderr; stdout gets exactly one line: the final tag.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CTX="$ROOT/images/python-runner"
REPO="${SESSIONBOX_RUNNER_REPO:-sessionbox/python-runner}"
OFFLINE_BASE="sessionbox/debian-base:bookworm"
SUITE="bookworm"
APT_LOG=/var/log/sessionbox-apt.log
DEBOOTSTRAP_LOG=/var/log/sessionbox-debootstrap.log

log() { echo "[sessionbox] $*" >&2; }
die() { echo "[sessionbox] error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker client not found (run scripts/ensure-infra.sh)"
[[ -f "$CTX/Dockerfile" ]] || die "missing $CTX/Dockerfile"

# Content hash of the build context. Caches written by running Python/pytest locally are left out
# (they are also in images/python-runner/.dockerignore) so they never cause a rebuild.
context_hash() {
  (
    cd "$CTX"
    find . -type f \
      -not -path '*/__pycache__/*' -not -path '*/.pytest_cache/*' -not -path '*/.mypy_cache/*' \
      -not -name '*.pyc' -not -name '*.pyo' -print0 \
      | LC_ALL=C sort -z \
      | xargs -0 -r sha256sum \
      | sha256sum | cut -c1-12
  )
}

HASH="$(context_hash)"
TAG="$REPO:$HASH"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" "$REPO:latest"
  log "runner image $TAG is up to date"
  echo "$TAG"
  exit 0
fi

# ---- offline base image ---------------------------------------------------------------------
# First "URIs:" entry of a deb822 stanza whose Suites include $SUITE (Debian 12 layout), else the
# first matching one-line "deb" entry of /etc/apt/sources.list.
debian_mirror() {
  local f=/etc/apt/sources.list.d/debian.sources uri=""
  if [[ -r $f ]]; then
    uri="$(awk -v suite="$SUITE" '
      function flush() { if (u != "" && s ~ ("(^| )" suite "( |$)") && t ~ /(^| )deb( |$)/ && !done) { print u; done = 1 } u = s = t = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:"   { u = $2 }
      tolower($1) == "suites:" { $1 = ""; s = $0 }
      tolower($1) == "types:"  { $1 = ""; t = $0 }
      END { flush() }' "$f")"
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri="$(awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# The security archive the host uses (same host layout as above), if any.
debian_security_mirror() {
  local f=/etc/apt/sources.list.d/debian.sources uri=""
  if [[ -r $f ]]; then
    uri="$(awk -v suite="$SUITE-security" '
      function flush() { if (u != "" && s ~ ("(^| )" suite "( |$)") && !done) { print u; done = 1 } u = s = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:"   { u = $2 }
      tolower($1) == "suites:" { $1 = ""; s = $0 }
      END { flush() }' "$f")"
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri="$(awk -v suite="$SUITE-security" '$1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  echo "$uri"
}

ROOTFS=""
cleanup_rootfs() {
  [[ -n $ROOTFS && -d $ROOTFS ]] || return 0
  # debootstrap mounts proc/sys inside the target; never let rm walk into them.
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$ROOTFS" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$ROOTFS"
  ROOTFS=""
}

build_offline_base() {
  [[ $(id -u) -eq 0 ]] || die "building $OFFLINE_BASE needs root (debootstrap); or set SESSIONBOX_BASE_IMAGE to an existing Debian 12 image"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap (log: $APT_LOG)"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q)
    "${apt[@]}" install -y --no-install-recommends debootstrap </dev/null >>"$APT_LOG" 2>&1 \
      || { "${apt[@]}" update </dev/null >>"$APT_LOG" 2>&1 \
           && "${apt[@]}" install -y --no-install-recommends debootstrap </dev/null >>"$APT_LOG" 2>&1; } \
      || { tail -n 20 "$APT_LOG" >&2; die "could not install debootstrap (log: $APT_LOG)"; }
  fi
  local mirror security start
  mirror="$(debian_mirror)"
  security="$(debian_security_mirror)"
  start=$SECONDS
  ROOTFS="$(mktemp -d /var/tmp/sessionbox-rootfs.XXXXXX)"
  trap cleanup_rootfs EXIT
  log "building $OFFLINE_BASE with debootstrap from $mirror (log: $DEBOOTSTRAP_LOG)"
  if ! debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$mirror" </dev/null >"$DEBOOTSTRAP_LOG" 2>&1; then
    tail -n 20 "$DEBOOTSTRAP_LOG" >&2 || true
    tail -n 20 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap $SUITE from $mirror failed (log: $DEBOOTSTRAP_LOG)"
  fi

  # apt inside `docker build` must use the same mirror the host uses.
  {
    echo "deb $mirror $SUITE main"
    echo "deb $mirror $SUITE-updates main"
    [[ -n $security ]] && echo "deb $security $SUITE-security main"
  } >"$ROOTFS/etc/apt/sources.list"
  rm -f "$ROOTFS"/etc/apt/sources.list.d/*.list "$ROOTFS"/etc/apt/sources.list.d/*.sources
  # Same space savers as the official slim image; no host leftovers.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends"
  printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d" && chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/usr/share/info/*
  : >"$ROOTFS/etc/resolv.conf"
  : >"$ROOTFS/etc/hostname"

  tar --numeric-owner -C "$ROOTFS" -c . \
    | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' - "$OFFLINE_BASE" >/dev/null \
    || die "docker import of $OFFLINE_BASE failed"
  cleanup_rootfs
  trap - EXIT
  log "built $OFFLINE_BASE in $((SECONDS - start)) s"
}

pick_base() {
  if [[ -n ${SESSIONBOX_BASE_IMAGE:-} ]]; then
    if ! docker image inspect "$SESSIONBOX_BASE_IMAGE" >/dev/null 2>&1; then
      log "pulling $SESSIONBOX_BASE_IMAGE"
      docker pull "$SESSIONBOX_BASE_IMAGE" </dev/null >&2 || die "SESSIONBOX_BASE_IMAGE=$SESSIONBOX_BASE_IMAGE is neither local nor pullable"
    fi
    BASE="$SESSIONBOX_BASE_IMAGE"
    return
  fi
  log "trying registry for debian:bookworm-slim (20 s limit)"
  if timeout 20 docker pull -q debian:bookworm-slim </dev/null >/dev/null 2>&1; then
    BASE="debian:bookworm-slim"
    return
  fi
  log "no registry reachable; using offline base $OFFLINE_BASE"
  docker image inspect "$OFFLINE_BASE" >/dev/null 2>&1 || build_offline_base
  BASE="$OFFLINE_BASE"
}

BASE=""
pick_base

log "building $TAG from $BASE"
start=$SECONDS
docker build --build-arg "BASE_IMAGE=$BASE" -t "$TAG" -t "$REPO:latest" "$CTX" </dev/null >&2 \
  || die "docker build of $TAG failed"
log "built $TAG in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"

# Drop older content-hash tags (built more than 30 min ago) so edits to runner/ do not pile up
# images. `docker rmi` without -f refuses images that any container (running or stopped) still
# uses; tags that are not content hashes (latest, dev, ...) are never touched.
now=$(date +%s)
docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" 2>/dev/null \
  | grep -E ":[0-9a-f]{12}\$" | grep -vxF "$TAG" \
  | while read -r old; do
      created=$(date -d "$(docker image inspect -f '{{.Created}}' "$old" 2>/dev/null)" +%s 2>/dev/null) || continue
      ((now - created > 1800)) || continue
      docker rmi "$old" >/dev/null 2>&1 && log "removed old image $old"
    done || true
echo "$TAG"
