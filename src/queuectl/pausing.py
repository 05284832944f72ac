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
    """Whether a job-control shell could continue this process group once a stop signal has
    stopped it, i.e. whether the group is not "orphaned": some member's parent is in another
    group of the same session. That member is looked for up this process's ancestry, through
    the members that started us (a script or `time` around `worker start`, in our group) to the
    first ancestor outside the group: the shell that started the job, in the same session; a
    service manager, or whatever ran `setsid`, in another."""
    group, session = os.getpgrp(), os.getsid(0)
    pid = os.getpid()
    try:
        for _ in range(64):  # ancestry is short; the bound only guards against a cycle in /proc
            parent = _parent_of(pid)
            if parent <= 0:
                return False
            if os.getpgid(parent) != group:
                return os.getsid(parent) == session
            pid = parent
    except (OSError, ValueError):  # an ancestor gone meanwhile: nobody to continue us there
        return False
    return False


def _parent_of(pid: int) -> int:
    if pid == os.getpid():
        return os.getppid()
    with open(f"/proc/{pid}/stat") as f:  # "pid (comm) state ppid ...", comm may hold spaces
        return int(f.read().rsplit(")", 1)[1].split()[1])
