"""Workers of one SQLite queue take turns at its write lock, waking when the turn is free.

SQLite's write lock cannot be waited on: a writer that finds it taken can only try again
later. Workers used to poll with growing pauses (sqlite.py, _while_busy), and when two workers
both want the lock all the time, a poller that wakes late leaves the lock idle, or sleeps
through the moment it was free (DECISIONS.md §33). So a worker's transaction first takes a
`flock` on the queue's journals folder, which the kernel hands to the next waiter the moment
its holder lets go, and only then asks SQLite for the write lock, which is then nearly always
free at once.

The flock is a queue to wait in, not a lock anything relies on: SQLite's own lock still
decides who writes, so a process that skips the flock (the CLI, another tool, an older
queuectl) is as safe as before, and any miss here costs speed, never correctness.

What must never happen is a turn held by no running transaction: every waiter would sleep
forever. The kernel drops a flock when the last descriptor of it closes, so:
- the descriptor is close-on-exec: a job's command never holds it;
- a forked child closes its copy at once (os.register_at_fork): a worker killed in the middle
  of a transaction leaves no child holding its turn;
- one descriptor per folder per process, shared by its connections: a second connection of
  the same process, opened while the first is in a transaction, finds the turn its own
  rather than waiting on itself.
"""

from __future__ import annotations

import fcntl
import os

_descriptors: dict[tuple[int, int], int] = {}  # this process's: (st_dev, st_ino) -> fd


class WriteTurns:
    """The turns of the queue whose workers share `folder` (created if missing, 0700)."""

    __slots__ = ("folder", "_key")

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
        self._key = (info.st_dev, info.st_ino)
        self._descriptor()

    def take(self) -> None:
        """Wait for the turn. No timeout: the holder is a transaction that is running SQL,
        or a process that died and so let go, or one that is stopped, during which SQLite's
        own lock would keep everyone waiting too."""
        fcntl.flock(self._descriptor(), fcntl.LOCK_EX)

    def give(self) -> None:
        fcntl.flock(self._descriptor(), fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        fd = _descriptors.get(self._key)
        if fd is None:  # first use in this process, or first since a fork
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            _descriptors[self._key] = fd
        return fd


def _forget_after_fork() -> None:
    """In a forked child: close the parent's descriptors, so that a turn the parent holds ends
    with the parent's transaction or death, whatever the child does. Closing a copy does not
    release the parent's flock; the child opens its own if it writes."""
    for fd in _descriptors.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _descriptors.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
