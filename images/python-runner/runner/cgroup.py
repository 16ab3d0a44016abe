"""The container's cgroup counters, and per-process fallbacks when there are no cgroup files."""

import os

from env import read_text



def _read_int(path):
    text = read_text(path) if path else None
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def _read_key(path, key):
    text = read_text(path) if path else None
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


class Cgroup:
    """The container's own cgroup counters (v1 or v2); every reader returns None if missing."""

    def __init__(self, root):
        def first(*names):
            return next((os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))), None)

        self.memory = first("memory/memory.usage_in_bytes", "memory.current")
        self.oom = first("memory/memory.oom_control", "memory.events")
        self.cpuacct = first("cpu,cpuacct/cpuacct.usage", "cpuacct/cpuacct.usage",
                             "cpuacct,cpu/cpuacct.usage")
        self.cpu_stat = None if self.cpuacct else first("cpu.stat")
        self.pids = first("pids/pids.events", "pids.events")

    def memory_bytes(self):
        return _read_int(self.memory)

    def cpu_ns(self):
        if self.cpuacct:
            return _read_int(self.cpuacct)
        usec = _read_key(self.cpu_stat, "usage_usec")
        return None if usec is None else usec * 1000

    def oom_kills(self):
        return _read_key(self.oom, "oom_kill")

    def pids_refused(self):
        return _read_key(self.pids, "max")


def process_cpu_ns(pid):
    """CPU time of a process and its waited-for children (fallback without cgroup files)."""
    text = read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def process_rss(pid):
    text = read_text(f"/proc/{pid}/statm")
    return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") if text else None
