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

The supervisor's parts: boot (start-up), env (layout and helpers), errors (the error codes),
kernel_proc (the kernel process), run (one execution), streams (its output), cgroup (usage),
sweeper (leftover processes), safefs (the work directory), and this loop.
"""

import collections
import json
import os
import select
import signal
import socket
import time
import traceback

from cgroup import Cgroup, process_cpu_ns, process_rss
from env import CGROUP_ROOT, WORKDIR, log, now
from errors import ErrorCode, FileError
import fileops
from ids import session_user
from kernel_proc import Kernel, describe_exit
from run import RESTART_REASONS, RUNNING, STOPPING, Run, clean_error
from safefs import WorkDir, encode_event, int_field
from sweeper import Sweeper, default_sweep_mode

MAX_LINE = 64 << 20
DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_OUTPUT = 1 << 20
DEFAULT_MAX_FIGURES = 50
DEFAULT_MAX_FIGURE_PIXELS = 25_000_000
# One figure's PNG; the worker drops a longer protocol line than 8 MiB, so this stays well below it.
DEFAULT_MAX_FIGURE_BYTES = 4 << 20
GRACE_SECONDS = 1.0
# Checked here, not trusted: user code can write to the kernel's control fd itself.
MAX_CONTROL_LINE = 64 << 20
# Read at most this much of what a stopped kernel (or a process user code left) wrote before a
# run ends; the sweep then ends such writers.
MAX_CONTROL_DRAIN = 128 << 20
RESTART_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class Supervisor:
    def __init__(self, out_fd):
        self.out_fd = out_fd
        self.cg = Cgroup(CGROUP_ROOT)
        self.work = WorkDir(WORKDIR)
        self.file_workers = set()
        self.sweeper = Sweeper(default_sweep_mode(), self.reap, self.file_workers)
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
        self.fileops_sock = self.listen_for_file_ops()
        log(f"sweep mode {self.sweeper.mode}, work dir {WORKDIR}")

    def listen_for_file_ops(self):
        """The socket fileops.py relays to (bound before any user code runs, so user code can
        never take its name). None outside a container when another test session holds it."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(fileops.socket_address())
            sock.listen(64)
        except OSError as exc:
            log(f"no file-operation socket {fileops.SOCKET_NAME}: {exc}")
            sock.close()
            return None
        self.poller.register(sock.fileno(), select.POLLIN)
        return sock

    def accept_file_op(self):
        try:
            conn, _ = self.fileops_sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.setblocking(True)
            pid = os.fork()
            if pid == 0:
                self.serve_file_op(conn)
            self.file_workers.add(pid)

    def serve_file_op(self, conn):
        """In a forked child, non-dumpable like the supervisor: one file operation, then exit."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            conn.settimeout(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            uid = fileops.sender_uid(conn)
            if uid is None or uid in (os.getuid(), session_user.uid):
                # User code runs as the session's uid; only a process the engine started as
                # another uid (fileops.py, by `docker exec`) may ask.
                log(f"file-operation request refused (sender uid {uid})")
                return
            conn.settimeout(None)
            fd = conn.detach()
            os.dup2(fd, 3)
            # stdin: an empty pipe of the supervisor's uid, not /dev/null, which anyone may reopen
            # through /proc/<pid>/fd under gVisor.
            empty_r, empty_w = os.pipe()
            os.dup2(empty_r, 0)
            os.closerange(4, os.sysconf("SC_OPEN_MAX"))
            session_user.act_for_good()
            # Only a run in progress is interrupted: an idle kernel is stopped, and a SIGINT queued
            # for it would land in the next run.
            busy = self.kernel.pid if self.kernel and self.kernel.alive and self.run is not None else None
            code = fileops.handle(os.fdopen(3, "rb", buffering=1 << 16, closefd=False), 3, busy_kernel_pid=busy)
        except BaseException:
            log("file operation failed:\n" + traceback.format_exc())
        finally:
            os._exit(code)

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
        elif self.fileops_sock and fd == self.fileops_sock.fileno():
            self.accept_file_op()

    def tick(self):
        kernel = self.kernel
        if kernel and not kernel.alive:
            self.on_kernel_exit()
        if self.run and self.kernel and self.kernel.alive and self.kernel.stopped:
            self.on_kernel_stopped()
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
        kernel = self.kernel
        if self.run is None and self.queue and kernel and kernel.ready and kernel.stopped:
            self.start_run(self.queue.popleft())

    def reap(self):
        kernel = self.kernel
        if kernel and kernel.alive:
            # The kernel stops itself (SIGSTOP) once it is idle: the one sign of "done" that user
            # code cannot give while it keeps running, and the engine's, not the kernel's, word.
            try:
                pid, status = os.waitpid(kernel.pid, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                pid = 0
            if pid and os.WIFSTOPPED(status):
                kernel.stopped = True
            elif pid:
                kernel.status = status
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.kernel and pid == self.kernel.pid:
                self.kernel.status = status
            self.file_workers.discard(pid)

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
                    self.error(None, ErrorCode.BAD_REQUEST, f"request line longer than {MAX_LINE} bytes")
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            self.stdin_scan = 0
            if len(line) > MAX_LINE:
                self.error(None, ErrorCode.BAD_REQUEST, f"request line longer than {MAX_LINE} bytes")
            elif line.strip():
                self.handle_line(line)

    def handle_line(self, line):
        try:
            req = json.loads(line)
        except ValueError as exc:
            self.error(None, ErrorCode.BAD_REQUEST, f"request is not valid JSON: {exc}")
            return
        if not isinstance(req, dict):
            self.error(None, ErrorCode.BAD_REQUEST, "request is not a JSON object")
            return
        req_id = req.get("id")
        handler = getattr(self, "op_" + str(req.get("op")), None)
        if handler is None:
            self.error(req_id, ErrorCode.BAD_REQUEST, f"unknown op {req.get('op')!r}")
            return
        try:
            handler(req_id, req)
        except FileError as exc:
            self.error(req_id, exc.code, exc.message)
        except Exception as exc:
            log("request failed:\n" + traceback.format_exc())
            self.error(req_id, ErrorCode.BAD_REQUEST, f"{type(exc).__name__}: {exc}")

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
            raise FileError(ErrorCode.BAD_REQUEST, "code must be a string")
        self.queue.append({
            "id": req_id,
            "code": req["code"],
            "timeoutMs": int_field(req, "timeoutMs", DEFAULT_TIMEOUT_MS),
            "maxOutputBytes": int_field(req, "maxOutputBytes", DEFAULT_MAX_OUTPUT),
            "maxFigures": int_field(req, "maxFigures", DEFAULT_MAX_FIGURES, 0),
            "maxFigurePixels": int_field(req, "maxFigurePixels", DEFAULT_MAX_FIGURE_PIXELS),
            "maxFigureBytes": min(int_field(req, "maxFigureBytes", DEFAULT_MAX_FIGURE_BYTES, 0), 6 << 20),
        })

    def op_hibernate(self, req_id, req):
        """Saves the user's namespace to a file (kernel "dump"); answered like an exec."""
        self.queue_state_op(req_id, req, "dump")

    def op_wake(self, req_id, req):
        """Loads a namespace "hibernate" saved (kernel "load"); answered like an exec."""
        self.queue_state_op(req_id, req, "load")

    def queue_state_op(self, req_id, req, kernel_op):
        if not isinstance(req.get("path"), str):
            raise FileError(ErrorCode.BAD_REQUEST, "path must be a string")
        archive = req.get("archive")
        if archive is not None and (kernel_op != "load" or not isinstance(archive, str)):
            raise FileError(ErrorCode.BAD_REQUEST, "archive must be a base64 string, and only for wake")
        self.queue.append({
            "id": req_id, "kernelOp": kernel_op, "path": req["path"], "archive": archive,
            "maxBytes": int_field(req, "maxBytes", 1 << 30),
            "timeoutMs": int_field(req, "timeoutMs", DEFAULT_TIMEOUT_MS),
            "maxOutputBytes": DEFAULT_MAX_OUTPUT, "maxFigures": 0,
            "maxFigurePixels": DEFAULT_MAX_FIGURE_PIXELS, "maxFigureBytes": DEFAULT_MAX_FIGURE_BYTES,
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
            return False
        if not data:
            self.unregister(kernel.ctl_r)
            return False
        if kernel.ctl_skip:  # the rest of an oversized message
            end = data.find(b"\n")
            if end < 0:
                return True
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
                return True
            line = bytes(kernel.ctl_buf[:end])
            del kernel.ctl_buf[: end + 1]
            try:
                msg = json.loads(line)
            except ValueError:
                log("garbage on the kernel control pipe")
                continue
            self.on_kernel_message(msg)
            if self.kernel is not kernel:
                return True

    def on_kernel_message(self, msg):
        ev = msg.get("ev") if isinstance(msg, dict) else None
        kernel = self.kernel
        run = self.run
        if ev == "ready" and not kernel.ready:
            kernel.ready = True
            self.failed_starts = 0
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
        elif ev == "done" and msg.get("id") == run.id:
            # Not the end yet: user code can write this line too. The run ends when the kernel
            # has also stopped itself (on_kernel_stopped).
            run.done = msg

    def on_kernel_stopped(self):
        """The kernel stopped: idle after a done if it said so, else stopped by user code."""
        kernel, run = self.kernel, self.run
        for _ in range(MAX_CONTROL_DRAIN // (1 << 20)):  # what it wrote before stopping
            if not self.read_control() or self.kernel is not kernel or self.run is not run:
                break
        if self.kernel is not kernel or self.run is not run:
            return
        if run.done is None:
            kernel.resume()
            return
        # A process of user code could have stopped and continued the kernel: with no other
        # process left to do that, it must still be stopped now.
        self.sweeper.sweep(keep=kernel.pid, session=kernel.pid)
        self.reap()
        if kernel.alive and not kernel.is_stopped():
            kernel.stopped = False
            return
        self.finish_run(run.done)

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
        with session_user.acting():
            run.before = self.work.snapshot()
        run.oom0, run.pids0 = self.cg.oom_kills(), self.cg.pids_refused()
        run.sample(self.memory_now(), self.cpu_now())
        run.cpu0 = run.cpu_last
        run.started_at = now()
        self.emit({"ev": "started", "id": run.id})
        try:
            # Continued only once the request is in the pipe (continued without one, it stops again).
            if "kernelOp" in req:
                msg = {"op": req["kernelOp"], "id": run.id, "path": req["path"], "maxBytes": req["maxBytes"]}
                if req.get("archive") is not None:
                    msg["archive"] = req["archive"]
            else:
                msg = {
                    "op": "exec", "id": run.id, "code": req["code"], "maxFigures": req["maxFigures"],
                    "maxFigurePixels": req["maxFigurePixels"], "maxResultChars": req["maxOutputBytes"],
                }
            self.kernel.send(msg, wake=self.kernel.resume)
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
            # A kernel user code stopped is continued as soon as that is seen (on_kernel_stopped);
            # one stopped at its end must stay so.
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

        error = clean_error(result.get("error")) if result else None
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

        with session_user.acting():
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


if __name__ == "__main__":
    import boot

    boot.main(Supervisor)
