"""Worker log lines on stderr: `2026-11-27T10:00:00Z [worker-id] message`."""

from __future__ import annotations

import sys
import time

from queuectl.timeutil import iso

_stamp_second = -1
_stamp_text = ""


def _now_text() -> str:
    """The current second as ISO 8601, formatted once per second: a busy worker writes two
    lines per job, and formatting each time cost more than writing."""
    global _stamp_second, _stamp_text
    second = int(time.time())
    if second != _stamp_second:
        _stamp_second, _stamp_text = second, iso(second) or ""
    return _stamp_text


def log(who: str, message: str) -> None:
    try:
        sys.stderr.write(f"{_now_text()} [{who}] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed terminal must not kill a worker
        pass
