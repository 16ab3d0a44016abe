"""One execution: its caps, its notes, its figures and its usage samples. The kernel runs user
code, so its control messages are checked here, not trusted: user code can write to fd 4
itself and bypass the kernel's own figure caps."""

import base64
import binascii

from env import now
from streams import Stream

SAMPLE_SECONDS = 0.02
MAX_FIGURE_BYTES_PER_RUN = 64 << 20
MAX_NOTES = 100
MAX_NOTE_CHARS = 2000
MAX_ERROR_CHARS = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
        self.done = None  # the last "done" line on the control pipe
        self.grace_deadline = None
        self.notes = []
        self.before = None
        self.started_at = None
        self.cpu0 = self.cpu_last = self.oom0 = self.pids0 = None
        self.peak_memory = None
        self.next_sample = 0.0
        self.max_figures = req["maxFigures"]
        self.max_figure_pixels = req["maxFigurePixels"]
        self.max_figure_bytes = req["maxFigureBytes"]
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
        if size > self.max_figure_bytes:
            self.note(f"figure {index!r} skipped: {size} bytes is over the {self.max_figure_bytes} byte cap per figure")
            return None
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


def clean_error(error):
    """The kernel's error object, as strings of bounded size (user code can forge it)."""
    if not isinstance(error, dict):
        return None if error is None else {"name": "Error", "value": "", "traceback": ""}
    return {k: str(error.get(k) or "")[:MAX_ERROR_CHARS] for k in ("name", "value", "traceback")}
