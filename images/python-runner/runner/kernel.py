"""sessionbox kernel: the long-lived interpreter that runs user code as notebook cells.

supervisor.py starts it as `python3 -u kernel.py <supervisor pid> <memory bytes> eager|lazy` (under
gVisor already as the session's uid: ids.py) with fd 0 = /dev/null,
fd 1/2 = pipes the supervisor reads, fd 3 = control requests, fd 4 = control events. Both
control pipes carry one JSON object per line:

  -> {"op": "exec", "id", "code", "maxFigures", "maxFigurePixels", "maxResultChars"}
  <- {"ev": "ready", "pid"}                                   once: eager, after numpy, pandas and
                                                              matplotlib are imported; lazy, at once
  <- {"ev": "figure", "index", "pngB64", "width", "height"}   any number per exec
  <- {"ev": "note", "text"}                                   any number per exec
  <- {"ev": "done", "id", "status": "succeeded"|"failed", "result", "error"}   one per exec
  -> {"op": "dump"|"load", "id", "path", "maxBytes", "archive"?}   hibernation (state.py); done's result is JSON

After "ready" and after each "done" it stops itself (SIGSTOP) until the supervisor continues it
with the next request: the supervisor ends a run only once the kernel is stopped, so user code
that writes a "done" itself ends nothing while it keeps running.

SIGINT (sent by the supervisor at a deadline) interrupts the running cell and ends the run; one
that comes after the kernel was continued but before the cell began keeps the cell from starting.
"""

import ast
import asyncio
import base64
import builtins
import ctypes
import importlib.machinery
import inspect
import io
import json
import linecache
import os
import resource
import select
import signal
import struct
import sys
import threading
import traceback
import types

import state

CTL_IN, CTL_OUT = 3, 4
KERNEL_FILE = os.path.abspath(__file__)
CJK_FONT = "Noto Sans CJK JP"
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Per arch (AUDIT_ARCH_*): syscalls whose first argument is a pid to signal or open (kill, tkill,
# tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open); syscalls always refused (unshare,
# setns, ptrace, process_vm_readv, process_vm_writev, then the kernel surface the engine's
# session profile also removes, which gVisor does not apply: io_uring_setup/enter/register,
# userfaultfd, perf_event_open, keyctl, add_key, request_key, bpf); clone; clone3.
_IO_URING = (425, 426, 427)
_SYSCALLS = {
    0xC000003E: ((62, 200, 234, 129, 297, 434),
                 (272, 308, 101, 310, 311, *_IO_URING, 323, 298, 250, 248, 249, 321), 56, 435),  # x86_64
    0x40000003: ((37, 238, 270, 178, 335, 434),
                 (310, 346, 26, 347, 348, *_IO_URING, 374, 336, 288, 286, 287, 357), 120, 435),  # i386
    0xC00000B7: ((129, 130, 131, 138, 240, 434),
                 (97, 268, 117, 270, 271, *_IO_URING, 282, 241, 219, 217, 218, 280), 220, 435),  # aarch64
}
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NAMESPACES = 0x7E020000


def _prepare_process():
    os.setsid()
    for fd in (CTL_IN, CTL_OUT):
        os.set_inheritable(fd, False)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if len(sys.argv) > 1 and os.getppid() != int(sys.argv[1]):
        os._exit(1)  # the supervisor died before PDEATHSIG was armed
    _install_seccomp(libc, {1, os.getppid()})
    try:
        # Let the OOM killer pick the kernel and its children before the supervisor.
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("500")
    except OSError:
        pass
    # Imports resolve like a notebook's: the working directory first, never this file's dir.
    here = os.path.dirname(KERNEL_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, "")
    site_dir = os.path.join(here, "site")
    if os.path.isdir(site_dir) and site_dir not in sys.path:
        sys.path.append(site_dir)
    global MEMORY_BYTES, DEFERRED_IMPORTS_BYTES
    MEMORY_BYTES = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 0
    lazy = sys.argv[3:4] == ["lazy"]
    # A lazy kernel is capped before numpy, pandas and matplotlib are imported; what they take when
    # the first cell imports them (VmData 67 MiB measured in this image) counts as the kernel's, not memoryMb.
    DEFERRED_IMPORTS_BYTES = 72 << 20 if lazy else 0
    sys.argv = [""]
    return libc, lazy


MEMORY_BYTES = 0
DEFERRED_IMPORTS_BYTES = 0


def _cap_memory():
    """RLIMIT_DATA (hard) = the data size as loaded + memoryMb, set before any user code runs: past
    it Python raises MemoryError and the session keeps its state; the cgroup limit stays the
    backstop for the whole container."""
    if MEMORY_BYTES <= 0:
        return
    try:
        with open("/proc/self/status") as f:
            data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
        limit = data + DEFERRED_IMPORTS_BYTES + MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (OSError, StopIteration, ValueError) as exc:
        print(f"sessionbox-kernel: cannot cap the memory: {exc}", file=sys.stderr)


def _seccomp_program(pids):
    """Classic BPF for seccomp: (code, jt, jf, k) tuples."""
    LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    prog, labels = [], {}

    def emit(code, k=0, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    emit(LD_ABS, 4)  # seccomp_data.arch
    for n, (arch, (signal_nrs, denied_nrs, clone_nr, clone3_nr)) in enumerate(_SYSCALLS.items()):
        emit(JEQ, arch, 0, f"next{n}")
        emit(LD_ABS, 0)  # seccomp_data.nr
        for nr in signal_nrs:
            emit(JEQ, nr, f"pid{n}")
        for nr in denied_nrs:
            emit(JEQ, nr, "eperm")
        emit(JEQ, clone_nr, f"clone{n}")
        emit(JEQ, clone3_nr, "enosys")  # as Docker's profile: libc falls back to clone
        emit(RET, ALLOW)
        labels[f"clone{n}"] = len(prog)
        emit(LD_ABS, 16)  # low 32 bits of args[0]: the clone flags
        emit(JSET, _CLONE_NAMESPACES, "eperm")
        emit(RET, ALLOW)
        labels[f"pid{n}"] = len(prog)
        emit(LD_ABS, 16)  # low 32 bits of args[0]: a pid_t
        for pid in sorted({p & 0xFFFFFFFF for p in pids}):
            emit(JEQ, pid, "eperm")
        emit(RET, ALLOW)
        labels[f"next{n}"] = len(prog)
        emit(LD_ABS, 4)
    prog[-1] = [RET, 0, 0, ALLOW]
    labels["eperm"] = len(prog)
    emit(RET, EPERM)
    labels["enosys"] = len(prog)
    emit(RET, ENOSYS)
    for i, ins in enumerate(prog):
        for j in (1, 2):
            if isinstance(ins[j], str):
                ins[j] = labels[ins[j]] - i - 1
                assert 0 <= ins[j] < 256
    return [tuple(ins) for ins in prog]


def _install_seccomp(libc, pids):
    """A seccomp filter on the kernel, inherited by everything user code starts and impossible to
    lift. It fails with EPERM (1) any signal aimed at the supervisor: under runc the supervisor is
    PID 1 and the kernel drops such signals anyway, but gVisor does not, so `os.kill(1, SIGSTOP)`
    would freeze the session there; (2) new namespaces (unshare, setns, clone with CLONE_NEW*),
    which Docker's seccomp profile refuses under runc but gVisor, which does not apply that
    profile, would grant; (3) ptrace and process_vm_*: the processes the backend starts in the
    container (fileops.py) run as the same uid and are dumpable until their first line ran;
    (4) io_uring, userfaultfd, perf_event_open, the keyring calls and bpf, which the engine's
    profile for session containers refuses under runc but gVisor, which implements io_uring,
    would grant. clone3 gets ENOSYS, as in Docker's profile, so libc uses clone."""

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    prog = _seccomp_program(pids)
    filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
    fprog = SockFprog(len(prog), filters)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        print(f"sessionbox-kernel: seccomp filter not installed: {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)


def _configure_matplotlib(matplotlib):
    matplotlib.use("Agg")
    from matplotlib import font_manager

    # matplotlib >= 3.6 falls back glyph by glyph along font.family, so Latin text keeps
    # DejaVu Sans and Japanese comes from Noto Sans CJK JP (when that font is installed).
    families = ["DejaVu Sans"]
    if any(f.name == CJK_FONT for f in font_manager.fontManager.ttflist):
        families.append(CJK_FONT)
    matplotlib.rcParams["font.family"] = families
    matplotlib.rcParams["axes.unicode_minus"] = False


class _AfterImport:
    """A sys.meta_path finder that runs a hook right after a module's first import: a cold
    kernel imports matplotlib on first use and is set up exactly as a preloaded one."""

    def __init__(self, hooks):
        self.hooks = dict(hooks)

    def find_spec(self, name, path, target=None):
        hook = self.hooks.pop(name, None)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module  # a loader object of this module alone

        def exec_then_hook(module):
            try:
                exec_module(module)
            except BaseException:
                self.hooks[name] = hook  # a failed import (interrupted, MemoryError) is retried, hook and all
                raise
            hook(module)

        spec.loader.exec_module = exec_then_hook
        return spec


def _reap_children():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _ensure_stdin():
    """exit() closes sys.stdin and with it fd 0; a kernel outlives that, so put /dev/null back."""
    if sys.stdin is not None and not sys.stdin.closed:
        return
    try:
        os.fstat(0)
    except OSError:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 0:
            os.dup2(fd, 0)
            os.close(fd)
    sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)


def _png_size(png):
    # Width and height are the first fields of the IHDR chunk, right after the signature.
    return struct.unpack(">II", png[16:24])


class _NoFigure:
    """Nothing is an instance of it: the Figure class before matplotlib is imported."""


class Figures:
    """Renders pyplot figures to PNG and sends them to the supervisor."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.plt = None
        self.Figure = _NoFigure  # until pyplot is imported
        self.begin(50, 25_000_000)

    def attach(self, plt):
        self.plt = plt
        self.Figure = sys.modules["matplotlib.figure"].Figure

        def show(*args, **kwargs):
            """Display all open figures (sessionbox: sends them as PNG and closes them)."""
            self.capture_open()

        def figure_show(fig, *args, **kwargs):
            """Display this figure (sessionbox: sends it as PNG and closes it)."""
            self.capture(fig)

        plt.show = show
        self.Figure.show = figure_show

    def begin(self, max_figures, max_pixels):
        self.max_figures = max_figures
        self.max_pixels = max_pixels
        self.index = 0
        self.sent = 0
        self.over_count = 0

    def open_figures(self):
        if self.plt is None:
            return []
        from matplotlib._pylab_helpers import Gcf

        return [manager.canvas.figure for manager in Gcf.get_all_fig_managers()]

    def capture_open(self, at_end=False):
        for fig in self.open_figures():
            if not at_end:
                self.capture(fig)
                continue
            try:
                self.capture(fig)
            except Exception as exc:
                self.kernel.note(f"figure {self.index - 1} could not be rendered: {type(exc).__name__}: {exc}")

    def capture(self, fig):
        try:
            self._render(fig)
        finally:
            self.plt.close(fig)

    def _render(self, fig):
        index = self.index
        self.index += 1
        if self.sent >= self.max_figures:
            self.over_count += 1
            return
        width = round(fig.get_figwidth() * fig.dpi)
        height = round(fig.get_figheight() * fig.dpi)
        if width * height > self.max_pixels:
            self.kernel.note(
                f"figure {index} skipped: {width}x{height} px is over the {self.max_pixels} px cap"
            )
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi)
        png = buf.getvalue()
        width, height = _png_size(png)
        self.sent += 1
        self.kernel.send(
            {
                "ev": "figure",
                "index": index,
                "pngB64": base64.b64encode(png).decode("ascii"),
                "width": width,
                "height": height,
            }
        )

    def finish(self):
        if self.over_count:
            self.kernel.note(
                f"{self.over_count} figure(s) skipped: over the {self.max_figures} figure cap"
            )


class Kernel:
    def __init__(self, libc, lazy):
        self.pid = os.getpid()
        self.libc = libc
        self.send_lock = threading.Lock()
        self.running = False
        self.interrupt_pending = False
        self.count = 0
        self.loop = None
        self.figures = Figures(self)
        hooks = {"matplotlib": _configure_matplotlib, "matplotlib.pyplot": self.figures.attach}
        if lazy:
            # A cold kernel answers at once; the first cell that imports them pays for them.
            sys.meta_path.insert(0, _AfterImport(hooks))
        else:
            # A pooled kernel has the time: the first cell does not pay for these.
            import matplotlib
            _configure_matplotlib(matplotlib)
            import matplotlib.pyplot as plt
            self.figures.attach(plt)
            import numpy  # noqa: F401
            import pandas  # noqa: F401

        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        main.__dict__["display"] = self.display
        sys.modules["__main__"] = main
        self.ns = main.__dict__

    # -- control pipe -------------------------------------------------------------------

    def send(self, msg):
        if os.getpid() != self.pid:
            return  # a process forked by user code must never talk on the control pipe
        data = (json.dumps(msg) + "\n").encode("ascii")
        with self.send_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(CTL_OUT, view):]

    def note(self, text):
        self.send({"ev": "note", "text": text})

    def idle(self, pending):
        """Stops this process until the supervisor continues it with the next request (written
        before it continues us). The supervisor ends a run only on a "done" followed by this
        stop, which user code cannot give while it keeps running; threads of user code stay
        frozen between runs. Continued with no request (SIGCONT from elsewhere, e.g. the kernel's
        SIGHUP + SIGCONT to an orphaned process group with a stopped member), it stops again."""
        while True:
            os.kill(self.pid, signal.SIGSTOP)
            if b"\n" in pending or select.select([CTL_IN], [], [], 0)[0]:
                return

    def requests(self):
        """Request lines from the control pipe, stopping (idle) before each one."""
        buf = bytearray()
        scanned = 0
        self.idle(buf)
        while True:
            end = buf.find(b"\n", scanned)
            if end < 0:
                scanned = len(buf)
                data = os.read(CTL_IN, 1 << 20)
                if not data:
                    return  # the supervisor closed the pipe
                buf += data
                continue
            line = bytes(buf[:end])
            del buf[: end + 1]
            scanned = 0
            yield line
            self.idle(buf)

    def serve(self):
        signal.signal(signal.SIGINT, self.on_sigint)
        # A handler, not SIG_IGN, so processes user code starts get the default again.
        signal.signal(signal.SIGHUP, lambda signum, frame: None)
        _cap_memory()
        self.send({"ev": "ready", "pid": self.pid})
        for line in self.requests():
            try:
                req = json.loads(line)
            except ValueError:
                continue
            if isinstance(req, dict) and req.get("op") == "exec":
                self.handle_exec(req)
            elif isinstance(req, dict) and req.get("op") in ("dump", "load"):
                self.handle_state(req)
        os._exit(0)  # the supervisor closed the pipe

    def on_sigint(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt
        # Continued with a request and interrupted before the cell began: it must not start.
        self.interrupt_pending = True

    # -- runs ---------------------------------------------------------------------------

    def handle_exec(self, req):
        status, result, error = "failed", None, None
        try:
            status, result, error = self.execute(req)
        except BaseException as exc:  # a late KeyboardInterrupt must not kill the kernel
            self.running = False
            self.exit_if_forked()
            error = {"name": type(exc).__name__, "value": str(exc), "traceback": ""}
        self.flush_output()
        _reap_children()
        _ensure_stdin()
        signal.signal(signal.SIGINT, self.on_sigint)
        self.interrupt_pending = False  # a SIGINT for this run, come too late
        self.send({"ev": "done", "id": req.get("id"), "status": status, "result": result, "error": error})

    def handle_state(self, req):
        status, result, error = "failed", None, None
        try:
            if req["op"] == "dump":
                out = state.dump(self.ns, str(req["path"]), int(req.get("maxBytes", 1 << 30)))
            else:
                extracted = state.extract(req["archive"]) if isinstance(req.get("archive"), str) else None
                out = state.load(self.ns, str(req["path"]))
                if extracted is not None:
                    out["extracted"] = extracted
            status, result = "succeeded", json.dumps(out)
        except BaseException as exc:
            error = {"name": type(exc).__name__, "value": str(exc)[:2000], "traceback": ""}
        self.send({"ev": "done", "id": req.get("id"), "status": status, "result": result, "error": error})

    def execute(self, req):
        _reap_children()
        signal.signal(signal.SIGINT, self.on_sigint)
        self.figures.begin(int(req.get("maxFigures", 50)), int(req.get("maxFigurePixels", 25_000_000)))
        max_result = int(req.get("maxResultChars", 1 << 20))
        result = error = None
        self.running = True
        try:
            if self.interrupt_pending:
                raise KeyboardInterrupt
            result = self.run_cell(str(req.get("code", "")))
        except BaseException as exc:
            self.running = False
            self.exit_if_forked(1)
            error = self.describe(exc)
        self.exit_if_forked(0)
        self.running = True  # rendering the figures left open can be interrupted too
        try:
            self.figures.capture_open(at_end=True)
        except KeyboardInterrupt:
            self.note("capturing figures was interrupted")
        finally:
            self.running = False
        self.figures.finish()
        if result is not None and len(result) > max_result:
            self.note(f"result truncated after {max_result} characters")
            result = result[:max_result]
        return ("failed" if error else "succeeded"), result, error

    def run_cell(self, source):
        self.count += 1
        filename = f"<cell-{self.count}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        try:
            tree = ast.parse(source, filename)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
            if last is not None:
                last = compile(last, filename, "eval", flags=flags, dont_inherit=True)
        except SyntaxError as exc:
            raise exc.with_traceback(None)
        self.evaluate(body)
        if last is None:
            return None
        value = self.evaluate(last)
        if value is None:
            return None
        if isinstance(value, self.figures.Figure):  # a notebook shows a trailing figure as an image
            self.figures.capture(value)
            return None
        self.ns["_"] = value
        return repr(value)

    def evaluate(self, code):
        if code.co_flags & inspect.CO_COROUTINE:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            return self.loop.run_until_complete(eval(code, self.ns))
        return eval(code, self.ns)

    def display(self, *objs, **kwargs):
        """Show objects like a notebook's display(): figures as images, anything else as repr."""
        for obj in objs:
            if isinstance(obj, self.figures.Figure):
                self.figures.capture(obj)
            else:
                print(repr(obj))

    def exit_if_forked(self, code=0):
        if os.getpid() != self.pid:
            self.flush_output()
            os._exit(code)

    def flush_output(self):
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        self.libc.fflush(None)

    # -- errors -------------------------------------------------------------------------

    def describe(self, exc):
        te = traceback.TracebackException.from_exception(exc)
        self.clean_traceback(te, set())
        try:
            value = str(exc)
        except Exception:
            value = "<str() failed>"
        return {"name": type(exc).__name__, "value": value, "traceback": "".join(te.format())}

    def clean_traceback(self, te, seen):
        """Drop the kernel's own frames and show the current cell as <cell>."""
        if te is None or id(te) in seen:
            return
        seen.add(id(te))
        current = f"<cell-{self.count}>"
        frames = [f for f in te.stack if f.filename != KERNEL_FILE]
        first_cell = next((i for i, f in enumerate(frames) if f.filename.startswith("<cell-")), None)
        if first_cell is not None:
            frames = frames[first_cell:]
        for frame in frames:
            frame.line  # load the source line before the file name changes
            if frame.filename == current:
                frame.filename = "<cell>"
        te.stack = traceback.StackSummary.from_list(frames)
        if getattr(te, "filename", None) == current:  # SyntaxError
            te.filename = "<cell>"
        self.clean_traceback(te.__cause__, seen)
        self.clean_traceback(te.__context__, seen)
        for sub in getattr(te, "exceptions", None) or ():
            self.clean_traceback(sub, seen)


def main():
    libc, lazy = _prepare_process()
    Kernel(libc, lazy).serve()


if __name__ == "__main__":
    main()
