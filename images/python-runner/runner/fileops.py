"""sessionbox file operations: one request per process (see PROTOCOL.md, "File operations").

Run by the backend, once per operation, next to the supervisor rather than through it:

    docker exec -i -u 1000:1000 -w /work <container> python3 -I -S -B /opt/sessionbox/fileops.py

(-I: HOME is /work, so user code could otherwise plant a user site dir or PYTHON* settings that
run inside this process; -S: only the standard library is needed, and `site` costs start-up
time.) Reads one JSON request line on stdin, followed by `size` raw bytes for `file_write` and
`extract`; writes NDJSON events on stdout (`file_chunk`s, then exactly one `file_done`,
`file_list` or `error`) and exits 0, or 1 after an `error`.

Environment: SESSIONBOX_WORKDIR (default /work).
"""

import base64
import ctypes
import json
import math
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out

from errors import ErrorCode, FileError  # noqa: E402
from safefs import DEFAULT_MAX_FILE_BYTES, WorkDir, encode_event, int_field, write_all  # noqa: E402

MAX_REQUEST_LINE = 1 << 20
DEFAULT_TIMEOUT_MS = 600_000
PR_SET_DUMPABLE = 4


class Ops:
    def __init__(self, out_fd, src, req):
        self.out_fd = out_fd
        self.src = src
        self.req = req
        self.id = req.get("id")
        self.work = WorkDir(os.path.abspath(os.environ.get("SESSIONBOX_WORKDIR", "/work")))

    def emit(self, event):
        write_all(self.out_fd, encode_event({"ev": event.pop("ev"), "id": self.id, **event}))

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


def main():
    # Not dumpable: other processes of the sandbox user cannot ptrace this one or open its
    # /proc/<pid>/fd (the pipes to the backend) once this line ran.
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Events get a private copy of stdout; a stray print goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    src = sys.stdin.buffer
    ops = Ops(out_fd, src, {})
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


if __name__ == "__main__":
    sys.exit(main())
