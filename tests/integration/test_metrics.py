"""/metrics content on each backend, parsed back with prometheus_client's own text parser:
if the exposition were malformed, the parser would refuse it."""

from __future__ import annotations

import os
import time

import pytest

from queuectl.api import Queue
from queuectl.models import NewJob
from queuectl.store import WorkerIdentity

from .common import T0, A

if os.environ.get("CI") == "true":
    import prometheus_client  # noqa: F401  (CI installs the extra: fail, never skip)
else:
    pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from queuectl import metrics  # noqa: E402

NOW = T0 + 60


def _scrape(db) -> dict:
    collector = metrics.QueueCollector(lambda: Queue(db, create=False), clock=lambda: NOW)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family, name=None) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
            if name is None or s.name == name}


def test_metrics_from_a_known_history(db):
    with Queue(db) as queue:
        store = queue.store
        store.config_set("backoff-jitter", "0")
        store.enqueue([NewJob(id="ok", command="true", queue="build", max_retries=0),
                       NewJob(id="bad", command="false", queue="build", max_retries=0),
                       NewJob(id="waiting", command="true")], T0)
        job = store.claim(A, T0 + 2, 15.0)
        assert store.complete(job, T0 + 3)                     # waited 2 s, ran 1 s
        job = store.claim(A, T0 + 10, 15.0)
        assert store.fail(job, T0 + 40, store.settings(), 1, "no") == "dead"  # waited 10, ran 30
        # A worker on another host: its heartbeat is all anyone can know of it.
        store.register_worker(WorkerIdentity(id="w", host="elsewhere", pid=1), time.time())
    families = _scrape(db)

    jobs = _samples(families["queuectl_jobs"])
    assert jobs["queuectl_jobs", (("queue", "build"), ("state", "completed"))] == 1
    assert jobs["queuectl_jobs", (("queue", "build"), ("state", "dead"))] == 1
    assert jobs["queuectl_jobs", (("queue", "default"), ("state", "pending"))] == 1
    assert families["queuectl_jobs"].type == "gauge"

    attempts = families["queuectl_attempts"]
    assert attempts.type == "counter"
    assert _samples(attempts) == {
        ("queuectl_attempts_total", (("outcome", "completed"), ("queue", "build"))): 1,
        ("queuectl_attempts_total", (("outcome", "failed"), ("queue", "build"))): 1,
    }
    assert _samples(families["queuectl_failures"]) == {
        ("queuectl_failures_total", (("queue", "build"),)): 1}

    run = families["queuectl_recent_run_seconds"]
    assert run.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in run.samples if s.name.endswith("_bucket")}
    assert (buckets["0.5"], buckets["1"], buckets["10"], buckets["30"], buckets["+Inf"]) == (
        0, 1, 1, 2, 2)
    wait = families["queuectl_recent_wait_seconds"]
    buckets = {s.labels["le"]: s.value for s in wait.samples if s.name.endswith("_bucket")}
    assert (buckets["1"], buckets["2.5"], buckets["5"], buckets["10"]) == (0, 1, 1, 2)
    assert _samples(families["queuectl_recent_run_seconds_gsum"]) == {
        ("queuectl_recent_run_seconds_gsum", (("queue", "build"),)): 31.0}

    assert families["queuectl_workers_alive"].samples[0].value == 1
    # 'waiting' has been due since T0; the clock says T0 + 60.
    assert families["queuectl_oldest_pending_job_age_seconds"].samples[0].value == 60


def test_metrics_of_an_empty_queue(db):
    families = _scrape(db)
    assert families["queuectl_jobs"].samples == []
    assert families["queuectl_workers_alive"].samples[0].value == 0
    assert families["queuectl_oldest_pending_job_age_seconds"].samples[0].value == 0
