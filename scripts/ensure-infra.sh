#!/usr/bin/env bash
# Brings up everything sessionbox needs on this machine, idempotently:
#   (a) a Docker engine   (installs docker.io and starts dockerd in the background if needed)
#   (b) Redis             (installs redis-server and starts it on 127.0.0.1 if needed)
#   (c) gVisor            (registers an installed runsc as runtime "runsc" in daemon.json, with
#                          "experimental": true so that hibernation checkpoints gVisor containers;
#                          installs runsc when missing if root with apt-get, so the hostile-code
#                          suite runs under both runtimes; SESSIONBOX_INSTALL_RUNSC=0 opts out)
#   (d) the session image (scripts/build-runner-image.sh)
#   (e) chromium          (installs Debian's chromium and a Japanese font for the console's browser
#                          tests, tests/console.test.ts; without root it only warns)
# Installing needs root; without root the script says what is missing and exits 1.
# When everything is already up it finishes in well under a second.
#
# Environment:
#   DOCKER_HOST                       a non-local engine is only checked, never started
#   SESSIONBOX_REDIS_URL / REDIS_URL  redis://[user:pass@]host[:port][/db]; a non-local host is
#   REDIS_HOST / REDIS_PORT           only checked (defaults 127.0.0.1:6379)
#   SESSIONBOX_INSTALL_RUNSC=0|1      0: never install runsc; 1: install it or fail (default: try,
#                                     as root with apt-get, and only warn if that fails)
#   SESSIONBOX_SKIP_IMAGE=1           skip step (d)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T0=${EPOCHREALTIME:-$SECONDS}
DOCKERD_LOG=/var/log/sessionbox-dockerd.log
APT_LOG=/var/log/sessionbox-apt.log
DAEMON_JSON=/etc/docker/daemon.json
RUNSC_ARGS='["--network=none","--platform=ptrace"]'

log() { echo "[sessionbox] $*"; }
die() { echo "[sessionbox] error: $*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
elapsed() { awk -v a="$1" -v b="${EPOCHREALTIME:-$SECONDS}" 'BEGIN { printf "%.1f s", b - a }'; }

# Two concurrent runs (e.g. tests and a developer) must not both install or start things.
LOCK="${TMPDIR:-/tmp}/sessionbox-ensure-infra.lock"
if command -v flock >/dev/null 2>&1 && { exec 9>>"$LOCK"; } 2>/dev/null; then
  flock -w 1200 9 || die "another scripts/ensure-infra.sh still holds $LOCK"
fi

# ---- apt ------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # packages...
  local start=${EPOCHREALTIME:-$SECONDS}
  is_root || die "missing: $* -- install with: sudo apt-get install -y $* (or re-run this script as root)"
  command -v apt-get >/dev/null 2>&1 || die "missing: $* and no apt-get here; install them by hand"
  [[ -w ${APT_LOG%/*} ]] || APT_LOG="${TMPDIR:-/tmp}/sessionbox-apt.log"
  # Package maintainer scripts must not start services (we start them ourselves, our way).
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard"
  fi
  local rc=0
  {
    if [[ $APT_UPDATED -eq 0 ]]; then
      log "apt-get update"
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q </dev/null >>"$APT_LOG" 2>&1 || rc=$?
      APT_UPDATED=1
    fi
    if [[ $rc -eq 0 ]]; then
      log "apt-get install $* (log: $APT_LOG)"
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "$@" </dev/null >>"$APT_LOG" 2>&1 || rc=$?
    fi
  }
  [[ -z $guard ]] || rm -f "$guard"
  if [[ $rc -ne 0 ]]; then
    tail -n 20 "$APT_LOG" >&2 || true
    die "apt-get failed for: $* (full log: $APT_LOG)"
  fi
  log "installed $* in $(elapsed "$start")"
}

# ---- (a) Docker engine ------------------------------------------------------------------------
LOCAL_DOCKER=1
case "${DOCKER_HOST:-}" in
  "" | unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
  *) LOCAL_DOCKER=0 ;;
esac

docker_up() { timeout 15 docker info >/dev/null 2>&1; }

dockerd_pid() { # pid of a running dockerd, if any
  local pid
  if [[ -r /var/run/docker.pid ]] && pid="$(cat /var/run/docker.pid 2>/dev/null)" && [[ -n $pid ]] \
    && kill -0 "$pid" 2>/dev/null; then
    echo "$pid"
    return 0
  fi
  pgrep -x dockerd 2>/dev/null | head -n 1
}

wait_docker() { # seconds
  local i pid
  for ((i = 0; i < $1 * 4; i++)); do
    docker_up && return 0
    pid="$(dockerd_pid)"
    if [[ -z $pid && $i -gt 8 ]]; then
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "dockerd exited during start-up (log: $DOCKERD_LOG)"
    fi
    sleep 0.25
  done
  tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
  die "Docker engine did not answer within $1 s (log: $DOCKERD_LOG)"
}

start_dockerd() {
  local start=${EPOCHREALTIME:-$SECONDS}
  if [[ -n $(dockerd_pid) ]]; then
    log "dockerd is running but not answering yet; waiting"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    [[ -d /var/log ]] && : >>"$DOCKERD_LOG"
    # 9>&-: the daemon must not inherit (and so hold forever) this script's lock.
    setsid nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
    disown || true
  fi
  wait_docker 60
  log "Docker engine up in $(elapsed "$start")"
}

# ---- (c) gVisor registration (used by (a)) ---------------------------------------------------
RUNSC="$(command -v runsc 2>/dev/null || true)"
DAEMON_JSON_CHANGED=0

json_merge_runsc() { # prints the merged daemon.json on stdout
  local cur="{}"
  [[ -s $DAEMON_JSON ]] && cur="$(cat "$DAEMON_JSON")"
  if command -v jq >/dev/null 2>&1; then
    jq -S --arg p "$RUNSC" --argjson a "$RUNSC_ARGS" '.runtimes.runsc = {path: $p, runtimeArgs: $a} | .experimental = true' <<<"$cur"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
d.setdefault("runtimes", {})["runsc"] = {"path": sys.argv[2], "runtimeArgs": json.loads(sys.argv[3])}
d["experimental"] = True
print(json.dumps(d, indent=2, sort_keys=True))' "$cur" "$RUNSC" "$RUNSC_ARGS"
  else
    return 127
  fi
}

json_canon() { # normalised JSON of stdin, for comparison
  if command -v jq >/dev/null 2>&1; then jq -S -c .; else python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))'; fi
}

ensure_runsc_config() {
  [[ -n $RUNSC ]] || return 0
  if ! command -v jq >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
    apt_install jq
  fi
  local merged
  merged="$(json_merge_runsc)" || die "$DAEMON_JSON is not valid JSON; fix it by hand (runsc not registered)"
  if [[ -s $DAEMON_JSON ]] && [[ "$(json_canon <"$DAEMON_JSON")" == "$(json_canon <<<"$merged")" ]]; then
    return 0
  fi
  is_root || die "runsc is installed but not registered in $DAEMON_JSON; re-run this script as root"
  mkdir -p "${DAEMON_JSON%/*}"
  [[ -s $DAEMON_JSON ]] && cp -p "$DAEMON_JSON" "$DAEMON_JSON.sessionbox.bak"
  printf '%s\n' "$merged" >"$DAEMON_JSON.tmp.$$" && mv -f "$DAEMON_JSON.tmp.$$" "$DAEMON_JSON"
  DAEMON_JSON_CHANGED=1
  log "registered runsc ($RUNSC) as Docker runtime \"runsc\" (and \"experimental\": true, for checkpoints) in $DAEMON_JSON"
}

engine_sees_config() { # runsc listed and experimental on
  docker info --format '{{json .Runtimes}} {{.ExperimentalBuild}}' 2>/dev/null | grep -q '"runsc".* true$'
}

apply_daemon_json_change() { # dockerd already running; make it see the new runtime and experimental
  [[ $DAEMON_JSON_CHANGED -eq 1 ]] || return 0
  local pid i
  pid="$(dockerd_pid)"
  [[ -n $pid ]] || return 0
  # Runtimes are reloadable: SIGHUP keeps running session containers alive. If the engine does not
  # take "experimental" on a reload, it is restarted below (once, on a machine being set up).
  kill -HUP "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    engine_sees_config && {
      log "dockerd reloaded its configuration"
      return 0
    }
    sleep 0.25
  done
  log "restarting dockerd to load $DAEMON_JSON"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) did not stop; restart it by hand"
  start_dockerd
}

# ---- run (a) + (c) ----------------------------------------------------------------------------
if [[ $LOCAL_DOCKER -eq 0 ]]; then
  docker_up || die "Docker engine at DOCKER_HOST=$DOCKER_HOST does not answer"
  [[ "${SESSIONBOX_INSTALL_RUNSC:-0}" != 1 ]] || log "DOCKER_HOST is remote; not touching runsc"
else
  command -v docker >/dev/null 2>&1 || {
    is_root || die "missing: docker client -- install with: sudo apt-get install -y docker.io"
  }
  if [[ -z $RUNSC && "${SESSIONBOX_INSTALL_RUNSC:-}" == 1 ]]; then
    apt_install runsc
    RUNSC="$(command -v runsc 2>/dev/null || true)"
    [[ -n $RUNSC ]] || die "runsc still not on PATH after installing it"
  elif [[ -z $RUNSC && -z ${SESSIONBOX_INSTALL_RUNSC:-} ]] && is_root && command -v apt-get >/dev/null 2>&1; then
    if (apt_install runsc); then APT_UPDATED=1; else log "warning: could not install runsc; gVisor tests will be skipped"; fi
    RUNSC="$(command -v runsc 2>/dev/null || true)"
  fi
  ensure_runsc_config
  if docker_up; then
    apply_daemon_json_change
  else
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
      is_root || die "Docker engine not running and dockerd not installed -- install with: sudo apt-get install -y docker.io, then start it (sudo dockerd &), or re-run this script as root"
      apt_install docker.io
    fi
    if ! is_root; then
      [[ -z $(dockerd_pid) ]] \
        && die "Docker engine not running -- start it as root (sudo systemctl start docker, or sudo nohup dockerd &), or re-run this script as root"
      err="$(timeout 15 docker info 2>&1 >/dev/null | tail -n 1 || true)"
      die "dockerd is running but this user cannot use it (${err:-no answer}) -- add the user to the docker group (sudo usermod -aG docker $(id -un)) or run as root"
    fi
    start_dockerd
  fi
  if [[ -n $RUNSC ]]; then
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' \
      || log "warning: runsc is installed but dockerd does not list it as a runtime"
  fi
fi
log "docker: $(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null || echo up)"

# ---- (b) Redis --------------------------------------------------------------------------------
REDIS_URL_EFF="${SESSIONBOX_REDIS_URL:-${REDIS_URL:-}}"
REDIS_TLS=0
if [[ -n $REDIS_URL_EFF ]]; then
  [[ $REDIS_URL_EFF =~ ^(rediss?)://(([^@/]*)@)?(\[[^]]+\]|[^:/?]+)?(:([0-9]+))?(/.*)?$ ]] \
    || die "cannot parse Redis URL '$REDIS_URL_EFF' (expected redis://[user:pass@]host[:port][/db])"
  [[ ${BASH_REMATCH[1]} == rediss ]] && REDIS_TLS=1
  RHOST="${BASH_REMATCH[4]:-127.0.0.1}"
  RPORT="${BASH_REMATCH[6]:-6379}"
else
  RHOST="${REDIS_HOST:-127.0.0.1}"
  RPORT="${REDIS_PORT:-6379}"
fi
RHOST="${RHOST#[}" && RHOST="${RHOST%]}"
case "$RHOST" in 127.0.0.1 | localhost | ::1) REDIS_LOCAL=1 ;; *) REDIS_LOCAL=0 ;; esac
[[ $REDIS_TLS -eq 1 ]] && REDIS_LOCAL=0

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    local out
    if [[ -n $REDIS_URL_EFF ]]; then
      local tls=()
      [[ $REDIS_TLS -eq 1 ]] && tls=(--tls)
      out="$(timeout 5 redis-cli "${tls[@]}" -u "$REDIS_URL_EFF" ping 2>&1 </dev/null || true)"
    else
      out="$(timeout 5 redis-cli -h "$RHOST" -p "$RPORT" ping 2>&1 </dev/null || true)"
    fi
    [[ $out == *PONG* || $out == *NOAUTH* || $out == *WRONGPASS* ]]
  else
    # No redis-cli: speak RESP over bash's /dev/tcp (a TLS endpoint only gets a TCP check).
    RHOST="$RHOST" RPORT="$RPORT" TLS="$REDIS_TLS" timeout 5 bash -c '
      exec 3<>"/dev/tcp/$RHOST/$RPORT" || exit 1
      [[ $TLS -eq 1 ]] && exit 0
      printf "PING\r\n" >&3
      IFS= read -r -t 3 line <&3 || exit 1
      [[ $line == "+PONG"* || $line == "-NOAUTH"* || $line == "-WRONGPASS"* ]]' 2>/dev/null
  fi
}

if redis_up; then
  :
elif [[ $REDIS_LOCAL -eq 0 ]]; then
  die "Redis at $RHOST:$RPORT does not answer (it is not local, so it is not started here)"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    is_root || die "Redis not running and redis-server not installed -- install with: sudo apt-get install -y redis-server, or re-run this script as root"
    apt_install redis-server
  fi
  start=${EPOCHREALTIME:-$SECONDS}
  logdir=/var/log
  [[ -w $logdir ]] || logdir="${TMPDIR:-/tmp}"
  piddir=/var/run
  [[ -w $piddir ]] || piddir="${TMPDIR:-/tmp}"
  # Records outlive a Redis restart (hibernated sessions last days, issue 17): AOF, fsync every second,
  # in a data dir this script owns (SESSIONBOX_REDIS_DIR; /var/lib/sessionbox/redis as root).
  datadir="${SESSIONBOX_REDIS_DIR:-/var/lib/sessionbox/redis}"
  mkdir -p "$datadir" 2>/dev/null && [[ -w $datadir ]] || datadir="${TMPDIR:-/tmp}/sessionbox-redis"
  mkdir -p "$datadir"
  chmod 700 "$datadir"
  log "starting redis-server on 127.0.0.1:$RPORT (AOF everysec in $datadir; log: $logdir/sessionbox-redis.log)"
  # noeviction: a full Redis answers errors (503s) and never drops a queued job or a live session;
  # maxmemory keeps session output from taking the host's memory.
  redis-server --daemonize yes --save "" --appendonly yes --appendfsync everysec --bind 127.0.0.1 -::1 --port "$RPORT" \
    --maxmemory "${SESSIONBOX_REDIS_MAXMEMORY:-2gb}" --maxmemory-policy noeviction \
    --logfile "$logdir/sessionbox-redis.log" --pidfile "$piddir/sessionbox-redis-$RPORT.pid" \
    --dir "$datadir" </dev/null >/dev/null 9>&- \
    || die "redis-server failed to start (log: $logdir/sessionbox-redis.log)"
  for ((i = 0; i < 40; i++)); do redis_up && break; sleep 0.25; done
  redis_up || { tail -n 20 "$logdir/sessionbox-redis.log" >&2 2>/dev/null || true; die "redis-server started but does not answer on 127.0.0.1:$RPORT"; }
  log "Redis up in $(elapsed "$start")"
fi
log "redis: $RHOST:$RPORT answers"

# ---- (e) chromium for the console's browser tests --------------------------------------------
ensure_chromium() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # The console shows Japanese text: without a CJK font the browser draws boxes.
  fc-list :lang=ja 2>/dev/null | grep -q . || missing+=(fonts-vlgothic)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if is_root && command -v apt-get >/dev/null 2>&1; then apt_install "${missing[@]}"
  else log "warning: missing ${missing[*]}: the console's browser tests cannot run (install: sudo apt-get install -y ${missing[*]})"; fi
}
ensure_chromium

# ---- (d) session image ------------------------------------------------------------------------
if [[ "${SESSIONBOX_SKIP_IMAGE:-0}" != 1 ]]; then
  TAG="$(bash "$ROOT/scripts/build-runner-image.sh")" || die "building the runner image failed"
  TAG="$(tail -n 1 <<<"$TAG")"
  log "runner image: $TAG"
fi

log "infrastructure ready ($(elapsed "$T0"))"
