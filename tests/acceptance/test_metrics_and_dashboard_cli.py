"""`queuectl metrics` (printed once, and served on /metrics) and `queuectl dashboard`'s refusals."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_printed(cli):
    assert cli("enqueue", '{"id": "a", "command": "true", "queue": "q1"}').returncode == 0
    done = cli("metrics")
    assert done.returncode == 0, done.stderr
    jobs = _families(done.stdout)["queuectl_jobs"]
    assert {(s.labels["queue"], s.labels["state"]): s.value for s in jobs.samples}[
        "q1", "pending"] == 1


def test_metrics_served_until_ctrl_c(cli):
    proc = cli.popen("metrics", "--port", "0")
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            assert time.monotonic() < deadline, "no 'metrics on' line"
            line = proc.stderr.readline()
            assert line, "metrics exited early"
            found = re.search(r"(http://\S+/metrics)", line)
            url = found and found.group(1)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert "queuectl_workers_alive" in _families(body)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_dashboard_refuses_a_public_bind_without_a_token(cli):
    done = cli("dashboard", "--host", "0.0.0.0", "--port", "1", env={
        "QUEUECTL_DASHBOARD_TOKEN": ""})
    assert done.returncode == 2
    assert "--token" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    short = cli("dashboard", "--token", "abc", "--port", "1")
    assert short.returncode == 2 and "at least 8" in short.stderr
