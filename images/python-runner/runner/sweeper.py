"""Kills what user code leaves behind at the end of each run."""

import collections
import os
import signal
import time

from env import now, read_text

TERM_WAIT_SECONDS = 0.5


def read_procs():
    """pid -> (ppid, pgrp, session, state) for every visible process."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = read_text(f"/proc/{name}/stat")
        if not text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        procs[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    return procs


class Sweeper:
    """Kills every process that is neither init, the supervisor, the live kernel nor one of the
    supervisor's file-operation workers.

    Mode "all" (in a container's PID namespace) considers every pid except those whose parent
    is outside the namespace (ppid 0): those were started by the engine (`docker exec`, e.g. a
    file operation), and no process of user code can get there. Mode "descendants"
    (outside a container) only considers descendants of the supervisor, which is a child
    subreaper so orphans stay in its tree, plus members of the kernel's session.
    """

    def __init__(self, mode, reap, spared=frozenset()):
        self.mode = mode
        self.reap = reap
        self.me = os.getpid()
        self.spared = spared  # the supervisor's own children that serve file operations

    def candidates(self, keep, session):
        procs = read_procs()
        alive = {pid for pid, (_, _, _, state) in procs.items() if state not in "ZX"}
        if self.mode == "all":
            chosen = {pid for pid in alive if procs[pid][0] != 0}
        else:
            children = collections.defaultdict(list)
            for pid, (ppid, _, _, _) in procs.items():
                children[ppid].append(pid)
            chosen, todo = set(), [self.me]
            while todo:
                for child in children[todo.pop()]:
                    if child not in chosen:
                        chosen.add(child)
                        todo.append(child)
            if session:
                chosen |= {pid for pid, (_, pgrp, sid, _) in procs.items() if session in (pgrp, sid)}
            chosen &= alive
        chosen -= {1, self.me, keep}
        chosen -= self.spared
        return chosen, procs

    def sweep(self, keep=None, session=None):
        """Stop, then terminate, then kill leftovers. Returns how many there were."""
        denied = set()  # processes we may not signal (another uid): never waited for

        def targets():
            pids, procs = self.candidates(keep, session)
            return pids - denied, procs

        def send(pids, sig):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except PermissionError:
                    denied.add(pid)
                except ProcessLookupError:
                    pass

        # SIGSTOP until a pass finds nothing new, so a fork bomb cannot outrun the sweep.
        stopped = set()
        deadline = now() + 2.0
        while now() < deadline:
            pids, procs = targets()
            new = pids - stopped
            send(new, signal.SIGSTOP)
            stopped |= new
            if not new and all(procs[p][3] in "TtZX" for p in pids):
                break
            time.sleep(0.001)
        stopped -= denied
        if not stopped:
            return 0
        send(stopped, signal.SIGTERM)
        send(stopped, signal.SIGCONT)
        deadline = now() + TERM_WAIT_SECONDS
        while now() < deadline:
            self.reap()
            if not targets()[0]:
                break
            time.sleep(0.01)
        deadline = now() + 2.0
        while now() < deadline:
            self.reap()
            pids = targets()[0]
            if not pids:
                break
            send(pids, signal.SIGKILL)
            time.sleep(0.005)
        self.reap()
        return len(stopped)


def default_sweep_mode():
    mode = os.environ.get("SESSIONBOX_SWEEP")
    if mode in ("all", "descendants"):
        return mode
    in_container = any(os.path.exists(p) for p in ("/.dockerenv", "/run/.containerenv"))
    if os.getpid() == 1 or (os.getppid() == 1 and in_container):
        return "all"
    return "descendants"
