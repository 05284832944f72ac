"""Throughput, latency percentiles and failure rate, computed from the attempt history.

Pure functions over rows of the `attempt_history` query (one row per finished run, joined with
its job's queue and command), so the numbers are tested against known histories without a
database or a clock. Percentiles are computed here rather than in SQL: SQLite has no
percentile function, and one implementation for both dialects cannot disagree with itself.

What counts:
- a *finished run* is an attempt whose outcome is a result of the job or of its worker
  (completed, failed, timeout, crashed); `released` (cold stop) and `cancelled` are the
  operator's doing and are left out of throughput and failure rate;
- *failure rate* is failed + timeout + crashed over finished runs;
- *run time* is finished_at - started_at;
- *queue wait* is started_at - the moment the run became due: the job's run_at when the
  history knows it (the latest run of a finished job), else when the run before it ended
  (for a retry, so the backoff counts as waiting), else when the job was created.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from queuectl.models import FINISHED_OUTCOMES

FINISHED = FINISHED_OUTCOMES
FAILURES = FINISHED_OUTCOMES - {"completed"}
WINDOWS = (1, 5, 15)  # minutes, as in a load average


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): always one of the values, never interpolated,
    so p95 of a handful of runs is a run that happened. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def wait_seconds(row: dict) -> float:
    due = row.get("due_at")
    if due is None or due > row["started_at"]:
        due = row.get("ready_at")
    if due is None:
        return 0.0
    return max(0.0, row["started_at"] - due)


def run_seconds(row: dict) -> float:
    return max(0.0, row["finished_at"] - row["started_at"])


def summarize(rows: Iterable[dict], seconds: float) -> dict:
    """Figures for the runs in `rows` over a window of `seconds`."""
    finished = [r for r in rows if r["outcome"] in FINISHED]
    failed = sum(1 for r in finished if r["outcome"] in FAILURES)
    waits = [wait_seconds(r) for r in finished]
    runs = [run_seconds(r) for r in finished]
    return {
        "runs": len(finished),
        "completed": len(finished) - failed,
        "failed": failed,
        "per_minute": round(len(finished) / (seconds / 60), 3) if seconds > 0 else None,
        "failure_rate": round(failed / len(finished), 4) if finished else None,
        "wait_p50": _round(percentile(waits, 50)),
        "wait_p95": _round(percentile(waits, 95)),
        "run_p50": _round(percentile(runs, 50)),
        "run_p95": _round(percentile(runs, 95)),
    }


def compute(rows: Sequence[dict], since: float, until: float) -> dict:
    """The whole report: totals, then the same figures per queue and per command."""
    rows = [r for r in rows if since <= r["finished_at"] <= until]
    seconds = until - since
    return {
        "since": since,
        "until": until,
        "total": summarize(rows, seconds),
        "queues": {k: summarize(v, seconds) for k, v in _group(rows, "queue").items()},
        "commands": {k: summarize(v, seconds) for k, v in _group(rows, "command").items()},
    }


def count_total(report: dict, since: float, finished: int, failed: int) -> None:
    """Widen a report of the newest runs of a window to the whole window from `since`: its
    total's counts are the window's, counted (its percentiles stay those of the runs read,
    as do the figures per queue and per command)."""
    report["since"] = since
    seconds = report["until"] - since
    report["total"].update(
        runs=finished, completed=finished - failed, failed=failed,
        per_minute=round(finished / (seconds / 60), 3) if seconds > 0 else None,
        failure_rate=round(failed / finished, 4) if finished else None)


def per_minute(finished: dict[int, tuple[int, int]]) -> dict:
    """Finished runs per minute over windows of whole minutes, from their counts:
    {minutes: (finished, failed)} -> {'1m': 2.0, '5m': ...}. `status` counts the last 1, 5
    and 15 minutes (WINDOWS, as in a load average) with JobStore.finished_in_windows."""
    return {f"{minutes}m": round(finished[minutes][0] / minutes, 3) for minutes in finished}


def _group(rows: Iterable[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    return dict(sorted(groups.items()))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def chart_start(now: float, minutes: int = 30) -> int:
    """The first minute (epoch seconds / 60) of a chart of the last `minutes` whole minutes,
    the current one last."""
    return math.floor(now / 60) + 1 - minutes


def series(by_minute: dict[int, tuple[int, int]], now: float, minutes: int = 30) -> list[dict]:
    """Finished and failed runs in each of the last `minutes` whole minutes, oldest first:
    the dashboard's throughput chart, from the counts kept per minute
    (JobStore.finished_by_minute(chart_start(...))). A minute is [start, start + 60)."""
    first = chart_start(now, minutes)
    chart = []
    for minute in range(first, first + minutes):
        runs, failed = by_minute.get(minute, (0, 0))
        chart.append({"t": minute * 60, "runs": runs, "failed": failed})
    return chart
