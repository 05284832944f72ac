"""Bounded capture of a job's output: the head and the tail, with the middle cut.

A job may print gigabytes; the worker keeps at most `limit` bytes in memory whatever happens,
and stores at most about that much per run. Bytes are addressed by their offset in the whole
output, so the stored chunks show where a cut was: a gap between two chunks.
"""

from __future__ import annotations


class OutputCapture:
    def __init__(self, limit: int):
        self.limit = max(0, limit)
        self.head_limit = self.limit // 2
        self.tail_limit = self.limit - self.head_limit
        self.head = bytearray()  # bytes [0, len(head))
        self.tail = bytearray()  # bytes [total - len(tail), total), all after the head
        self.total = 0
        self.stored_to = 0  # every byte before this offset was handed out by take_unstored()
        self._tail_chunks: list[tuple[int, int]] = []  # [start, end) handed out after the head

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            if len(chunk) >= self.tail_limit:
                self.tail[:] = chunk[-self.tail_limit :]
            else:
                self.tail += chunk
                if len(self.tail) > self.tail_limit:
                    del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def tail_start(self) -> int:
        return self.total - len(self.tail)

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def mark(self) -> tuple[int, list[tuple[int, int]]]:
        """Where storing stands now; `rewind(mark)` hands the same bytes out again after a
        write that failed (a database hiccup must not turn output into a "cut")."""
        return self.stored_to, list(self._tail_chunks)

    def rewind(self, mark: tuple[int, list[tuple[int, int]]]) -> None:
        self.stored_to, self._tail_chunks = mark[0], list(mark[1])

    def take_unstored(self) -> list[tuple[int, bytes]]:
        """The (offset, bytes) chunks not handed out yet that are still worth keeping."""
        chunks = []
        if self.stored_to < len(self.head):
            chunks.append((self.stored_to, bytes(self.head[self.stored_to :])))
            self.stored_to = len(self.head)
        start = max(self.stored_to, self.tail_start)
        if start < self.total:
            chunks.append((start, bytes(self.tail[start - self.tail_start :])))
            self._tail_chunks.append((start, self.total))
        self.stored_to = self.total
        return chunks

    def take_trim(self) -> tuple[int, tuple[int, bytes] | None]:
        """How to bring the stored chunks back to the head and the tail once the tail moved
        on: delete every chunk after the head that ends by the returned offset, then store the
        returned replacement, if any: the part of the one chunk the tail start fell into that
        is still in the tail. Without it that chunk would stay whole, up to half the limit too
        much."""
        tail_start = self.tail_start
        cut_end, replacement = tail_start, None
        kept = []
        for start, end in self._tail_chunks:
            if end <= tail_start:
                continue
            if start < tail_start:
                cut_end = end
                replacement = (tail_start, bytes(self.tail[: end - tail_start]))
                start = tail_start
            kept.append((start, end))
        self._tail_chunks = kept
        return cut_end, replacement

    def getvalue(self) -> bytes:
        marker = cut_marker(self.dropped) if self.dropped else b""
        return bytes(self.head) + marker + bytes(self.tail)

    def last_line(self, width: int = 200) -> str:
        # Uncut output may run its last line from the head into the tail: read both then.
        data = self.tail if self.dropped else self.head + self.tail
        text = bytes(data).decode("utf-8", "replace").strip()
        return text.splitlines()[-1][:width] if text else ""


def cut_marker(missing: int) -> bytes:
    return f"\n[... queuectl: {missing} bytes of output cut here ...]\n".encode()


def join_chunks(chunks: list[tuple[int, bytes]], start: int = 0) -> bytes:
    """Stored chunks back into one text, with a marker wherever bytes were cut."""
    out = bytearray()
    position = start
    for offset, data in chunks:
        if not data:
            continue
        if offset > position:
            out += cut_marker(offset - position)
        elif offset < position:  # overlap cannot happen, but never print a byte twice
            data = data[position - offset :]
        out += data
        position = max(position, offset + len(data))
    return bytes(out)
