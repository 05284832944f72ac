"""Waiting on a condition with a deadline, never sleep-and-hope: the one wait of every test
tier (chaos/ and bench/ are programs of their own and keep theirs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str = "condition",
               interval: float = 0.02) -> T:
    """Return check()'s first truthy value; fail with `what` (and the last value seen) if none
    came within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} "
                                 f"(last value: {value!r})")
        time.sleep(interval)


def asleep_for(pids: list[int], seconds: float) -> bool:
    """Whether none of the processes wakes up for `seconds`: their voluntary context switches
    (each a sleep that ended) stay as they were. An observation window, not a wait for an
    event; use it as wait_until's check until the processes have settled."""
    def wakeups() -> list[int]:
        counts = []
        for pid in pids:
            with open(f"/proc/{pid}/status") as f:
                counts += [int(line.split()[1]) for line in f
                           if line.startswith("voluntary_ctxt_switches:")]
        if len(counts) != len(pids):
            raise AssertionError(f"no voluntary_ctxt_switches for some of {pids}")
        return counts

    before = wakeups()
    time.sleep(seconds)
    return wakeups() == before
