"""`queuectl status` (counts, workers, recent figures; --watch) and `queuectl stats`.

Kept out of cli.py so that the CLI module stays parsing plus one-liners; the figures come
from stats.py, which knows nothing of databases or terminals.
"""

from __future__ import annotations

import sys
import time

from queuectl import stats
from queuectl.cli import open_queue  # opens without creating: these commands only look
from queuectl.errors import InputError
from queuectl.output import message, print_json, shorten, table
from queuectl.store.jobstore import WORKER_PAUSED, WORKER_STOPPING
from queuectl.timeutil import ago, iso, now, parse_duration

RECENT = 15 * 60  # status shows figures over the last 15 minutes (its longest window)
# Percentiles of wait and run time come from the newest runs of the window, at most this many:
# a read of every run of a busy window (a million in 15 minutes at 1,000 runs a second) took
# most of a second. The counts are exact whatever the window holds (run_minutes).
PERCENTILE_RUNS = 5_000
# `stats` reads at most this many runs of its window, newest first, for its figures per queue
# and per command and its percentiles; the window's total is counted whatever it holds.
STATS_RUNS = 200_000
CLEAR = "\033[H\033[2J"  # cursor home, clear screen: enough on every terminal we meet


def status_data(queue, current: float) -> dict:
    """Everything `status` shows, as the JSON document `status --json` prints."""
    counts = queue.counts()
    by_queue = queue.counts_by_queue()
    workers = queue.workers()
    finished = queue.store.finished_in_windows(current, [m * 60 for m in stats.WINDOWS])
    runs, failed = finished[RECENT]
    newest = stats.summarize(queue.history(current - RECENT, PERCENTILE_RUNS), RECENT)
    return {
        "database": queue.location,
        "counts": counts,
        "queues": by_queue,
        "throughput_per_minute": stats.per_minute(
            {int(seconds // 60): found for seconds, found in finished.items()}),
        "last_15m": {
            "runs": runs, "failed": failed,
            "failure_rate": round(failed / runs, 4) if runs else None,
            **{k: newest[k] for k in ("wait_p50", "wait_p95", "run_p50", "run_p95")},
            "percentiles_of_runs": newest["runs"]},
        "workers": [
            {
                "id": w["id"],
                "host": w["host"],
                "pid": w["pid"],
                "current_job": w["current_job"],
                "job_running_for": None if w["job_started_at"] is None
                else round(current - w["job_started_at"], 1),
                "last_heartbeat": iso(w["heartbeat_at"]),
                "stopping": w["stop_requested"] == WORKER_STOPPING,
                "paused": w["stop_requested"] == WORKER_PAUSED,
            }
            for w in workers
        ],
        "_raw_workers": workers,
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_status(data: dict, current: float) -> str:
    lines = [f"database: {data['database']}", ""]
    states = [s for s, n in data["counts"].items()]
    queue_rows = [{"queue": q, **{s: n or None for s, n in c.items()}, "total": sum(c.values())}
                  for q, c in data["queues"].items()]
    if len(queue_rows) != 1:
        queue_rows.append({"queue": "(all)", **{s: n or None for s, n in data["counts"].items()},
                           "total": sum(data["counts"].values())})
    columns = [("queue", "QUEUE")] + [(s, s.upper()) for s in states] + [("total", "TOTAL")]
    lines.append(table(queue_rows, columns, right=[*states, "total"]))
    tp, last = data["throughput_per_minute"], data["last_15m"]
    lines += [
        "",
        "finished runs/min: " + "  ".join(f"{k} {v:g}" for k, v in tp.items()),
        f"last 15m: {last['runs']} runs, failure rate {_rate(last['failure_rate'])}, "
        f"wait p50 {_seconds(last['wait_p50'])} p95 {_seconds(last['wait_p95'])}, "
        f"run p50 {_seconds(last['run_p50'])} p95 {_seconds(last['run_p95'])}"
        + (f" (of the newest {last['percentiles_of_runs']} runs)"
           if last["percentiles_of_runs"] < last["runs"] else ""),
        "",
    ]
    rows = data["workers"]
    if not rows:
        lines.append("workers: none running (start some with: queuectl worker start --count 2)")
        return "\n".join(lines)
    shown = []
    for row, w in zip(rows, data["_raw_workers"], strict=True):
        shown.append({
            **row,
            "for": None if w["job_started_at"] is None else ago(current - w["job_started_at"]),
            "beat": ago(current - w["heartbeat_at"]) + " ago",
            "note": "stopping" if row["stopping"] else "paused" if row["paused"] else "",
        })
    lines.append(table(shown, [("id", "WORKER"), ("host", "HOST"), ("pid", "PID"),
                               ("current_job", "JOB"), ("for", "RUNNING FOR"),
                               ("beat", "HEARTBEAT"), ("note", "")]))
    return "\n".join(lines)


def _snapshot(args) -> tuple[dict, float]:
    with open_queue(args) as queue:  # a fresh connection each time: short reads, no held snapshot
        current = now()
        return status_data(queue, current), current


def cmd_status(args) -> int:
    if args.recount:
        with open_queue(args) as queue:
            counted = queue.recount()
        message(f"recounted: {counted} job(s)")
    if not args.watch:
        data, current = _snapshot(args)
        if args.json:
            data.pop("_raw_workers")
            print_json(data)
        else:
            print(render_status(data, current))
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            data, current = _snapshot(args)
            if args.json:
                data.pop("_raw_workers")
                import json

                sys.stdout.write(json.dumps(data) + "\n")  # one document per line
            else:
                text = render_status(data, current)
                # Only a terminal gets the escape codes; a pipe or a file gets plain frames.
                sys.stdout.write(CLEAR + text + "\n" if tty else text + "\n\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one leaves --watch: not an error


def stats_report(queue, window: float, until: float) -> dict:
    """`stats --json`'s document: stats.compute over the runs of the window. When it held
    more than STATS_RUNS, the newest STATS_RUNS give the figures per queue and per command
    (their rates over the time those runs span) and the percentiles, and the total is counted
    (run_minutes). `runs_read` says how many runs were read, and `runs_read_since` from when
    (None: the whole window)."""
    since = until - window
    rows = queue.history(since, STATS_RUNS)
    if len(rows) < STATS_RUNS:
        return {**stats.compute(rows, since, until), "runs_read": len(rows),
                "runs_read_since": None}
    read_since = rows[-1]["finished_at"]  # newest first
    report = stats.compute(rows, read_since, until)
    finished, failed = queue.store.finished_in_windows(until, [window])[window]
    stats.count_total(report, since, finished, failed)
    return {**report, "runs_read": len(rows), "runs_read_since": read_since}


def cmd_stats(args) -> int:
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None
    if window <= 0:
        raise InputError("--since must be longer than 0s")
    with open_queue(args) as queue:
        report = stats_report(queue, window, now())
    if args.json:
        print_json({**report, "since": iso(report["since"]), "until": iso(report["until"]),
                    "runs_read_since": iso(report["runs_read_since"])})
        return 0
    total = report["total"]
    print(f"last {args.since} ({iso(report['since'])} to {iso(report['until'])}): "
          f"{total['runs']} finished runs, {total['per_minute']:g}/min, "
          f"failure rate {_rate(total['failure_rate'])}")
    if not total["runs"]:
        return 0
    if report["runs_read"] < total["runs"]:
        print(f"per queue, per command and percentiles: the newest {report['runs_read']:,} "
              f"runs (finished since {iso(report['runs_read_since'])})")
    columns = [("name", "{}"), ("runs", "RUNS"), ("per_minute", "PER MIN"),
               ("failure_rate", "FAILED"), ("wait_p50", "WAIT P50"), ("wait_p95", "WAIT P95"),
               ("run_p50", "RUN P50"), ("run_p95", "RUN P95")]
    for key, title in (("queues", "QUEUE"), ("commands", "COMMAND")):
        rows = [{**s, "name": shorten(name, 40), "failure_rate": _rate(s["failure_rate"]),
                 **{k: _seconds(s[k]) for k in ("wait_p50", "wait_p95", "run_p50", "run_p95")}}
                for name, s in report[key].items()]
        print()
        print(table(rows, [(k, h.format(title)) for k, h in columns],
                    right=[k for k, _ in columns[1:]]))
    return 0
