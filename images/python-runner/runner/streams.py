"""One output stream of a run (stdout or stderr of the kernel)."""

import codecs

from env import now

COALESCE_SECONDS = 0.02
COALESCE_CHARS = 64 << 10


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
