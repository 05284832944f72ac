"""Worker log lines on stderr: `2026-11-27T10:00:00Z [worker-id] message`."""

from __future__ import annotations

import sys
import time

from queuectl.timeutil import iso


def log(who: str, message: str) -> None:
    try:
        sys.stderr.write(f"{iso(time.time())} [{who}] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed terminal must not kill a worker
        pass
