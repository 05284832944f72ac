"""Peer queues for figure 1: Huey (SqliteHuey, process workers), task-spooler and RQ.

Each peer drains the same number of pre-enqueued `sh -c true` jobs as queuectl; the clock runs
from starting its consumer (or opening its slots) until the last job has finished, like
`queuectl worker start --burst`, which includes starting the workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from common import Bench, stop_process, wait_until

HUEY_APP = '''\
import os
import subprocess

from huey import SqliteHuey

huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"], results=False)
_COUNTER = os.environ["BENCH_HUEY_COUNTER"]


@huey.task()
def run_true():
    subprocess.run(["sh", "-c", "true"], check=True)
    # One byte per finished task: the harness watches the file size, not the queue.
    fd = os.open(_COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b".")
    os.close(fd)
'''


def huey_unavailable(bench: Bench) -> str | None:
    done = subprocess.run([bench.python, "-c", "import huey"], env=bench.env(),
                          capture_output=True)
    return None if done.returncode == 0 else "not installed (pip install huey)"


def huey_drain(bench: Bench, jobs: int, workers: int) -> float:
    folder = bench.fresh_dir("huey")
    with open(os.path.join(folder, "bench_huey_app.py"), "w") as f:
        f.write(HUEY_APP)
    counter = os.path.join(folder, "done")
    env = bench.env(BENCH_HUEY_DB=os.path.join(folder, "huey.db"), BENCH_HUEY_COUNTER=counter)
    env["PYTHONPATH"] = folder
    subprocess.run(
        [bench.python, "-c", "import bench_huey_app as app\n"
         f"for _ in range({jobs}): app.run_true()"],
        env=env, cwd=folder, check=True,
    )
    start = time.perf_counter()
    consumer = subprocess.Popen(
        [bench.python, "-m", "huey.bin.huey_consumer", "bench_huey_app.huey",
         "-w", str(workers), "-k", "process", "-q"],
        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        finished = wait_until(lambda: _size(counter) >= jobs, timeout=jobs * 0.05 + 30,
                              step=0.002)
        elapsed = time.perf_counter() - start
    finally:
        stop_process(consumer)
    if not finished:
        raise RuntimeError(f"huey ran {_size(counter)} of {jobs} tasks before the deadline")
    return elapsed


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# RQ's default worker forks a work horse for every job: 500 jobs already take seconds a round.
RQ_MAX_JOBS = 500
RQ_APP = '''\
import subprocess


def run_true():
    subprocess.run(["sh", "-c", "true"], check=True)
'''
RQ_ENQUEUE = '''\
import sys
from redis import Redis
from rq import Queue
import bench_rq_app as app
url, name, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = Redis.from_url(url)
queue = Queue(name, connection=conn)
with conn.pipeline() as pipe:
    queue.enqueue_many([Queue.prepare_data(app.run_true, result_ttl=0) for _ in range(jobs)],
                       pipeline=pipe)
    pipe.execute()
'''
RQ_CHECK_AND_DELETE = '''\
import sys
from redis import Redis
from rq import Queue
conn = Redis.from_url(sys.argv[1])
queue = Queue(sys.argv[2], connection=conn)
left = len(queue) + queue.failed_job_registry.count + queue.started_job_registry.count
queue.delete(delete_jobs=True)
for key in conn.scan_iter(f"rq:queue:{sys.argv[2]}:*"):  # RQ's bookkeeping, a day's TTL
    conn.delete(key)
print(left)
'''


def rq_unavailable(bench: Bench) -> str | None:
    done = subprocess.run([bench.python, "-c", "import rq, redis, sys; "
                           "redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping()",
                           REDIS_URL], env=bench.env(), capture_output=True, text=True)
    if done.returncode == 0:
        return None
    if "ModuleNotFoundError" in done.stderr:
        return "not installed (pip install rq)"
    return f"n/a (no Redis server at {REDIS_URL}; BENCH_REDIS_URL names another)"


def rq_drain(bench: Bench, jobs: int, workers: int) -> float:
    """`rq worker --burst` processes, RQ's default worker class (a forked work horse per
    job), on a queue of their own in the machine's Redis, deleted afterwards; the clock runs
    from starting the workers until the last has exited."""
    folder = bench.fresh_dir("rq")
    with open(os.path.join(folder, "bench_rq_app.py"), "w") as f:
        f.write(RQ_APP)
    env = bench.env()
    env["PYTHONPATH"] = folder
    name = f"queuectl-bench-{os.getpid()}-{time.monotonic_ns()}"
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run([bench.python, "-c", RQ_ENQUEUE, REDIS_URL, name, str(jobs)],
                       env=env, cwd=folder, check=True)
        start = time.perf_counter()
        procs += [subprocess.Popen([bench.python, "-m", "rq.cli", "worker", "--burst", "--quiet",
                                    "--url", REDIS_URL, name], env=env, cwd=folder,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True) for _ in range(workers)]
        for proc in procs:
            proc.wait(timeout=jobs * 0.1 + 60)
        elapsed = time.perf_counter() - start
    finally:
        for proc in procs:  # still running only when the wait above ran out
            stop_process(proc)
        left = subprocess.run([bench.python, "-c", RQ_CHECK_AND_DELETE, REDIS_URL, name],
                              env=env, cwd=folder, capture_output=True, text=True)
    if left.returncode != 0 or left.stdout.strip() != "0":
        raise RuntimeError(f"rq left jobs not done (queued, failed or started): "
                           f"{left.stdout.strip() or left.stderr.strip()[-200:]}")
    return elapsed


def tsp_unavailable(bench: Bench) -> str | None:
    if shutil.which("tsp") is None:
        return "not installed (apt-get install task-spooler)"
    return None


# Each queued tsp job is a waiting client process holding a socket to the server, whose
# select() stops accepting near 1,024 descriptors: 2,000 queued jobs hang the queue.
TSP_MAX_QUEUED = 900


def tsp_drain(bench: Bench, jobs: int, slots: int) -> float:
    """task-spooler runs jobs as soon as they are queued; so a blocker job holds the only
    slot while the jobs are queued, and the clock starts when the slots open."""
    folder = bench.fresh_dir("tsp")
    env = dict(os.environ, TS_SOCKET=os.path.join(folder, "socket"), TMPDIR=folder,
               TS_MAXFINISHED=str(jobs + 10))

    def tsp(*args: str) -> str:
        return subprocess.run(["tsp", *args], env=env, check=True, capture_output=True,
                              text=True, timeout=120).stdout

    fifo = os.path.join(folder, "release")
    os.mkfifo(fifo)
    try:
        tsp("-S", "1")
        tsp("-n", "sh", "-c", f"read line < {fifo}")
        lines = os.path.join(folder, "lines")
        with open(lines, "w") as f:
            f.write("x\n" * jobs)
        with open(lines) as f:  # queued 4 at a time: each tsp call is a process
            subprocess.run(["xargs", "-P4", "-I{}", "tsp", "-n", "sh", "-c", "true"],
                           stdin=f, env=env, check=True, capture_output=True, timeout=120)
        last = max(int(line.split()[0]) for line in tsp("-l").splitlines()[1:])
        start = time.perf_counter()
        tsp("-S", str(slots))
        with open(fifo, "w") as release:
            release.write("go\n")
        tsp("-w", str(last))
        while True:  # the last job may finish before a slower one started just before it
            running = [line.split()[0] for line in tsp("-l").splitlines()[1:]
                       if " running " in f" {line} " or " queued " in f" {line} "]
            if not running:
                break
            for job_id in running:
                subprocess.run(["tsp", "-w", job_id], env=env, capture_output=True,
                               timeout=120)
        elapsed = time.perf_counter() - start
        finished = sum(1 for line in tsp("-l").splitlines()[1:] if " finished " in line)
    finally:
        try:  # release the blocker if it still waits, or it would outlive the server
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
        except OSError:
            pass
        subprocess.run(["tsp", "-K"], env=env, capture_output=True, timeout=30)
    if finished < jobs:
        raise RuntimeError(f"tsp finished {finished} of {jobs + 1} jobs")
    return elapsed
