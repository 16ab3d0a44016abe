#!/usr/bin/env bash
# A second Docker engine on this machine, so several Docker hosts can be tried (and tested) on one
# box. It has its own socket, data root, exec root, containerd and bridge (session containers use
# NetworkMode none anyway), and touches no iptables rule. Needs root.
#
# Not `--bridge=none`: a dockerd started that way deletes the docker0 interface, which belongs to
# the main engine. Its own bridge is an interface this script creates (SESSIONBOX_ENGINE2_BRIDGE,
# default sbdocker2, SESSIONBOX_ENGINE2_CIDR, default 10.213.213.1/24).
#
#   scripts/second-engine.sh start    start it (idempotent), then make sure it holds the runner image
#                                     ($SESSIONBOX_IMAGE, default sessionbox/python-runner:latest),
#                                     copied from the main engine with docker save | docker load when
#                                     missing or different (~1 min the first time; the data root keeps
#                                     it across runs). Prints the endpoint on stdout.
#   scripts/second-engine.sh stop     stop it: dockerd stops its containers, then exits
#   scripts/second-engine.sh crash    SIGKILL dockerd only: the API vanishes, its containers keep running
#                                     (what an engine crash looks like to sessionbox)
#   scripts/second-engine.sh status   exit 0 when it answers
#   scripts/second-engine.sh purge    stop, then delete its data root (the image cache)
#
# Environment: SESSIONBOX_ENGINE2_NAME (default sessionbox-test-docker2) names every path:
#   socket /run/<name>.sock, data root /var/lib/<name>, exec root /run/<name>, pid /run/<name>.pid,
#   log /var/log/<name>.log.
# Then: SESSIONBOX_DOCKER_HOSTS=one=unix:///var/run/docker.sock@2,two=unix:///run/<name>.sock@2
set -euo pipefail

NAME="${SESSIONBOX_ENGINE2_NAME:-sessionbox-test-docker2}"
[[ $NAME =~ ^[a-z0-9][a-z0-9_-]{0,40}$ ]] || { echo "bad SESSIONBOX_ENGINE2_NAME: $NAME" >&2; exit 2; }
SOCK="/run/$NAME.sock"
ENDPOINT="unix://$SOCK"
DATA="/var/lib/$NAME"
EXEC="/run/$NAME"
PIDFILE="/run/$NAME.pid"
CONF="/run/$NAME.daemon.json"
LOG="/var/log/$NAME.log"
IMAGE="${SESSIONBOX_IMAGE:-sessionbox/python-runner:latest}"
BRIDGE="${SESSIONBOX_ENGINE2_BRIDGE:-sbdocker2}"
CIDR="${SESSIONBOX_ENGINE2_CIDR:-10.213.213.1/24}"

log() { echo "[second-engine] $*" >&2; }
die() { echo "[second-engine] error: $*" >&2; exit 1; }
d2() { docker -H "$ENDPOINT" "$@"; }
answers() { timeout 10 docker -H "$ENDPOINT" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
pid_of() { [[ -r $PIDFILE ]] && local p && p="$(cat "$PIDFILE" 2>/dev/null)" && [[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"; }
# containerd started by that dockerd (it outlives a crashed dockerd).
containerd_pid() { local f="$EXEC/containerd/containerd.pid"; [[ -r $f ]] && local p && p="$(cat "$f")" && kill -0 "$p" 2>/dev/null && echo "$p"; }

wait_gone() { # pid seconds
  local i
  for ((i = 0; i < $2 * 4; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done
  return 1
}

# The runtimes of the main engine (e.g. runsc) and nothing else: a copy of its daemon.json could name
# hosts or a data root that collide with the flags below.
write_config() {
  local src=/etc/docker/daemon.json
  if [[ -s $src ]] && command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"runtimes": d["runtimes"]} if "runtimes" in d else {}))' "$src" >"$CONF" 2>/dev/null || echo '{}' >"$CONF"
  else
    echo '{}' >"$CONF"
  fi
}

ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  command -v ip >/dev/null 2>&1 || die "ip (iproute2) not found"
  log "creating bridge $BRIDGE ($CIDR)"
  ip link add "$BRIDGE" type bridge
  ip addr add "$CIDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

start() {
  [[ $(id -u) -eq 0 ]] || die "needs root (it starts a dockerd)"
  command -v dockerd >/dev/null 2>&1 || die "dockerd not installed (scripts/ensure-infra.sh installs docker.io)"
  if ! answers; then
    if [[ -z $(pid_of) ]]; then
      mkdir -p "$DATA" "$EXEC"
      write_config
      ensure_bridge
      log "starting dockerd on $ENDPOINT (log: $LOG)"
      # setsid + closed fds: the daemon must outlive this script and hold none of its pipes.
      setsid nohup dockerd \
        --host "$ENDPOINT" --data-root "$DATA" --exec-root "$EXEC" --pidfile "$PIDFILE" \
        --config-file "$CONF" --bridge "$BRIDGE" --iptables=false --ip-masq=false --ip-forward=false \
        --containerd-namespace "$NAME" --containerd-plugins-namespace "$NAME-plugins" \
        </dev/null >>"$LOG" 2>&1 &
      disown || true
    fi
    local i
    for ((i = 0; i < 240; i++)); do
      answers && break
      sleep 0.25
    done
    answers || { tail -n 20 "$LOG" >&2 || true; die "the second dockerd did not answer within 60 s (log: $LOG)"; }
    log "dockerd answers on $ENDPOINT"
  fi
  load_image
  echo "$ENDPOINT"
}

load_image() {
  local want have start=$SECONDS
  want="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)" || die "$IMAGE is not on the main engine (run scripts/ensure-infra.sh)"
  have="$(d2 image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
  [[ $want == "$have" ]] && return 0
  log "copying $IMAGE to the second engine (docker save | docker load)"
  docker save "$IMAGE" | d2 load -q >&2 || die "docker load into the second engine failed"
  d2 image prune -f >/dev/null 2>&1 || true # the copy it replaced (this engine holds nothing else)
  log "copied $IMAGE in $((SECONDS - start)) s"
}

stop() {
  local p c
  p="$(pid_of || true)"
  c="$(containerd_pid || true)"
  if [[ -n $p ]]; then
    log "stopping dockerd (pid $p)"
    kill -TERM "$p" 2>/dev/null || true
    wait_gone "$p" 40 || { log "dockerd did not stop in 40 s; killing it"; kill -KILL "$p" 2>/dev/null || true; wait_gone "$p" 10 || true; }
  fi
  # After a crash nobody stops its containerd and the containers it still runs: do it here.
  if [[ -n $c ]] && kill -0 "$c" 2>/dev/null; then
    log "stopping the containerd it left (pid $c)"
    kill -TERM "$c" 2>/dev/null || true
    wait_gone "$c" 20 || kill -KILL "$c" 2>/dev/null || true
  fi
  rm -f "$PIDFILE" "$SOCK"
}

crash() {
  local p
  p="$(pid_of || true)"
  [[ -n $p ]] || die "the second dockerd is not running"
  log "SIGKILL to dockerd (pid $p)"
  kill -KILL "$p"
  wait_gone "$p" 10 || die "dockerd (pid $p) did not die"
  rm -f "$SOCK"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  crash) crash ;;
  status) answers ;;
  purge)
    stop
    # Mounts left by a crash must never be walked into.
    awk -v d="$DATA" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$DATA" "$EXEC" "$CONF"
    ip link del "$BRIDGE" 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 start|stop|crash|status|purge" >&2
    exit 2
    ;;
esac
