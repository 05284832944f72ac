"""Wake up when a file is written: Linux inotify through ctypes (the standard library has no
binding). An idle SQLite worker waits on this instead of asking SQLite every 20 ms whether
another process committed, so it costs nothing while nothing happens and wakes at once when
something does.

Only a hint: the caller still asks SQLite (`PRAGMA data_version`) whether another connection
committed, and polls every poll-seconds anyway, so a missed or spurious event costs latency
at worst, never a job.
"""

from __future__ import annotations

import os

IN_MODIFY = 0x00000002
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


def watch_writes(path: str) -> int | None:
    """A non-blocking descriptor that becomes readable when `path` is written, or None where
    inotify is unavailable (not Linux, no ctypes, out of watches): the caller polls then."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (ImportError, OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
        os.close(fd)
        return None
    return fd


def drain(fd: int) -> None:
    """Read every queued event; what they say does not matter, only that they came."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return
