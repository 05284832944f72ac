"""Prometheus metrics, read from the queue database at scrape time.

A custom collector rather than counters kept in memory: workers are separate processes (often
on other hosts), so no process sees every event; the database does. Each scrape runs a few
short read queries and turns their rows into metric families:

- queuectl_jobs{queue,state}                 gauge: jobs in each state now
- queuectl_attempts_total{queue,outcome}     counter: every run in the history, by outcome
- queuectl_failures_total{queue}             counter: runs that failed, timed out or crashed
- queuectl_recent_run_seconds{queue}         gauge histogram: run time of the runs finished in
- queuectl_recent_wait_seconds{queue}        the last RECENT seconds (the newest RECENT_RUNS of
                                             them), and their queue wait
- queuectl_workers_alive                     gauge: workers heartbeating within a lease
- queuectl_oldest_pending_job_age_seconds    gauge: how long the oldest due job has waited

The counters are runs ever recorded, kept in attempt_counts as runs are recorded (schema 8):
a scrape reads a few rows however long the history, and a purge of old history does not
lower them (Prometheus would read a drop as a reset and count the rest again; DECISIONS.md
§34). The histograms cover a sliding window, not every run since the start, so they are
*gauge* histograms (OpenMetrics' gaugehistogram): rate() over them would be meaningless, and
the type says so. They are of the newest RECENT_RUNS runs of the window: a scrape read every
run of it, most of a second when a million finished in 15 minutes (DECISIONS.md §37); a rate
of runs comes from the counters.

prometheus_client is imported only by the commands that serve or print metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from queuectl import stats
from queuectl.timeutil import now

RECENT = 15 * 60
RECENT_RUNS = 5_000
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class QueueCollector(Collector):
    def __init__(self, open_queue: Callable, clock: Callable[[], float] = now):
        """`open_queue()` returns a Queue (a context manager); one is opened per scrape so a
        scrape holds no connection or snapshot between scrapes."""
        self.open_queue = open_queue
        self.clock = clock

    def collect(self):
        current = self.clock()
        with self.open_queue() as queue:
            by_queue = queue.counts_by_queue()
            totals = queue.store.attempt_totals()
            history = queue.history(current - RECENT, RECENT_RUNS)
            workers = len(queue.workers())
            oldest = queue.store.oldest_due(current)

        jobs = GaugeMetricFamily("queuectl_jobs", "Jobs in each state, per queue",
                                 labels=["queue", "state"])
        for name, counts in by_queue.items():
            for state, n in counts.items():
                jobs.add_metric([name, state], n)
        yield jobs

        attempts = CounterMetricFamily("queuectl_attempts", "Runs recorded in the history, "
                                       "by queue and outcome", labels=["queue", "outcome"])
        failures = CounterMetricFamily("queuectl_failures", "Runs that failed, timed out or "
                                       "lost their worker, per queue", labels=["queue"])
        failed: dict[str, int] = {}
        for row in totals:
            attempts.add_metric([row["queue"], row["outcome"]], row["n"])
            if row["outcome"] in stats.FAILURES:
                failed[row["queue"]] = failed.get(row["queue"], 0) + row["n"]
        for name in sorted({row["queue"] for row in totals}):
            failures.add_metric([name], failed.get(name, 0))
        yield attempts
        yield failures

        finished = [r for r in history if r["outcome"] in stats.FINISHED]
        for metric, measure, what in (
            ("queuectl_recent_run_seconds", stats.run_seconds, "Run time"),
            ("queuectl_recent_wait_seconds", stats.wait_seconds, "Queue wait"),
        ):
            family = GaugeHistogramMetricFamily(
                metric, f"{what} of the runs finished in the last {RECENT // 60} minutes "
                f"(the newest {RECENT_RUNS:,} of them)",
                labels=["queue"])
            for name, rows in _by_queue(finished).items():
                values = [measure(r) for r in rows]
                family.add_metric([name], _buckets(values), sum(values))
            yield family

        yield GaugeMetricFamily("queuectl_workers_alive",
                                "Workers that heartbeat within a lease", value=workers)
        yield GaugeMetricFamily(
            "queuectl_oldest_pending_job_age_seconds",
            "How long the oldest due job has been waiting (0 when none is waiting)",
            value=0.0 if oldest is None else max(0.0, current - oldest))


def _by_queue(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["queue"], []).append(r)
    return groups


def _buckets(values: list[float]) -> list[tuple[str, float]]:
    """Cumulative counts per upper bound, ending with +Inf, as Prometheus expects."""
    return [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in BUCKETS] + [
        ("+Inf", float(len(values)))]


def registry_for(open_queue: Callable) -> CollectorRegistry:
    """A registry holding only the queue's metrics (not this process's own, which say
    nothing about the queue and would differ between the processes serving it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(open_queue))
    return registry


def exposition(open_queue: Callable) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(registry_for(open_queue))


def cmd_metrics(args) -> int:
    """Print the metrics once (for node_exporter's textfile collector, or a look), or serve
    them on /metrics with prometheus_client's own HTTP server."""
    import sys

    from queuectl.api import Queue

    def open_queue():
        return Queue(getattr(args, "db", None), create=False)

    if args.port is None:
        sys.stdout.write(exposition(open_queue).decode())
        return 0
    import time

    from prometheus_client import start_http_server

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"queuectl: serving metrics on {args.host}: anyone who can reach "
                         "it sees queue names and counts\n")
    server, thread = start_http_server(args.port, addr=args.host,
                                       registry=registry_for(open_queue))
    sys.stderr.write(f"queuectl: metrics on http://{args.host}:{server.server_port}/metrics\n")
    try:
        while thread.is_alive():
            time.sleep(1)
    except KeyboardInterrupt:
        server.shutdown()
    return 0
