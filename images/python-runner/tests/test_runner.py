"""Drives runner/supervisor.py over stdin/stdout, and runner/fileops.py (one process per file
operation), outside a container.

Run from images/python-runner with a Python that has matplotlib, numpy and pandas:
    /usr/bin/python3 -m unittest -v
SESSIONBOX_TEST_PYTHON picks the interpreter for the supervisor and kernel (default
/usr/bin/python3).
"""

import base64
import io
import itertools
import json
import os
import queue
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runner")
PYTHON = os.environ.get("SESSIONBOX_TEST_PYTHON", "/usr/bin/python3")
TERMINAL = {"done", "pong", "error"}


def have_libraries():
    probe = [PYTHON, "-c", "import matplotlib, numpy, pandas"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in "ZX"


class Session:
    """One supervisor process, talked to like a worker would."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="sessionbox-test-")
        self.workdir = os.path.join(self.tmp, "work")
        os.mkdir(self.workdir)
        env = dict(
            os.environ,
            SESSIONBOX_WORKDIR=self.workdir,
            SESSIONBOX_KERNEL_PYTHON=PYTHON,
            SESSIONBOX_SWEEP="descendants",
            SESSIONBOX_CGROUP_ROOT=os.path.join(self.tmp, "no-cgroup"),
            MPLCONFIGDIR=os.path.join(tempfile.gettempdir(), "sessionbox-test-mpl"),
        )
        self.stderr = open(os.path.join(self.tmp, "supervisor.log"), "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-u", os.path.join(RUNNER, "supervisor.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
        )
        self.events = queue.Queue()
        self.unclaimed = []
        self.ids = itertools.count()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next_event(self, timeout=30):
        event = self.events.get(timeout=timeout)
        if event is None:
            raise AssertionError("the supervisor closed its stdout")
        return event

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.unclaimed):
                if event.get("ev") == "ready":
                    return self.unclaimed.pop(i)
            self.unclaimed.append(self.next_event(max(0.1, deadline - time.monotonic())))

    def send_line(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, op, **fields):
        req_id = fields.pop("id", None) or f"r{next(self.ids)}"
        self.send_line((json.dumps({"op": op, "id": req_id, **fields}) + "\n").encode())
        return req_id

    def collect(self, req_id, timeout=60):
        """Events answering req_id, up to and including the terminal one."""
        events = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            if event.get("id") != req_id:
                self.unclaimed.append(event)
                continue
            events.append(event)
            if event["ev"] in TERMINAL:
                return events

    def request(self, op, **fields):
        return self.collect(self.send(op, **fields))

    def exec(self, code, timeoutMs=20_000, **fields):
        events = self.request("exec", code=code, timeoutMs=timeoutMs, **fields)
        done = events[-1]
        assert done["ev"] == "done", events
        return events, done

    def fileop(self, op, data=b"", **fields):
        """Runs fileops.py once, as `docker exec` does; returns its events (the last is terminal)."""
        req = {"op": op, "id": fields.pop("id", None) or f"f{next(self.ids)}", **fields}
        if op in ("file_write", "extract") and "size" not in req:
            req["size"] = len(data)
        proc = subprocess.run(
            [PYTHON, "-I", "-S", "-B", os.path.join(RUNNER, "fileops.py")],
            input=(json.dumps(req) + "\n").encode() + data, capture_output=True, timeout=60,
            env=dict(os.environ, SESSIONBOX_WORKDIR=self.workdir),
        )
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        assert events and all(e["id"] == req["id"] for e in events), (proc.stdout[:500], proc.stderr)
        assert all(e["ev"] == "file_chunk" for e in events[:-1]), events[-1]
        assert events[-1]["ev"] in ("file_done", "file_list", "error"), events[-1]
        assert proc.returncode == (1 if events[-1]["ev"] == "error" else 0), (proc.returncode, proc.stderr)
        return events

    def output(self, events, stream="stdout"):
        return "".join(e["data"] for e in events if e["ev"] == stream)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


LIBRARIES_MISSING = None if have_libraries() else f"{PYTHON} lacks matplotlib/numpy/pandas"
if LIBRARIES_MISSING and os.environ.get("CI") == "true":
    # under CI a missing prerequisite is an error: loading this module fails, and so does the run
    raise RuntimeError(f"missing prerequisite under CI=true: {LIBRARIES_MISSING}")


@unittest.skipIf(LIBRARIES_MISSING, LIBRARIES_MISSING)
class RunnerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Session()
        ready = cls.s.wait_ready()
        assert ready["restarted"] is False and isinstance(ready["kernelPid"], int), ready

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def run_ok(self, code, **fields):
        events, done = self.s.exec(code, **fields)
        self.assertEqual(done["status"], "succeeded", done)
        return events, done

    def b64(self, data):
        return base64.b64encode(data).decode()

    def read_file(self, path, **fields):
        events = self.s.fileop("file_read", path=path, maxBytes=fields.pop("maxBytes", 1 << 24))
        if events[-1]["ev"] == "error":
            return events[-1]
        return b"".join(base64.b64decode(e["dataB64"]) for e in events if e["ev"] == "file_chunk")

    # -- protocol basics ----------------------------------------------------------------

    def test_ping(self):
        pong = self.s.request("ping")[-1]
        self.assertEqual(pong["ev"], "pong")
        self.assertTrue(pong["ready"])
        self.assertIsInstance(pong["kernelPid"], int)
        self.assertFalse(pong["busy"])

    def test_bad_requests(self):
        self.s.send_line(b"this is not json\n")
        self.s.send_line(b"[1, 2]\n")
        for _ in range(2):
            event = self.s.collect(None)[-1]
            self.assertEqual((event["ev"], event["code"]), ("error", "bad_request"))
        event = self.s.request("no_such_op")[-1]
        self.assertEqual((event["ev"], event["code"]), ("error", "bad_request"))
        event = self.s.request("exec", code=42)[-1]
        self.assertEqual((event["ev"], event["code"]), ("error", "bad_request"))
        # file operations never travel on the supervisor's stream (see fileops.py)
        event = self.s.request("file_list")[-1]
        self.assertEqual((event["ev"], event["code"]), ("error", "bad_request"))

    def test_execs_are_serialized(self):
        first = self.s.send("exec", code="import time; time.sleep(0.3); 'first'", timeoutMs=5000)
        second = self.s.send("exec", code="'second'", timeoutMs=5000)
        self.assertEqual(self.s.collect(first)[-1]["result"], "'first'")
        events = self.s.collect(second)
        self.assertEqual(events[0]["ev"], "started")
        self.assertEqual(events[-1]["result"], "'second'")

    # -- notebook semantics -------------------------------------------------------------

    def test_state_and_trailing_expression(self):
        _, done = self.run_ok("x = 41")
        self.assertIsNone(done["result"])
        _, done = self.run_ok("x + 1")
        self.assertEqual(done["result"], "42")
        _, done = self.run_ok("print('hi')\nNone")
        self.assertIsNone(done["result"])
        _, done = self.run_ok("__name__")
        self.assertEqual(done["result"], "'__main__'")
        _, done = self.run_ok("import pandas as pd\npd.DataFrame({'a': [1, 2]}).shape")
        self.assertEqual(done["result"], "(2, 1)")

    def test_top_level_await(self):
        _, done = self.run_ok("import asyncio\nawait asyncio.sleep(0)\n6 * 7")
        self.assertEqual(done["result"], "42")

    def test_exception_traceback(self):
        self.run_ok("def helper():\n    return 1 / 0")
        _, done = self.s.exec("a = 1\nhelper()")
        self.assertEqual(done["status"], "failed")
        self.assertIsNone(done["cause"])
        error = done["error"]
        self.assertEqual(error["name"], "ZeroDivisionError")
        self.assertEqual(error["value"], "division by zero")
        self.assertIn('File "<cell>", line 2, in <module>', error["traceback"])
        self.assertIn("helper()", error["traceback"])
        self.assertIn("return 1 / 0", error["traceback"])  # the earlier cell's source
        self.assertNotIn("kernel.py", error["traceback"])

    def test_syntax_error(self):
        _, done = self.s.exec("x = (\n")
        self.assertEqual(done["status"], "failed")
        self.assertEqual(done["error"]["name"], "SyntaxError")
        self.assertIn('"<cell>"', done["error"]["traceback"])
        self.assertNotIn("kernel.py", done["error"]["traceback"])

    def test_forked_child_never_reports(self):
        code = (
            "import os\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    print('child')\n"
            "else:\n"
            "    os.waitpid(pid, 0)\n"
            "'parent'"
        )
        events, done = self.run_ok(code)
        self.assertEqual(done["result"], "'parent'")
        self.assertIn("child", self.s.output(events))
        _, done = self.run_ok("'next'")
        self.assertEqual(done["result"], "'next'")

    # -- timeouts and deaths ------------------------------------------------------------

    def test_timeout_busy_loop_keeps_state(self):
        self.run_ok("kept = 'yes'")
        started = time.monotonic()
        _, done = self.s.exec("while True: pass", timeoutMs=500)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual((done["status"], done["cause"], done["restarted"]), ("timed_out", "timeout", False))
        self.assertEqual(done["error"]["name"], "KeyboardInterrupt")
        _, done = self.run_ok("kept")
        self.assertEqual(done["result"], "'yes'")

    def test_timeout_sleep_is_interrupted(self):
        started = time.monotonic()
        _, done = self.s.exec("import time; time.sleep(100)", timeoutMs=500)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual((done["status"], done["restarted"]), ("timed_out", False))

    def test_timeout_ignoring_sigint_restarts(self):
        self.run_ok("lost = 1")
        code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        _, done = self.s.exec(code, timeoutMs=500)
        self.assertEqual((done["status"], done["cause"], done["restarted"]), ("timed_out", "timeout", True))
        self.assertTrue(done["notes"])
        self.assertTrue(self.s.wait_ready()["restarted"])
        _, done = self.s.exec("lost")
        self.assertEqual(done["error"]["name"], "NameError")

    def test_kernel_exit_restarts(self):
        _, done = self.s.exec("import os; os._exit(3)")
        self.assertEqual((done["status"], done["cause"], done["restarted"]), ("failed", "killed", True))
        self.s.wait_ready()
        _, done = self.run_ok("1 + 1")
        self.assertEqual(done["result"], "2")

    def test_abort(self):
        req_id = self.s.send("exec", code="import time; time.sleep(100)", timeoutMs=60_000)
        self.assertEqual(self.s.next_event()["ev"], "started")
        self.s.send("abort", id=req_id)
        done = self.s.collect(req_id)[-1]
        self.assertEqual((done["status"], done["cause"], done["restarted"]), ("failed", "aborted", False))

    # -- output -------------------------------------------------------------------------

    def test_stdout_and_stderr(self):
        events, done = self.run_ok("import sys\nprint('out')\nprint('err', file=sys.stderr)")
        self.assertEqual(self.s.output(events), "out\n")
        self.assertEqual(self.s.output(events, "stderr"), "err\n")
        self.assertEqual((done["stdoutBytes"], done["stderrBytes"]), (4, 4))

    def test_output_of_subprocesses_is_captured(self):
        events, _ = self.run_ok("import subprocess\nsubprocess.run(['echo', 'from child'])")
        self.assertEqual(self.s.output(events), "from child\n")

    def test_invalid_utf8_becomes_replacement_chars(self):
        code = "import os\nos.write(1, b'\\xff\\xfe')\na = 'あ'.encode()\nos.write(1, a[:2])\nos.write(1, a[2:])"
        events, _ = self.run_ok(code)
        self.assertEqual(self.s.output(events), "\ufffd\ufffdあ")

    def test_stdout_cap_marker(self):
        events, done = self.run_ok("print('a' * 3000)", maxOutputBytes=1000)
        out = self.s.output(events)
        self.assertEqual(out, "a" * 1000 + "\n[sessionbox: stdout truncated after 1000 bytes]\n")
        self.assertTrue(done["stdoutTruncated"])
        self.assertEqual(done["stdoutBytes"], 3001)

    def test_output_flood_stops_the_run(self):
        started = time.monotonic()
        _, done = self.s.exec("while True: print('x' * 100)", maxOutputBytes=1000, timeoutMs=30_000)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual((done["status"], done["cause"]), ("failed", "output_cap"))
        self.assertGreater(done["stdoutBytes"], 4000)

    # -- leftover processes -------------------------------------------------------------

    def test_background_process_is_killed(self):
        _, done = self.run_ok("import subprocess\nsubprocess.Popen(['sleep', '1000']).pid")
        self.assertFalse(process_alive(int(done["result"])))

    def test_double_fork_daemon_is_killed(self):
        code = (
            "import os, time\n"
            "r, w = os.pipe()\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        os.write(w, str(os.getpid()).encode())\n"
            "        time.sleep(1000)\n"
            "    os._exit(0)\n"
            "os.close(w)\n"
            "daemon = int(os.read(r, 32))\n"
            "os.wait()\n"
            "daemon"
        )
        _, done = self.run_ok(code)
        self.assertFalse(process_alive(int(done["result"])))

    # -- figures ------------------------------------------------------------------------

    def figures(self, events):
        return [e for e in events if e["ev"] == "figure"]

    def test_figures_from_show_and_left_open(self):
        code = (
            "import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3])\n"
            "plt.show()\n"
            "plt.figure(figsize=(2, 1))\n"
            "plt.plot([3, 2, 1])\n"
        )
        events, _ = self.run_ok(code)
        figures = self.figures(events)
        self.assertEqual([f["index"] for f in figures], [0, 1])
        self.assertEqual((figures[0]["width"], figures[0]["height"]), (640, 480))
        self.assertEqual((figures[1]["width"], figures[1]["height"]), (200, 100))
        self.assertTrue(base64.b64decode(figures[0]["pngB64"]).startswith(b"\x89PNG\r\n\x1a\n"))
        _, done = self.run_ok("len(plt.get_fignums())")
        self.assertEqual(done["result"], "0")

    def test_figure_caps(self):
        code = "import matplotlib.pyplot as plt\nfor i in range(3):\n    plt.figure()\n    plt.show()"
        events, done = self.run_ok(code, maxFigures=1)
        self.assertEqual(len(self.figures(events)), 1)
        self.assertEqual(done["notes"], ["2 figure(s) skipped: over the 1 figure cap"])
        events, done = self.run_ok("plt.figure(figsize=(100, 100))", maxFigurePixels=1000)
        self.assertEqual(self.figures(events), [])
        self.assertEqual(done["notes"], ["figure 0 skipped: 10000x10000 px is over the 1000 px cap"])

    def test_japanese_font(self):
        _, done = self.run_ok("import japanize_matplotlib, matplotlib\nmatplotlib.rcParams['font.family']")
        self.assertIn("Noto Sans CJK JP", done["result"])

    # -- files (fileops.py) -------------------------------------------------------------

    def write(self, path, data, **fields):
        return self.s.fileop("file_write", data, path=path, maxBytes=fields.pop("maxBytes", 1 << 24), **fields)[-1]

    def test_file_round_trip(self):
        data = bytes(range(256)) * 5000
        path = "dir/sub/data.bin"
        done = self.write(path, data, maxBytes=1 << 22)
        self.assertEqual((done["ev"], done["path"], done["size"]), ("file_done", "dir/sub/data.bin", len(data)))
        self.assertEqual(self.read_file("dir/sub/data.bin"), data)
        listed = self.s.fileop("file_list")[-1]["files"]
        entry = next(f for f in listed if f["path"] == "dir/sub/data.bin")
        self.assertEqual(entry["size"], len(data))
        _, run = self.run_ok("len(open('dir/sub/data.bin', 'rb').read())")
        self.assertEqual(run["result"], str(len(data)))
        self.assertEqual(self.write(path, b"shorter")["size"], 7)  # replaces, never appends
        self.assertEqual(self.read_file(path), b"shorter")
        self.assertEqual(self.read_file("dir/sub/data.bin", maxBytes=3)["code"], "too_large")
        self.assertEqual(self.s.fileop("file_delete", path="dir")[-1]["ev"], "file_done")
        self.assertEqual(self.read_file("dir/sub/data.bin")["code"], "not_found")
        self.assertEqual(self.write("big", b"12345", maxBytes=4)["code"], "too_large")

    def test_big_upload_streams_and_is_checked(self):
        data = os.urandom(5 << 20)
        self.assertEqual(self.write("up/big.bin", data)["size"], len(data))
        self.assertEqual(self.read_file("up/big.bin"), data)
        # fewer bytes than announced: an error, never a silently short file
        error = self.write("up/cut.bin", data[:1000], size=5000)
        self.assertEqual((error["ev"], error["code"]), ("error", "bad_request"))
        self.assertIn("ended after 1000 of 5000", error["message"])
        self.assertEqual(self.read_file("up/cut.bin")["code"], "not_found")  # created by it: removed
        self.assertFalse(self.write("up/big.bin", b"x")["created"])
        self.assertTrue(self.write("up/new.bin", b"x")["created"])
        self.s.fileop("file_delete", path="up")

    def test_upload_quota(self):
        self.write("q/a.bin", b"a" * 600)
        used = sum(f["size"] for f in self.s.fileop("file_list")[-1]["files"])  # other tests' files too
        quota = {"capBytes": used + 400, "replacing": ["q/b.bin"], "extraBytes": 0}
        error = self.write("q/b.bin", b"b" * 500, quota=quota)
        self.assertEqual((error["ev"], error["code"]), ("error", "quota_exceeded"))
        self.assertEqual(self.read_file("q/b.bin")["code"], "not_found")
        # replacing a file counts its new size only; extraBytes reserves room for later files
        self.assertEqual(self.write("q/a.bin", b"a" * 900, quota={**quota, "replacing": ["q/a.bin"]})["ev"], "file_done")
        error = self.write("q/a.bin", b"a" * 900, quota={**quota, "replacing": ["q/a.bin"], "extraBytes": 101})
        self.assertEqual(error["code"], "quota_exceeded")
        self.s.fileop("file_delete", path="q")

    def test_bad_fileops_requests(self):
        for req in (b"", b"no newline", b"not json\n", b"[1]\n", b'{"op": "nope"}\n', b'{"op": "file_write", "path": "x"}\n'):
            proc = subprocess.run([PYTHON, "-I", "-S", "-B", os.path.join(RUNNER, "fileops.py")], input=req,
                                  capture_output=True, timeout=30, env=dict(os.environ, SESSIONBOX_WORKDIR=self.s.workdir))
            event = json.loads(proc.stdout)
            self.assertEqual((event["ev"], event["code"], proc.returncode), ("error", "bad_request", 1), req)

    def test_invalid_paths(self):
        for path in ["/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b", "", "."]:
            error = self.read_file(path)
            self.assertEqual((error["ev"], error["code"]), ("error", "invalid_path"), path)
            error = self.write(path, b"", maxBytes=10)
            self.assertEqual(error["code"], "invalid_path", path)

    def test_symlinks_are_rejected(self):
        outside = os.path.join(self.s.tmp, "outside.txt")
        with open(outside, "w") as f:
            f.write("secret")
        self.run_ok(
            "import os\n"
            "os.symlink('/etc/passwd', 'x')\n"
            f"os.symlink({outside!r}, 'y')\n"
            "os.makedirs('d', exist_ok=True)\n"
            f"os.symlink({os.path.dirname(outside)!r}, 'd/link')\n"
        )
        self.assertEqual(self.read_file("x")["code"], "invalid_path")
        self.assertEqual(self.read_file("d/link/outside.txt")["code"], "invalid_path")
        for path in ("y", "d/link/outside.txt", "d/link/new.txt"):
            error = self.write(path, b"pwned", maxBytes=100)
            self.assertEqual(error["code"], "invalid_path", path)
        self.assertEqual(self.s.fileop("file_delete", path="y")[-1]["code"], "invalid_path")
        with open(outside) as f:
            self.assertEqual(f.read(), "secret")
        self.assertFalse(os.path.exists(os.path.join(self.s.tmp, "new.txt")))
        listed = {f["path"] for f in self.s.fileop("file_list")[-1]["files"]}
        self.assertFalse(listed & {"x", "y", "d/link"})
        self.run_ok("import os\nfor p in ('x', 'y', 'd/link'): os.unlink(p)")

    def test_reading_a_fifo_is_rejected(self):
        self.run_ok("import os\nos.mkfifo('fifo')")
        self.assertEqual(self.read_file("fifo")["code"], "invalid_path")
        self.run_ok("os.unlink('fifo')")

    def test_changed_files(self):
        self.write("old.txt", b"old", maxBytes=100)
        _, done = self.run_ok("open('new.txt', 'w').write('hi')\nopen('old.txt', 'a').write('!')")
        self.assertEqual([(f["path"], f["size"]) for f in done["files"]], [("new.txt", 2), ("old.txt", 4)])
        _, done = self.run_ok("x = 1")
        self.assertEqual(done["files"], [])

    def test_archive_and_extract(self):
        for path, data in (("arc/a.txt", b"alpha"), ("arc/deep/b.bin", bytes(range(256)))):
            self.write(path, data, maxBytes=1000)
        self.run_ok("import os\nos.symlink('/etc/passwd', 'arc/link')")
        events = self.s.fileop("archive", maxBytes=1 << 24)
        self.assertEqual(events[-1]["ev"], "file_done")
        archive = b"".join(base64.b64decode(e["dataB64"]) for e in events if e["ev"] == "file_chunk")
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = {m.name: m for m in tar.getmembers()}
        self.assertIn("arc/a.txt", names)
        self.assertTrue(names["arc/deep"].isdir())
        self.assertNotIn("arc/link", names)
        self.assertEqual(self.s.fileop("file_delete", path="arc/link")[-1]["code"], "invalid_path")
        self.run_ok("import shutil\nshutil.rmtree('arc')")
        done = self.s.fileop("extract", archive)[-1]
        self.assertEqual(done["ev"], "file_done", done)
        self.assertEqual(self.read_file("arc/a.txt"), b"alpha")
        self.assertEqual(self.read_file("arc/deep/b.bin"), bytes(range(256)))
        self.s.fileop("file_delete", path="arc")

    def test_large_archive_streams_and_extracts(self):
        self.run_ok("import os\nos.makedirs('big')\nopen('big/random.bin', 'wb').write(os.urandom(3 << 20))")
        events = self.s.fileop("archive", maxBytes=1 << 24)
        chunks = [base64.b64decode(e["dataB64"]) for e in events if e["ev"] == "file_chunk"]
        archive = b"".join(chunks)
        self.assertGreater(len(chunks), 2)
        self.assertEqual(events[-1]["size"], len(archive))
        self.assertEqual(events[-1]["files"], len([f for f in self.s.fileop("file_list")[-1]["files"]]))
        error = self.s.fileop("archive", maxBytes=1 << 20)[-1]
        self.assertEqual((error["ev"], error["code"]), ("error", "too_large"))
        _, done = self.run_ok("open('big/random.bin', 'rb').read()[:1000]")
        original = done["result"]
        self.run_ok("import shutil\nshutil.rmtree('big')")
        done = self.s.fileop("extract", archive, maxBytes=len(archive))[-1]
        self.assertEqual(done["ev"], "file_done", done)
        self.assertGreaterEqual(done["size"], 3 << 20)
        _, done = self.run_ok("open('big/random.bin', 'rb').read()[:1000]")
        self.assertEqual(done["result"], original)
        error = self.s.fileop("extract", archive, maxBytes=1000)[-1]
        self.assertEqual(error["code"], "too_large")
        error = self.s.fileop("extract", archive[:1000], size=len(archive), maxBytes=len(archive))[-1]
        self.assertEqual(error["code"], "bad_request")
        self.s.fileop("file_delete", path="big")

    def test_extract_rejects_bad_entries(self):
        def archive(*members):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for info, data in members:
                    tar.addfile(info, io.BytesIO(data) if data is not None else None)
            return buf.getvalue()

        def file(name, data=b"x"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            return info, data

        def special(name, kind, target=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            return info, None

        bad = [
            archive(file("ok.txt"), file("../escape.txt")),
            archive(file("/abs.txt")),
            archive(special("link", tarfile.SYMTYPE, "/etc/passwd")),
            archive(special("hard", tarfile.LNKTYPE, "ok.txt")),
            archive(special("dev", tarfile.CHRTYPE)),
            archive(file("a/../../b.txt")),
        ]
        for data in bad:
            error = self.s.fileop("extract", data)[-1]
            self.assertEqual((error["ev"], error["code"]), ("error", "invalid_path"))
        self.assertEqual(self.read_file("ok.txt")["code"], "not_found")
        self.assertFalse(os.path.exists(os.path.join(self.s.tmp, "escape.txt")))
        error = self.s.fileop("extract", b"not a tarball")[-1]
        self.assertEqual(error["code"], "bad_request")

    def test_hibernate_then_wake_with_the_archive_in_the_op(self):
        self.run_ok("import os\nos.makedirs('keep', exist_ok=True)\nopen('keep/a.txt', 'w').write('kept')\nx = 41\ndef inc(v):\n    return v + 1")
        done = self.s.request("hibernate", path=os.path.join(self.s.workdir, ".state.dill"), maxBytes=1 << 24)[-1]
        self.assertEqual(done["status"], "succeeded", done)
        events = self.s.fileop("archive", maxBytes=1 << 24)
        archive = b"".join(base64.b64decode(e["dataB64"]) for e in events if e["ev"] == "file_chunk")
        self.s.fileop("file_delete", path=".state.dill")
        self.s.fileop("file_delete", path="keep")
        error = self.s.request("hibernate", path="x", archive="AAAA")[-1]
        self.assertEqual((error["ev"], error["code"]), ("error", "bad_request"))
        # A fresh supervisor, as a woken session gets: the archive travels in the wake op itself.
        woken = Session()
        try:
            woken.wait_ready()
            state = os.path.join(woken.workdir, ".state.dill")
            done = woken.request("wake", path=state, archive=self.b64(archive))[-1]
            self.assertEqual(done["status"], "succeeded", done)
            summary = json.loads(done["result"])
            self.assertGreaterEqual(summary["extracted"], 2)
            self.assertIn("inc", summary["restored"])
            self.assertFalse(os.path.exists(state))
            events, done = woken.exec("print(inc(x), open('keep/a.txt').read())")
            self.assertEqual(woken.output(events), "42 kept\n")
            # Only regular files and directories inside /work, as for extract; the namespace is left alone.
            bad = io.BytesIO()
            with tarfile.open(fileobj=bad, mode="w:gz") as tar:
                info = tarfile.TarInfo("../escape.txt")
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
            done = woken.request("wake", path=state, archive=self.b64(bad.getvalue()))[-1]
            self.assertEqual(done["status"], "failed")
            self.assertIn("escape", done["error"]["value"])
            self.assertFalse(os.path.exists(os.path.join(woken.tmp, "escape.txt")))
            events, _ = woken.exec("print(x)")
            self.assertEqual(woken.output(events), "41\n")
        finally:
            woken.close()

    def test_fileops_ignores_user_site_and_python_env(self):
        # HOME is the work dir in the container: code there must not run inside fileops.py
        site = os.path.join(self.s.workdir, "plant")
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write("open(__import__('os').environ['SESSIONBOX_WORKDIR'] + '/pwned', 'w')\n")
        proc = subprocess.run(
            [PYTHON, "-I", "-S", "-B", os.path.join(RUNNER, "fileops.py")], input=b'{"op": "file_list"}\n',
            capture_output=True, timeout=30,
            env=dict(os.environ, SESSIONBOX_WORKDIR=self.s.workdir, PYTHONPATH=site, HOME=self.s.workdir),
        )
        self.assertEqual(json.loads(proc.stdout)["ev"], "file_list")
        self.assertFalse(os.path.exists(os.path.join(self.s.workdir, "pwned")))
        shutil.rmtree(site)


if __name__ == "__main__":
    unittest.main()
