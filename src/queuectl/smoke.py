"""`queuectl smoke-test`: the seed's lifecycle, end to end, in a throw-away database.

Real worker processes, a real job that succeeds and one that fails, retried with exponential
backoff and moved to the DLQ. Exit 0 only if every step behaved as specified.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from queuectl.api import Queue
from queuectl.output import shorten, table
from queuectl.timeutil import iso

DEADLINE_SECONDS = 60.0
BASE, MAX_RETRIES = 2.0, 2  # runs at most 3 times, waiting 2 s then 4 s


def _step(ok: bool, text: str) -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {text}", flush=True)
    return ok


def _worker_command(db: str) -> list[str]:
    return [sys.executable, "-m", "queuectl", "--db", db, "worker", "start", "--count", "2"]


def _child_env() -> dict[str, str]:
    # Works from a bare checkout too: make the package importable in the worker process.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
    return env


def run_smoke_test() -> int:
    with tempfile.TemporaryDirectory(prefix="queuectl-smoke-") as folder:
        db = os.path.join(folder, "queue.db")
        log_path = os.path.join(folder, "workers.log")
        print(f"smoke test in {db}")
        with Queue(db) as queue:
            ok = _run(queue, db, log_path)
        if not ok:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write("worker log:\n" + f.read())
    print("smoke test passed" if ok else "smoke test FAILED")
    return 0 if ok else 1


def _run(queue: Queue, db: str, log_path: str) -> bool:
    queue.config_set("backoff-base", BASE)
    queue.enqueue(id="smoke-ok", command="echo hello from queuectl")
    queue.enqueue(id="smoke-fail", command="echo failing on purpose; exit 3",
                  max_retries=MAX_RETRIES)
    ok = _step(True, "enqueued smoke-ok (echo) and smoke-fail (exit 3, max_retries 2)")

    with open(log_path, "w") as log_file:
        workers = subprocess.Popen(_worker_command(db), stdout=log_file, stderr=log_file,
                                   env=_child_env())
        try:
            ok &= _step(True, f"started 2 workers (pid {workers.pid})")
            deadline = time.monotonic() + DEADLINE_SECONDS
            seen: dict[str, str] = {}
            while time.monotonic() < deadline:
                states = {job_id: queue.get(job_id).state for job_id in ("smoke-ok", "smoke-fail")}
                for job_id, state in states.items():
                    if seen.get(job_id) != state:
                        attempts = queue.get(job_id).attempts
                        print(f"       {job_id}: {state} (attempts {attempts})", flush=True)
                        seen[job_id] = state
                if states == {"smoke-ok": "completed", "smoke-fail": "dead"}:
                    break
                time.sleep(0.1)
            ok &= _step(queue.get("smoke-ok").state == "completed", "smoke-ok completed")
            ok &= _step(queue.get("smoke-fail").state == "dead",
                        "smoke-fail is dead after its retries")
            ok &= _check_backoff(queue)
        finally:
            queue.store.request_stop(0)
            try:
                code = workers.wait(timeout=30)
            except subprocess.TimeoutExpired:
                workers.kill()
                code = workers.wait()
        ok &= _step(code == 0, f"workers stopped gracefully (exit {code})")

    dead = queue.dlq_list()
    ok &= _step([d["id"] for d in dead] == ["smoke-fail"], "the DLQ holds exactly smoke-fail")
    print("\ndead letter queue:")
    print(table(
        [{"id": d["id"], "attempts": d["attempts"], "died": iso(d["died_at"]),
          "command": shorten(d["command"], 40), "error": shorten(d["last_error"], 50)}
         for d in dead],
        [("id", "ID"), ("attempts", "ATTEMPTS"), ("died", "DIED"), ("command", "COMMAND"),
         ("error", "LAST ERROR")],
    ))
    print()
    return bool(ok)


def _check_backoff(queue: Queue) -> bool:
    history = queue.attempts("smoke-fail")
    runs = len(history)
    ok = _step(runs == MAX_RETRIES + 1, f"smoke-fail ran {runs} times (1 run + {MAX_RETRIES} "
               "retries)")
    for number in range(1, len(history)):
        gap = history[number]["started_at"] - history[number - 1]["finished_at"]
        expected = BASE ** number
        # A retry may start a little late (worker poll), never early.
        ok &= _step(expected - 0.05 <= gap <= expected + 2.5,
                    f"retry {number} waited {gap:.2f}s (backoff {BASE:g}^{number} = "
                    f"{expected:g}s)")
    return bool(ok)
