"""Saves and loads the user's namespace for hibernation (issue 17), with dill.

Runs inside the kernel (kernel.py "dump" / "load"). Modules are kept by name and imported again;
everything else is pickled together (shared references stay shared), except what cannot be
pickled (sockets, generators, running threads, ...), which is listed by name instead.
"""

import base64
import importlib
import io
import os
import types

# Imported with the kernel, before it drops its own directory from sys.path.
from env import WORKDIR
from safefs import WorkDir

# The kernel's own names in __main__, never user state.
_KERNEL_NAMES = {"__builtins__", "__name__", "__doc__", "__loader__", "__spec__", "__package__", "display"}


class _TooLarge(Exception):
    pass


class _Counter:
    """A sink that counts what is written and refuses to pass `limit` bytes; `sink` (if any) gets the bytes."""

    def __init__(self, limit, sink=None):
        self.limit = limit
        self.size = 0
        self.f = sink

    def write(self, data):
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge()
        return self.f.write(data) if self.f is not None else len(data)


def _capped_file(path, limit):
    """A write-only file that refuses to grow past `limit` bytes (`.f` is the file)."""
    return _Counter(limit, open(path, "wb"))


def _why_not(obj):
    import threading

    if isinstance(obj, threading.Thread) and obj.is_alive():
        return "a running thread"
    if isinstance(obj, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return "a generator"
    if isinstance(obj, io.IOBase):
        # dill would reopen it on load, in its mode: "w" would truncate the very file it names.
        return "a file handle (the file itself is kept in /work; open it again)"
    return None


def dump(ns, path, max_bytes):
    """Writes ns to path; returns {"saved", "modules", "skipped": [{"name", "why"}], "bytes", "overCap"}."""
    import dill

    modules, values, sizes, skipped = {}, {}, {}, []
    for name, obj in list(ns.items()):
        if name in _KERNEL_NAMES:
            continue
        if isinstance(obj, types.ModuleType):
            modules[name] = obj.__name__
            continue
        why = _why_not(obj)
        if why is None:
            counter = _Counter(max_bytes)
            try:
                dill.dump(obj, counter)
                sizes[name] = counter.size
            except _TooLarge:
                why = f"over the saved-state cap of {max_bytes} bytes on its own"
            except Exception as exc:
                why = f"cannot be saved ({type(exc).__name__}: {exc})"[:300]
        if why:
            skipped.append({"name": name, "why": why})
        else:
            values[name] = obj
    over_cap = any("saved-state cap" in s["why"] for s in skipped)
    figures = []
    try:
        import matplotlib.pyplot as plt

        figures = [plt.figure(n) for n in plt.get_fignums()]
    except Exception:
        pass
    # Together over the cap: the largest names go first until the rest fits (shared objects make the
    # sum an overestimate, so what is kept always fits; the capped write below is the real check).
    total = sum(sizes.values())
    for name in sorted(sizes, key=sizes.get, reverse=True):
        if total <= max_bytes:
            break
        total -= sizes[name]
        del values[name]
        over_cap = True
        skipped.append({"name": name, "why": f"dropped to keep the saved state under its cap of {max_bytes} bytes; it took {sizes[name]} bytes"})
    payload = {"modules": modules, "values": values, "figures": figures, "skipped": skipped}
    out = _capped_file(path + ".tmp", max_bytes)
    try:
        dill.dump(payload, out)
        out.f.close()
        os.replace(path + ".tmp", path)
    except _TooLarge:
        out.f.close()
        os.unlink(path + ".tmp")
        over_cap = True
        for name in values:
            skipped.append({"name": name, "why": f"the saved state was over its cap of {max_bytes} bytes"})
        payload = {"modules": modules, "values": {}, "figures": [], "skipped": skipped}
        with open(path, "wb") as f:
            dill.dump(payload, f)
        values, figures = {}, []
    return {"saved": sorted(values), "modules": sorted(modules), "skipped": skipped,
            "figures": len(figures), "bytes": os.path.getsize(path), "overCap": over_cap}


def extract(archive_b64):
    """Unpacks a session's files archive (base64 .tar.gz, as fileops "archive" made it) into the
    work directory before a load, with fileops' checks (regular files and directories only, no
    path out of /work). It runs in the kernel, so as the session's uid: what user code may do
    anyway. It spares a wake the `docker exec` of fileops.py. Returns how many files it wrote."""
    return WorkDir(WORKDIR).extract(base64.b64decode(archive_b64, validate=True))["files"]


def load(ns, path):
    """Loads what dump wrote into ns and removes the file; returns {"restored", "notes"}."""
    import dill

    if not os.path.exists(path):
        return {"restored": [], "notes": ["no saved state was found: the session starts empty"]}
    try:
        with open(path, "rb") as f:
            payload = dill.load(f)
    finally:
        os.unlink(path)
    notes, restored = [], []
    for name, module in payload["modules"].items():
        try:
            ns[name] = importlib.import_module(module)
            restored.append(name)
        except Exception as exc:
            notes.append(f"{name}: module {module} could not be imported again ({type(exc).__name__}: {exc})")
    ns.update(payload["values"])
    restored += list(payload["values"])
    for item in payload["skipped"]:
        notes.append(f"{item['name']} was not restored: {item['why']}")
    return {"restored": sorted(restored), "figures": len(payload["figures"]), "notes": notes}
