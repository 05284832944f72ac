"""The retry rule, pure: `delay = base ** attempts`, and when a failed job is dead instead."""

from __future__ import annotations

# base ** attempts grows without bound: base 2 overflows a float at 1024 attempts (crashing the
# worker while it records the failure), and long before that the due time is past year 9999
# and cannot be shown as a date. A year is far beyond any wait a queue means.
MAX_DELAY_SECONDS = 365 * 86400.0


def backoff_delay(base: float, attempts: int) -> float:
    """Seconds to wait before the next run, after `attempts` charged runs have failed.

    The seed's example with base 2: after the 1st failure 2 s, after the 2nd 4 s, then 8 s.
    """
    try:
        return min(float(base) ** attempts, MAX_DELAY_SECONDS)
    except OverflowError:
        return MAX_DELAY_SECONDS


def jittered(delay: float, jitter: float, draw: float) -> float:
    """Spread a delay by +-jitter (a fraction); `draw` is uniform in [0, 1), passed in so the
    rule stays pure and testable. Jitter keeps many jobs that failed together from retrying
    in lockstep; it is off by default so the seed's 2 s, 4 s, 8 s hold exactly."""
    return delay * (1 - jitter + 2 * jitter * draw)


def is_exhausted(attempts: int, max_retries: int) -> bool:
    """True when a job that has failed `attempts` times has no retry left.

    `max_retries` counts retries after the first run, so a job runs at most max_retries + 1 times.
    """
    return attempts > max_retries
