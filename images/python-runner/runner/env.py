"""Where things are in the container, overridable for tests (see PROTOCOL.md, "Running outside
a container"), and the helpers every supervisor module uses."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKDIR = os.path.abspath(os.environ.get("SESSIONBOX_WORKDIR", "/work"))
KERNEL_PYTHON = os.environ.get("SESSIONBOX_KERNEL_PYTHON", sys.executable)
KERNEL_SCRIPT = os.environ.get("SESSIONBOX_KERNEL", os.path.join(HERE, "kernel.py"))
CGROUP_ROOT = os.environ.get("SESSIONBOX_CGROUP_ROOT", "/sys/fs/cgroup")
MPL_CACHE = os.environ.get("SESSIONBOX_MPLCACHE", "/opt/sessionbox/mplcache")


def log(*parts):
    print("sessionbox-supervisor:", *parts, file=sys.stderr, flush=True)


def now():
    return time.monotonic()


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return None
