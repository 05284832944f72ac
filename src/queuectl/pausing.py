"""Ctrl-Z pauses `worker start`: running jobs go on and are recorded, no new job starts until
`fg` or `bg` (SIGCONT) resumes it.

Ctrl-Z used to stop the supervisor and every worker where they stood, but not the jobs, which
run in sessions of their own. A stopped worker renews no lease: after `lease-seconds` another
pool on the queue took its job over, killed it and ran it again, and with one pool the busy
worker's renewal raced its sibling's recovery on `fg`. A job that had finished meanwhile stayed
unrecorded for as long as the terminal was paused.

So only the supervisor stops. It catches SIGTSTP, sets the pause in memory it shares with its
workers, and stops itself with the signal's default action, which is what the shell waits to
see before it gives back the prompt. The workers ignore SIGTSTP (and SIGTTOU and SIGTTIN: once
the shell has the terminal, a log line with `stty tostop` set would stop them all the same),
take no job while the pause is set, and keep their running jobs' leases. When the shell
continues the supervisor, it clears the pause and sends its workers SIGCONT to wake the idle
ones.

The pause is a byte in an anonymous shared mapping, not a signal each worker keeps track of:
one process writes it, outside any handler, and a worker reads it before every claim for the
price of a memory read. Signals could not carry it in order: Python runs a handler that
arrives during another one inside it, so a worker's "resume" could land before the "pause" it
followed.

A process group that no shell's job control could continue (`setsid`, a service manager) is
"orphaned", and POSIX has the kernel discard a terminal stop signal there; the supervisor does
the same rather than pause a pool nobody would resume.
"""

from __future__ import annotations

import mmap
import os


class PauseSwitch:
    """Whether the pool is paused, shared by a supervisor and the workers it forks."""

    def __init__(self) -> None:
        self._shared = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED: forked children see writes

    @property
    def paused(self) -> bool:
        return self._shared[0] != 0

    def set(self, paused: bool) -> None:
        self._shared[0] = 1 if paused else 0


def could_be_continued() -> bool:
    """Whether a job-control shell could continue this process once a stop signal stopped it:
    its parent belongs to the same session and another process group, as a shell that started
    it in the foreground or background does. Otherwise the group is orphaned (as far as this
    process tells) and a stop would last until someone sent SIGCONT by hand."""
    parent = os.getppid()
    try:
        return os.getsid(parent) == os.getsid(0) and os.getpgid(parent) != os.getpgrp()
    except OSError:  # the parent is gone: we are an orphan ourselves
        return False
