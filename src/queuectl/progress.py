"""Progress of long operations, on stderr, and only when stderr is a terminal.

A plain carriage-return line rather than a progress library: it costs no import time and
works the same on every terminal; scripts and pipes see nothing.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, min_interval: float = 0.2):
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._min_interval = min_interval
        self._drawn = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < self._min_interval and done != self.total:
            return
        self._last_draw = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        text = f"{self.label} {done}"
        if self.total:
            text += f"/{self.total}"
            if rate > 0 and done < self.total:
                text += f"  {rate:.1f}/s  eta {(self.total - done) / rate:.0f}s"
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False
