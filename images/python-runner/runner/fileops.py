"""sessionbox file operations: one request per process (see PROTOCOL.md, "File operations").

Run by the backend, once per operation, next to the supervisor rather than through it:

    docker exec -i -u 65534:65534 -w / <container> python3 -I -S -B /opt/sessionbox/fileops.py

(-I: no user site dir, `.pth` file or PYTHON* settings can run inside this process; -S: only the
standard library is needed, and `site` costs start-up time.) Reads one JSON request line on
stdin, followed by `size` raw bytes for `file_write` and `extract`; writes NDJSON events on
stdout (`file_chunk`s, then exactly one `file_done`, `file_list` or `error`) and exits 0, or 1
after an `error`.

Run as another uid than the work directory's owner (the session's uid, which user code runs
as), it is only a relay: user code cannot open its /proc/<pid>/fd or ptrace it, from its first
instruction on, so it cannot forge its answer. It passes stdin and stdout through to the
supervisor's file-operation socket, where a process forked from the (non-dumpable) supervisor
does the work (`handle`). Run as the owner itself (tests outside a container), it does the work.

Environment: SESSIONBOX_WORKDIR (default /work), SESSIONBOX_FILEOPS_SOCKET (default
"@sessionbox-fileops", an abstract socket name).
"""

import base64
import ctypes
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out

from errors import ErrorCode, FileError  # noqa: E402
from safefs import DEFAULT_MAX_FILE_BYTES, WorkDir, encode_event, int_field, write_all  # noqa: E402

MAX_REQUEST_LINE = 1 << 20
DEFAULT_TIMEOUT_MS = 600_000
# What one answer may carry beyond the bytes it was asked for: base64 (4/3) and event framing.
ANSWER_SLACK_BYTES = 1 << 20
MAX_SMALL_ANSWER_BYTES = 16 << 20  # file_list, file_done, error
CONNECT_SECONDS = 15
WORKDIR = os.path.abspath(os.environ.get("SESSIONBOX_WORKDIR", "/work"))
SOCKET_NAME = os.environ.get("SESSIONBOX_FILEOPS_SOCKET", "@sessionbox-fileops")


HELLO = b"\x01"  # the relay's first byte, sent with its credentials (SCM_CREDENTIALS)


def socket_address(name=SOCKET_NAME):
    return "\0" + name[1:] if name.startswith("@") else name


def sender_uid(sock):
    """The uid the kernel vouches for on the relay's first byte (SO_PEERCRED is not used: gVisor
    answers it with the receiver's own credentials); None without that byte."""
    data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(12))
    for level, kind, value in ancillary:
        if data == HELLO and level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return struct.unpack("3i", value[:12])[1]
    return None
PR_SET_DUMPABLE = 4


class Ops:
    def __init__(self, out_fd, src, req):
        self.out_fd = out_fd
        self.src = src
        self.req = req
        self.id = req.get("id")
        self.work = WorkDir(WORKDIR)
        self.sent = 0

    def answer_cap(self):
        if self.req.get("op") in ("file_read", "archive"):
            return self.limit() * 4 // 3 + ANSWER_SLACK_BYTES
        return MAX_SMALL_ANSWER_BYTES

    def emit(self, event):
        data = encode_event({"ev": event.pop("ev"), "id": self.id, **event})
        if self.sent + len(data) > self.answer_cap() and event.get("code") is None:
            raise FileError(ErrorCode.TOO_LARGE, f"the answer would be over {self.answer_cap()} bytes")
        self.sent += len(data)
        write_all(self.out_fd, data)

    def send_chunk(self, data):
        self.emit({"ev": "file_chunk", "dataB64": base64.b64encode(data).decode("ascii")})

    def limit(self):
        return int_field(self.req, "maxBytes", DEFAULT_MAX_FILE_BYTES, 0)

    def size(self):
        return int_field(self.req, "size", None, 0)

    def op_file_write(self):
        quota = self.req.get("quota")
        if quota is not None:
            replacing = quota.get("replacing") if isinstance(quota, dict) else None
            if not isinstance(replacing, list):
                raise FileError(ErrorCode.BAD_REQUEST, "quota must be {capBytes, replacing: [paths], extraBytes}")
            self.work.check_quota(int_field(quota, "capBytes", None, 0), replacing,
                                  self.size() + int_field(quota, "extraBytes", 0, 0))
        return "file_done", self.work.write(self.req.get("path"), self.src, self.size(), self.limit())

    def op_file_read(self):
        return "file_done", self.work.read(self.req.get("path"), self.limit(), self.send_chunk)

    def op_file_list(self):
        return "file_list", self.work.list()

    def op_file_delete(self):
        return "file_done", self.work.delete(self.req.get("path"))

    def op_archive(self):
        return "file_done", self.work.archive(self.send_chunk, self.limit())

    def op_extract(self):
        size, limit = self.size(), self.limit()
        if size > limit:
            raise FileError(ErrorCode.TOO_LARGE, f"the archive is larger than {limit} bytes")
        data = self.src.read(size)
        if len(data) != size:
            raise FileError(ErrorCode.BAD_REQUEST, f"the archive ended after {len(data)} of {size} bytes")
        return "file_done", self.work.extract(data)

    def op_interrupt(self):
        """SIGINT to the kernel while it runs code (Jupyter's interrupt): the run raises
        KeyboardInterrupt and the session's state stays. Nothing happens when it is idle."""
        pid = getattr(self, "busy_kernel_pid", None)
        if pid is None:
            return "file_done", {"interrupted": False}
        os.kill(pid, signal.SIGINT)
        return "file_done", {"interrupted": True}

    def run(self):
        handler = getattr(self, "op_" + str(self.req.get("op")), None)
        if handler is None:
            raise FileError(ErrorCode.BAD_REQUEST, f"unknown op {self.req.get('op')!r}")
        ev, fields = handler()
        self.emit({"ev": ev, **fields})


def read_request(src):
    line = src.readline(MAX_REQUEST_LINE + 1)
    if not line.endswith(b"\n"):
        raise FileError(ErrorCode.BAD_REQUEST, "expected one JSON request line on stdin"
                        if len(line) <= MAX_REQUEST_LINE else f"request line longer than {MAX_REQUEST_LINE} bytes")
    try:
        req = json.loads(line)
    except ValueError as exc:
        raise FileError(ErrorCode.BAD_REQUEST, f"request is not valid JSON: {exc}")
    if not isinstance(req, dict):
        raise FileError(ErrorCode.BAD_REQUEST, "request is not a JSON object")
    return req


def handle(src, out_fd, busy_kernel_pid=None):
    """Answers one request read from src (a binary file) on out_fd; returns the exit code.
    busy_kernel_pid: the kernel's pid while it runs code (for `interrupt`), else None."""
    ops = Ops(out_fd, src, {})
    ops.busy_kernel_pid = busy_kernel_pid
    try:
        ops.req = read_request(src)
        ops.id = ops.req.get("id")
        # A backend that went away must not leave this process behind.
        signal.alarm(math.ceil(int_field(ops.req, "timeoutMs", DEFAULT_TIMEOUT_MS) / 1000))
        ops.run()
    except FileError as exc:
        ops.emit({"ev": "error", "code": exc.code, "message": exc.message})
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug here: say what it was, never leave the backend waiting
        import traceback

        traceback.print_exc()
        ops.emit({"ev": "error", "code": ErrorCode.BAD_REQUEST, "message": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def relay():
    """Passes stdin to the supervisor's file-operation socket and its answer to stdout."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:  # a container that just started may not listen yet
            try:
                sock.connect(socket_address())
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
        sock.sendmsg([HELLO], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    except OSError as exc:
        print(f"sessionbox-fileops: the supervisor's file-operation socket: {exc}", file=sys.stderr)
        return 1

    def upload():
        try:
            while True:
                data = os.read(0, 1 << 16)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upload, daemon=True).start()
    # The starts of the current and of the last whole line: exit 1 after an `error`, as the worker.
    last = current = b""
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return 1 if not last or last.startswith(b'{"ev":"error"') else 0
            write_all(1, data)
            start = 0
            while True:
                end = data.find(b"\n", start)
                if len(current) < 32:
                    current += data[start:end if end >= 0 else len(data)][:32 - len(current)]
                if end < 0:
                    break
                last, current, start = current, b"", end + 1
    except OSError:
        return 1


def main():
    # Not dumpable: a process of the work directory's owner cannot ptrace this one or open its
    # /proc/<pid>/fd once this line ran (as another uid it never could: see above).
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if os.getuid() != os.stat(WORKDIR).st_uid:
        return relay()
    # Events get a private copy of stdout; a stray print goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    return handle(sys.stdin.buffer, out_fd)


if __name__ == "__main__":
    sys.exit(main())
