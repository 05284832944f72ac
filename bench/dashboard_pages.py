"""The dashboard's pages, timed over HTTP against a real `queuectl dashboard` (figure 6).

A page's time is the wall time of one GET, from opening the connection to the last byte of
the body, as a browser's refresh or a Prometheus scrape pays it; the server is started once
per queue and warmed with one request per page first.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from common import Bench, free_port

TOKEN = "bench-dashboard-token"
# Every page a person opens, the search (which pages through windows of jobs), a job's own
# page, and /metrics, the Prometheus scrape the dashboard serves too. {job} is a pending job.
PAGES = ("/", "/jobs", "/jobs?state=pending", "/jobs?state=completed",
         "/jobs?q=no-such-command", "/jobs?queue=no-such-queue", "/jobs/{job}", "/dlq",
         "/workers", "/metrics")


def has_web_extra(bench: Bench) -> bool:
    done = subprocess.run([bench.python, "-c", "import starlette, uvicorn, jinja2"],
                          env=bench.env(), capture_output=True)
    return done.returncode == 0


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


@contextmanager
def dashboard(bench: Bench, db: str) -> Iterator[str]:
    """A `queuectl dashboard` on `db`; yields its base URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(bench.cli_argv(db, "dashboard", "--port", str(port),
                                           "--token", TOKEN),
                            env=bench.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(base + "/api/overview")
                break
            except OSError:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(
                        f"the dashboard exited {proc.returncode}: {err[-500:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not answer within 30 s") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def page_times(bench: Bench, db: str, samples: int) -> dict[str, list[float]]:
    """Seconds per GET of each page in PAGES, `samples` each, the pages interleaved."""
    with dashboard(bench, db) as base:
        pending = json.loads(_get(base + "/api/jobs?state=pending"))["rows"]
        job = pending[0]["id"] if pending else "none"
        urls = {page: base + page.format(job=job) for page in PAGES}
        for url in urls.values():
            _get(url)  # warm: templates compiled, the file's pages cached
        times: dict[str, list[float]] = {page: [] for page in PAGES}
        for _ in range(samples):
            for page, url in urls.items():
                start = time.perf_counter()
                _get(url)
                times[page].append(time.perf_counter() - start)
    return times
