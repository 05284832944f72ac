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
