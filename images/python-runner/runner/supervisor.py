"""sessionbox supervisor: the main process of a session container (see PROTOCOL.md).

Reads NDJSON requests on stdin and writes NDJSON events on stdout (nothing else ever goes to
stdout; diagnostics go to stderr). It runs user code only through the kernel (kernel.py), a
child interpreter it spawns, feeds, times out, sweeps after and restarts. File operations on
the work directory run beside it, one process each (fileops.py via `docker exec`), never on
this stream; the sweep leaves such processes alone.

Environment (defaults suit the container):
  SESSIONBOX_WORKDIR        /work
  SESSIONBOX_KERNEL_PYTHON  this interpreter
  SESSIONBOX_KERNEL         kernel.py next to this file
  SESSIONBOX_SWEEP          all | descendants (default: all inside a container, where the
                            supervisor is PID 1 or a child of it, else descendants)
  SESSIONBOX_CGROUP_ROOT    /sys/fs/cgroup
  SESSIONBOX_MPLCACHE       /opt/sessionbox/mplcache
"""

import base64
import binascii
import codecs
import collections
import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

from safefs import FileError, WorkDir, encode_event, int_field

HERE = os.path.dirname(os.path.abspath(__file__))
WORKDIR = os.path.abspath(os.environ.get("SESSIONBOX_WORKDIR", "/work"))
KERNEL_PYTHON = os.environ.get("SESSIONBOX_KERNEL_PYTHON", sys.executable)
KERNEL_SCRIPT = os.environ.get("SESSIONBOX_KERNEL", os.path.join(HERE, "kernel.py"))
CGROUP_ROOT = os.environ.get("SESSIONBOX_CGROUP_ROOT", "/sys/fs/cgroup")
# The session's memoryMb (set by the backend): what user code may allocate on top of the kernel as loaded.
KERNEL_MEMORY_BYTES = int(os.environ.get("SESSIONBOX_KERNEL_MEMORY_BYTES") or 0)
MPL_CACHE = os.environ.get("SESSIONBOX_MPLCACHE", "/opt/sessionbox/mplcache")

MAX_LINE = 64 << 20
DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_OUTPUT = 1 << 20
DEFAULT_MAX_FIGURES = 50
DEFAULT_MAX_FIGURE_PIXELS = 25_000_000
COALESCE_SECONDS = 0.02
COALESCE_CHARS = 64 << 10
SAMPLE_SECONDS = 0.02
GRACE_SECONDS = 1.0
TERM_WAIT_SECONDS = 0.5
# The kernel runs user code, so its control messages are checked here, not trusted: user code
# can write to fd 4 itself and bypass the kernel's own figure caps.
MAX_CONTROL_LINE = 64 << 20
MAX_FIGURE_BYTES_PER_RUN = 64 << 20
MAX_NOTES = 100
MAX_NOTE_CHARS = 2000
MAX_ERROR_CHARS = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESTART_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def log(*parts):
    print("sessionbox-supervisor:", *parts, file=sys.stderr, flush=True)


def now():
    return time.monotonic()


# -- cgroup accounting ---------------------------------------------------------------------


def _read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _read_int(path):
    text = _read_text(path) if path else None
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def _read_key(path, key):
    text = _read_text(path) if path else None
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
    text = _read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def process_rss(pid):
    text = _read_text(f"/proc/{pid}/statm")
    return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") if text else None


# -- leftover processes --------------------------------------------------------------------


def read_procs():
    """pid -> (ppid, pgrp, session, state) for every visible process."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = _read_text(f"/proc/{name}/stat")
        if not text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        procs[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    return procs


class Sweeper:
    """Kills every process that is neither init, the supervisor nor the live kernel.

    Mode "all" (in a container's PID namespace) considers every pid except those whose parent
    is outside the namespace (ppid 0): those were started by the engine (`docker exec`, e.g. a
    file operation), and no process of user code can get there. Mode "descendants"
    (outside a container) only considers descendants of the supervisor, which is a child
    subreaper so orphans stay in its tree, plus members of the kernel's session.
    """

    def __init__(self, mode, reap):
        self.mode = mode
        self.reap = reap
        self.me = os.getpid()

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


# -- output streams ------------------------------------------------------------------------


class Stream:
    """One output stream of a run: UTF-8 decoding, coalescing and the byte cap."""

    def __init__(self, name, cap):
        self.name = name
        self.cap = cap
        self.total = 0
        self.truncated = False
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = []
        self.pending_chars = 0
        self.since = None

    def feed(self, data):
        """Takes bytes the kernel wrote; returns True once the stream passed 4x its cap."""
        before = self.total
        self.total += len(data)
        if not self.truncated:
            if self.total <= self.cap:
                self._add(self.decoder.decode(data))
            else:
                text = self.decoder.decode(data[: self.cap - before], final=True)
                self._add(text + f"\n[sessionbox: {self.name} truncated after {self.cap} bytes]\n")
                self.truncated = True
        return self.total > 4 * self.cap

    def _add(self, text):
        if text:
            self.pending.append(text)
            self.pending_chars += len(text)
            if self.since is None:
                self.since = now()

    def deadline(self):
        if self.since is None:
            return None
        return now() if self.pending_chars >= COALESCE_CHARS else self.since + COALESCE_SECONDS

    def take(self, final=False):
        if final and not self.truncated:
            self._add(self.decoder.decode(b"", final=True))
        text = "".join(self.pending)
        self.pending, self.pending_chars, self.since = [], 0, None
        return text


# -- the kernel process --------------------------------------------------------------------


def _high_fd(fd):
    """Moves a pipe end above the fd numbers the kernel's file actions write to."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Kernel:
    def __init__(self, restarted):
        self.restarted = restarted
        self.ready = False
        self.status = None  # wait status once reaped
        self.ctl_buf = bytearray()
        self.ctl_skip = False
        ctl_in_r, self.ctl_w = os.pipe()
        self.ctl_r, ctl_out_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        child_ends = [_high_fd(fd) for fd in (out_w, err_w, ctl_in_r, ctl_out_w)]
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in zip(child_ends, (1, 2, 3, 4))]
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        # BLAS pools start one thread per CPU; in a pids-limited container that budget matters.
        threads = str(min(len(os.sched_getaffinity(0)), 4))
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
        try:
            self.pid = os.posix_spawn(
                KERNEL_PYTHON, [KERNEL_PYTHON, "-u", KERNEL_SCRIPT, str(os.getpid())], env,
                file_actions=actions,
            )
        except BaseException:
            for fd in (*child_ends, self.ctl_w, self.ctl_r, self.out_r, self.err_r):
                os.close(fd)
            raise
        for fd in child_ends:
            os.close(fd)
        for fd in (self.ctl_r, self.out_r, self.err_r):
            os.set_blocking(fd, False)
        self.started_at = now()

    @property
    def alive(self):
        return self.status is None

    def send(self, msg):
        data = memoryview((json.dumps(msg) + "\n").encode("ascii"))
        while data:
            data = data[os.write(self.ctl_w, data):]

    def close(self):
        for fd in (self.ctl_w, self.ctl_r, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass


def cap_kernel_memory(pid):
    """RLIMIT_DATA (hard) = the ready kernel's data size + memoryMb: past it Python raises MemoryError and
    the session keeps its state; the cgroup limit stays the backstop for the whole container."""
    if KERNEL_MEMORY_BYTES <= 0:
        return
    try:
        with open(f"/proc/{pid}/status") as f:
            data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
        resource.prlimit(pid, resource.RLIMIT_DATA, (data + KERNEL_MEMORY_BYTES,) * 2)
    except (OSError, StopIteration, ValueError) as exc:
        log(f"cannot cap the kernel's memory: {exc}")


def describe_exit(status):
    if status is None:
        return "did not exit"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


# -- runs ----------------------------------------------------------------------------------

RUNNING, STOPPING = "running", "stopping"
RESTART_REASONS = {
    "oom": "it ran out of memory",
    "pids": "the process limit was hit",
    "timeout": "it did not stop at the time limit",
    "output_cap": "it did not stop after too much output",
    "aborted": "it did not stop when aborted",
}


class Run:
    def __init__(self, req):
        self.id = req["id"]
        self.timeout = req["timeoutMs"] / 1000
        self.stdout = Stream("stdout", req["maxOutputBytes"])
        self.stderr = Stream("stderr", req["maxOutputBytes"])
        self.phase = RUNNING
        self.stop_cause = None
        self.grace_deadline = None
        self.notes = []
        self.before = None
        self.started_at = None
        self.cpu0 = self.cpu_last = self.oom0 = self.pids0 = None
        self.peak_memory = None
        self.next_sample = 0.0
        self.max_figures = req["maxFigures"]
        self.max_figure_pixels = req["maxFigurePixels"]
        self.max_result = req["maxOutputBytes"]
        self.figures_sent = 0
        self.figures_over = 0
        self.figure_bytes = 0
        self.notes_dropped = 0

    def note(self, text):
        if len(self.notes) >= MAX_NOTES:
            self.notes_dropped += 1
            return
        text = str(text)
        self.notes.append(text if len(text) <= MAX_NOTE_CHARS else text[:MAX_NOTE_CHARS] + "...")

    def check_figure(self, msg):
        """Returns (png width, height) of a figure message that is within the run's caps, else
        None (a note says why, except for the count cap, which gets one note at the end)."""
        index = msg.get("index")
        data = msg.get("pngB64")
        if not isinstance(data, str) or len(data) < 32:
            self.note(f"figure {index!r} skipped: not a PNG")
            return None
        if self.figures_sent >= self.max_figures:
            self.figures_over += 1
            return None
        size = len(data) * 3 // 4
        if self.figure_bytes + size > MAX_FIGURE_BYTES_PER_RUN:
            self.note(f"figure {index!r} skipped: the run's figures are over the "
                      f"{MAX_FIGURE_BYTES_PER_RUN >> 20} MiB cap")
            return None
        try:
            head = base64.b64decode(data[:32], validate=True)
        except (binascii.Error, ValueError):
            head = b""
        if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
            self.note(f"figure {index!r} skipped: not a PNG")
            return None
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if width * height > self.max_figure_pixels:
            self.note(f"figure {index!r} skipped: {width}x{height} px is over the "
                      f"{self.max_figure_pixels} px cap")
            return None
        self.figures_sent += 1
        self.figure_bytes += size
        return width, height

    def sample(self, memory, cpu):
        if memory is not None and (self.peak_memory is None or memory > self.peak_memory):
            self.peak_memory = memory
        if cpu is not None:
            self.cpu_last = cpu
        self.next_sample = now() + SAMPLE_SECONDS


def _clean_error(error):
    """The kernel's error object, as strings of bounded size (user code can forge it)."""
    if not isinstance(error, dict):
        return None if error is None else {"name": "Error", "value": "", "traceback": ""}
    return {k: str(error.get(k) or "")[:MAX_ERROR_CHARS] for k in ("name", "value", "traceback")}


class Supervisor:
    def __init__(self, out_fd):
        self.out_fd = out_fd
        self.cg = Cgroup(CGROUP_ROOT)
        self.work = WorkDir(WORKDIR)
        self.sweeper = Sweeper(default_sweep_mode(), self.reap)
        self.poller = select.poll()
        self.kernel = None
        self.kernel_count = 0
        self.restart_at = None
        self.failed_starts = 0
        self.queue = collections.deque()
        self.run = None
        self.stdin_buf = bytearray()
        self.stdin_scan = 0
        self.stdin_skip = False
        self.stdin_open = True
        self.terminating = False
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # As PID 1 of the container (no engine init), the kernel drops every signal user code
        # sends us that has no handler, SIGKILL and SIGSTOP included. A handler would let user
        # code end the session, so SIGTERM/SIGINT only log here: the session ends on stdin EOF
        # or by the engine (SIGKILL from outside the namespace). No-op handlers, not SIG_IGN,
        # so the kernel does not inherit them.
        on_term = self.on_signal_as_init if os.getpid() == 1 else self.on_terminate
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        self.poller.register(0, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        log(f"sweep mode {self.sweeper.mode}, work dir {WORKDIR}")

    def on_terminate(self, signum, frame):
        self.terminating = True

    def on_signal_as_init(self, signum, frame):
        pass

    # -- events ---------------------------------------------------------------------------

    def emit(self, event):
        data = memoryview(encode_event(event))
        while data:
            try:
                data = data[os.write(self.out_fd, data):]
            except BlockingIOError:
                select.select([], [self.out_fd], [], 1.0)
            except BrokenPipeError:
                log("stdout closed; exiting")
                self.terminating = True
                return

    def error(self, req_id, code, message):
        self.emit({"ev": "error", "id": req_id, "code": code, "message": message})

    # -- main loop ------------------------------------------------------------------------

    def serve(self):
        self.start_kernel()
        while not self.terminating:
            if not self.stdin_open and self.run is None and not self.queue:
                break
            for fd, _ in self.poller.poll(self.poll_timeout()):
                self.on_readable(fd)
            self.reap()
            self.tick()
        self.shutdown()

    def poll_timeout(self):
        deadlines = [self.restart_at]
        run = self.run
        if run:
            deadlines += [run.stdout.deadline(), run.stderr.deadline(), run.next_sample]
            deadlines.append(run.started_at + run.timeout if run.phase == RUNNING else run.grace_deadline)
        deadlines = [d for d in deadlines if d is not None]
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - now()) * 1000) + 1)

    def on_readable(self, fd):
        kernel = self.kernel
        if fd == 0:
            self.read_stdin()
        elif fd == self.wake_r:
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        elif kernel and fd in (kernel.out_r, kernel.err_r):
            self.read_output(fd)
        elif kernel and fd == kernel.ctl_r:
            self.read_control()

    def tick(self):
        kernel = self.kernel
        if kernel and not kernel.alive:
            self.on_kernel_exit()
        run = self.run
        if run:
            t = now()
            for stream in (run.stdout, run.stderr):
                d = stream.deadline()
                if d is not None and d <= t:
                    self.flush_stream(stream)
            if t >= run.next_sample:
                run.sample(self.memory_now(), self.cpu_now())
            if run.phase == RUNNING and t >= run.started_at + run.timeout:
                self.stop_run("timeout")
            elif run.phase == STOPPING and t >= run.grace_deadline:
                log(f"kernel {self.kernel.pid} ignored SIGINT; killing it")
                self.kill_kernel()
                self.finish_run(None)
        if self.restart_at is not None and now() >= self.restart_at:
            self.restart_at = None
            self.start_kernel()
        if self.run is None and self.queue and self.kernel and self.kernel.ready:
            self.start_run(self.queue.popleft())

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.kernel and pid == self.kernel.pid:
                self.kernel.status = status

    def shutdown(self):
        log("shutting down")
        if self.kernel and self.kernel.alive:
            self.kill_kernel()
        self.sweeper.sweep()

    # -- stdin ----------------------------------------------------------------------------

    def read_stdin(self):
        try:
            data = os.read(0, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.stdin_open = False
            self.poller.unregister(0)
            return
        if self.stdin_skip:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1:]
            self.stdin_skip = False
        buf = self.stdin_buf
        buf += data
        while True:
            end = buf.find(b"\n", self.stdin_scan)
            if end < 0:
                self.stdin_scan = len(buf)
                if len(buf) > MAX_LINE:
                    buf.clear()
                    self.stdin_scan = 0
                    self.stdin_skip = True
                    self.error(None, "bad_request", f"request line longer than {MAX_LINE} bytes")
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            self.stdin_scan = 0
            if len(line) > MAX_LINE:
                self.error(None, "bad_request", f"request line longer than {MAX_LINE} bytes")
            elif line.strip():
                self.handle_line(line)

    def handle_line(self, line):
        try:
            req = json.loads(line)
        except ValueError as exc:
            self.error(None, "bad_request", f"request is not valid JSON: {exc}")
            return
        if not isinstance(req, dict):
            self.error(None, "bad_request", "request is not a JSON object")
            return
        req_id = req.get("id")
        handler = getattr(self, "op_" + str(req.get("op")), None)
        if handler is None:
            self.error(req_id, "bad_request", f"unknown op {req.get('op')!r}")
            return
        try:
            handler(req_id, req)
        except FileError as exc:
            self.error(req_id, exc.code, exc.message)
        except Exception as exc:
            log("request failed:\n" + traceback.format_exc())
            self.error(req_id, "bad_request", f"{type(exc).__name__}: {exc}")

    # -- requests -------------------------------------------------------------------------

    def op_ping(self, req_id, req):
        kernel = self.kernel
        self.emit({
            "ev": "pong", "id": req_id,
            "ready": bool(kernel and kernel.ready),
            "kernelPid": kernel.pid if kernel and kernel.alive else None,
            "busy": self.run is not None or bool(self.queue),
        })

    def op_exec(self, req_id, req):
        if not isinstance(req.get("code"), str):
            raise FileError("bad_request", "code must be a string")
        self.queue.append({
            "id": req_id,
            "code": req["code"],
            "timeoutMs": int_field(req, "timeoutMs", DEFAULT_TIMEOUT_MS),
            "maxOutputBytes": int_field(req, "maxOutputBytes", DEFAULT_MAX_OUTPUT),
            "maxFigures": int_field(req, "maxFigures", DEFAULT_MAX_FIGURES, 0),
            "maxFigurePixels": int_field(req, "maxFigurePixels", DEFAULT_MAX_FIGURE_PIXELS),
        })

    def op_abort(self, req_id, req):
        if self.run and self.run.id == req_id:
            self.stop_run("aborted")
            return
        for queued in list(self.queue):
            if queued["id"] == req_id:
                self.queue.remove(queued)
                self.emit({
                    "ev": "done", "id": req_id, "status": "failed", "result": None, "error": None,
                    "restarted": False, "cause": "aborted",
                    "usage": {"cpuMs": 0, "peakMemoryBytes": None},
                    "stdoutBytes": 0, "stderrBytes": 0,
                    "stdoutTruncated": False, "stderrTruncated": False,
                    "files": [], "notes": ["aborted before it started"],
                })
                return

    # -- kernel lifecycle -----------------------------------------------------------------

    def start_kernel(self):
        try:
            kernel = Kernel(restarted=self.kernel_count > 0)
        except OSError as exc:
            log(f"cannot start the kernel: {exc}")
            self.schedule_restart()
            return
        self.kernel_count += 1
        self.kernel = kernel
        for fd in (kernel.out_r, kernel.err_r, kernel.ctl_r):
            self.poller.register(fd, select.POLLIN)
        log(f"kernel {kernel.pid} started")

    def schedule_restart(self):
        delay = RESTART_DELAYS[min(self.failed_starts, len(RESTART_DELAYS) - 1)]
        self.failed_starts += 1
        self.restart_at = now() + delay

    def unregister(self, fd):
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    def drop_kernel(self):
        kernel = self.kernel
        for fd in (kernel.out_r, kernel.err_r, kernel.ctl_r):
            self.unregister(fd)
        kernel.close()
        self.kernel = None

    def kill_kernel(self):
        kernel = self.kernel
        self.reap()
        if kernel.alive:
            os.kill(kernel.pid, signal.SIGKILL)
        deadline = now() + 5.0
        while kernel.alive and now() < deadline:
            self.reap()
            if kernel.alive:
                time.sleep(0.002)
        if kernel.alive:
            log(f"kernel {kernel.pid} did not die after SIGKILL")
            kernel.status = -1

    def on_kernel_exit(self):
        kernel = self.kernel
        log(f"kernel {kernel.pid} {describe_exit(kernel.status)}")
        if self.run:
            self.finish_run(None)
            return
        self.drain_output()
        self.sweeper.sweep(session=kernel.pid)
        self.drop_kernel()
        if kernel.ready:
            self.failed_starts = 0
            self.start_kernel()
        else:
            self.schedule_restart()

    def read_control(self):
        kernel = self.kernel
        try:
            data = os.read(kernel.ctl_r, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.unregister(kernel.ctl_r)
            return
        if kernel.ctl_skip:  # the rest of an oversized message
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1:]
            kernel.ctl_skip = False
        kernel.ctl_buf += data
        while True:
            end = kernel.ctl_buf.find(b"\n")
            if end < 0:
                if len(kernel.ctl_buf) > MAX_CONTROL_LINE:
                    kernel.ctl_buf.clear()
                    kernel.ctl_skip = True
                    if self.run:
                        self.run.note(f"a message from the kernel over {MAX_CONTROL_LINE >> 20} MiB "
                                      "(e.g. a figure) was dropped")
                return
            line = bytes(kernel.ctl_buf[:end])
            del kernel.ctl_buf[: end + 1]
            try:
                msg = json.loads(line)
            except ValueError:
                log("garbage on the kernel control pipe")
                continue
            self.on_kernel_message(msg)
            if self.kernel is not kernel:
                return

    def on_kernel_message(self, msg):
        ev = msg.get("ev") if isinstance(msg, dict) else None
        kernel = self.kernel
        run = self.run
        if ev == "ready" and not kernel.ready:
            kernel.ready = True
            self.failed_starts = 0
            cap_kernel_memory(kernel.pid)
            log(f"kernel {kernel.pid} ready after {now() - kernel.started_at:.3f} s")
            self.emit({"ev": "ready", "kernelPid": kernel.pid, "restarted": kernel.restarted})
        elif run is None:
            return
        elif ev == "figure":
            size = run.check_figure(msg)
            if size is None:
                return
            index = msg.get("index")
            self.flush_stream(run.stdout)
            self.flush_stream(run.stderr)
            self.emit({"ev": "figure", "id": run.id, "index": index if isinstance(index, int) else None,
                       "pngB64": msg["pngB64"], "width": size[0], "height": size[1]})
        elif ev == "note":
            run.note(msg.get("text"))
        elif ev == "done":
            self.finish_run(msg)

    # -- output ---------------------------------------------------------------------------

    def read_output(self, fd, max_reads=1):
        kernel = self.kernel
        for _ in range(max_reads):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                self.unregister(fd)
                return
            run = self.run
            if run is None:
                log(f"output between runs dropped: {data[:200]!r}")
                continue
            stream = run.stdout if fd == kernel.out_r else run.stderr
            if stream.feed(data) and run.phase == RUNNING:
                self.stop_run("output_cap")

    def drain_output(self):
        kernel = self.kernel
        if kernel:
            for fd in (kernel.out_r, kernel.err_r):
                self.read_output(fd, max_reads=64)

    def flush_stream(self, stream, final=False):
        text = stream.take(final)
        if text:
            self.emit({"ev": stream.name, "id": self.run.id, "data": text})

    # -- runs -----------------------------------------------------------------------------

    def memory_now(self):
        value = self.cg.memory_bytes()
        if value is None and self.kernel and self.kernel.alive:
            value = process_rss(self.kernel.pid)
        return value

    def cpu_now(self):
        value = self.cg.cpu_ns()
        if value is None and self.kernel and self.kernel.alive:
            value = process_cpu_ns(self.kernel.pid)
        return value

    def start_run(self, req):
        run = Run(req)
        self.run = run
        run.before = self.work.snapshot()
        run.oom0, run.pids0 = self.cg.oom_kills(), self.cg.pids_refused()
        run.sample(self.memory_now(), self.cpu_now())
        run.cpu0 = run.cpu_last
        run.started_at = now()
        self.emit({"ev": "started", "id": run.id})
        try:
            self.kernel.send({
                "op": "exec", "code": req["code"], "maxFigures": req["maxFigures"],
                "maxFigurePixels": req["maxFigurePixels"], "maxResultChars": req["maxOutputBytes"],
            })
        except OSError as exc:
            log(f"cannot reach the kernel: {exc}")
            self.kill_kernel()

    def stop_run(self, cause):
        run = self.run
        if run.phase != RUNNING:
            return
        run.stop_cause = cause
        run.phase = STOPPING
        kernel = self.kernel
        self.sweeper.sweep(keep=kernel.pid, session=kernel.pid)
        self.reap()
        if kernel.alive:
            os.kill(kernel.pid, signal.SIGINT)
        run.grace_deadline = now() + GRACE_SECONDS

    def finish_run(self, result):
        """Ends the current run; result is the kernel's done message, or None if it died."""
        run = self.run
        kernel = self.kernel
        died = not kernel.alive
        self.drain_output()
        self.sweeper.sweep(keep=None if died else kernel.pid, session=kernel.pid)
        self.drain_output()
        self.flush_stream(run.stdout, final=True)
        self.flush_stream(run.stderr, final=True)
        run.sample(self.memory_now(), self.cpu_now())
        cpu1 = run.cpu_last
        oom1, pids1 = self.cg.oom_kills(), self.cg.pids_refused()

        error = _clean_error(result.get("error")) if result else None
        value = result.get("result") if result else None
        value = value[: run.max_result] if isinstance(value, str) else None
        if run.stop_cause == "timeout":
            status = "timed_out"
        elif died or error or run.stop_cause:
            status = "failed"
        else:
            status = "succeeded"
        cause = run.stop_cause
        if cause is None and status != "succeeded":
            if oom1 is not None and run.oom0 is not None and oom1 > run.oom0:
                cause = "oom"
            elif pids1 is not None and run.pids0 is not None and pids1 > run.pids0:
                cause = "pids"
            elif died:
                cause = "killed"
        oom_rose = oom1 is not None and run.oom0 is not None and oom1 > run.oom0
        if oom_rose and cause != "oom":
            run.notes.append(f"{oom1 - run.oom0} process(es) of this run were killed for running out of memory")
        pids_rose = pids1 is not None and run.pids0 is not None and pids1 > run.pids0
        if pids_rose and cause != "pids":
            run.notes.append(f"{pids1 - run.pids0} process or thread start(s) were refused: the process limit was hit")
        if run.figures_over:
            run.notes.append(f"{run.figures_over} figure(s) skipped: over the {run.max_figures} figure cap")
        if run.notes_dropped:
            run.notes.append(f"{run.notes_dropped} more note(s) dropped")
        if died:
            how = describe_exit(kernel.status)
            reason = RESTART_REASONS.get(cause) or ("it was " if how.startswith("killed") else "it ") + how
            run.notes.append(f"the Python kernel was restarted because {reason}; "
                             "variables and imports from earlier runs are gone")
            self.drop_kernel()
            self.failed_starts = 0
            self.start_kernel()

        after = self.work.snapshot()
        files = [
            {"path": rel, "size": size, "mtimeMs": mtime_ns // 1_000_000}
            for rel, (size, mtime_ns) in sorted(after.items())
            if run.before.get(rel) != (size, mtime_ns)
        ]
        cpu_ms = None
        if cpu1 is not None and run.cpu0 is not None and cpu1 >= run.cpu0:
            cpu_ms = (cpu1 - run.cpu0) // 1_000_000
        self.emit({
            "ev": "done", "id": run.id, "status": status,
            "result": value,
            "error": error, "restarted": died, "cause": cause,
            "usage": {"cpuMs": cpu_ms, "peakMemoryBytes": run.peak_memory},
            "stdoutBytes": run.stdout.total, "stderrBytes": run.stderr.total,
            "stdoutTruncated": run.stdout.truncated, "stderrTruncated": run.stderr.truncated,
            "files": files, "notes": run.notes,
        })
        self.run = None


# -- start-up ------------------------------------------------------------------------------


def harden():
    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: user code (same uid) cannot open /proc/<supervisor>/fd/* or ptrace us.
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log("prctl(PR_SET_DUMPABLE) failed:", os.strerror(ctypes.get_errno()))
    # Orphans of user code are re-parented to us, so we can reap and sweep them.
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("prctl(PR_SET_CHILD_SUBREAPER) failed:", os.strerror(ctypes.get_errno()))


def copy_mpl_cache():
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(MPL_CACHE):
        return
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(MPL_CACHE):
            src, dst = os.path.join(MPL_CACHE, name), os.path.join(target, name)
            if os.path.isfile(src) and not os.path.exists(dst):
                shutil.copyfile(src, dst)
    except OSError as exc:
        log(f"cannot copy the matplotlib cache: {exc}")


def main():
    harden()
    # Events get a private copy of stdout; fd 1 itself now points at stderr, so a stray print
    # or library message can never corrupt the protocol stream.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    copy_mpl_cache()
    os.chdir(WORKDIR)
    Supervisor(out_fd).serve()


if __name__ == "__main__":
    main()
