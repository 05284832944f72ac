"""Bounded capture of a job's output: the head and the tail, with a marker for what was cut.

A job may print gigabytes; the worker keeps at most `limit` bytes in memory whatever happens.
"""

from __future__ import annotations


class OutputCapture:
    def __init__(self, limit: int):
        self.limit = max(0, limit)
        self._head_limit = self.limit // 2
        self._tail_limit = self.limit - self._head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self._tail_limit:
            self.tail += chunk
            if len(self.tail) > self._tail_limit:
                del self.tail[: len(self.tail) - self._tail_limit]

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def getvalue(self) -> bytes:
        if not self.dropped:
            return bytes(self.head + self.tail)
        marker = f"\n[... queuectl: {self.dropped} bytes of output cut here ...]\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)

    def last_line(self, width: int = 200) -> str:
        # Uncut output may run its last line from the head into the tail: read both then.
        data = self.tail if self.dropped else self.head + self.tail
        text = bytes(data).decode("utf-8", "replace").strip()
        return text.splitlines()[-1][:width] if text else ""
