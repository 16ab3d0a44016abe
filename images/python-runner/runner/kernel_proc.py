"""The kernel process (kernel.py) as the supervisor sees it: spawned with its pipes, fed requests."""

import fcntl
import json
import os
import signal

from env import KERNEL_PYTHON, KERNEL_SCRIPT, WORKDIR, now, read_text
from ids import session_user

# The session's memoryMb (set by the backend): what user code may allocate on top of the kernel as
# loaded. The kernel caps its own RLIMIT_DATA with it when ready (kernel.py).
KERNEL_MEMORY_BYTES = int(os.environ.get("SESSIONBOX_KERNEL_MEMORY_BYTES") or 0)


def _spawn_as_session_user(argv, env, child_ends):
    """posix_spawn cannot change ids: fork, drop to the session's uid, exec. The supervisor has
    no threads, so the child may run Python until its exec."""
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, target in zip(child_ends, (1, 2, 3, 4)):
                os.dup2(fd, target)
            session_user.become()
            os.chdir(WORKDIR)
            os.execve(argv[0], argv, env)
        except BaseException:
            pass
        os._exit(127)
    return pid


def _high_fd(fd):
    """Moves a pipe end above the fd numbers the kernel's file actions write to."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Kernel:
    def __init__(self, restarted):
        self.restarted = restarted
        self.ready = False
        self.stopped = False  # stopped itself (SIGSTOP) after "ready" or a "done": idle
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
        # The supervisor's own settings are not user code's business (the kernel's env is what it sees).
        env.pop("SESSIONBOX_KERNEL_MEMORY_BYTES", None)
        imports = "lazy" if env.pop("SESSIONBOX_IMPORTS", None) == "lazy" else "eager"
        env.setdefault("MPLBACKEND", "Agg")
        # BLAS pools start one thread per CPU; in a pids-limited container that budget matters.
        threads = str(min(len(os.sched_getaffinity(0)), 4))
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
        argv = [KERNEL_PYTHON, "-u", KERNEL_SCRIPT, str(os.getpid()), str(KERNEL_MEMORY_BYTES), imports]
        try:
            if session_user.split:
                self.pid = _spawn_as_session_user(argv, env, child_ends)
            else:
                self.pid = os.posix_spawn(KERNEL_PYTHON, argv, env, file_actions=actions)
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

    def is_stopped(self):
        text = read_text(f"/proc/{self.pid}/stat")
        return bool(text) and text.rsplit(")", 1)[1].split()[0] in "Tt"

    def resume(self):
        self.stopped = False
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def send(self, msg, wake=None):
        """Writes one request line. With `wake`, the kernel is stopped: what fits in the pipe goes
        first, then `wake()` continues it (it sees data and reads the whole line), then the rest;
        writing all of a long line (code of hundreds of KiB) first would block on the full pipe."""
        data = memoryview((json.dumps(msg) + "\n").encode("ascii"))
        if wake is not None:
            os.set_blocking(self.ctl_w, False)
            try:
                while data:
                    data = data[os.write(self.ctl_w, data):]
            except BlockingIOError:
                pass
            finally:
                os.set_blocking(self.ctl_w, True)
            wake()
        while data:
            data = data[os.write(self.ctl_w, data):]

    def close(self):
        for fd in (self.ctl_w, self.ctl_r, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass


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
