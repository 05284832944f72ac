"""Output capture and `logs`: interleaving, the head/tail cap, --attempt, --json, -f."""

from __future__ import annotations

import re
import threading
import time

import pytest

from .helpers import assert_refused, rss_kib, stored_output_bytes, wait_until

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
CUT = re.compile(r"\n\[\.\.\. queuectl: (\d+) bytes of output cut here \.\.\.\]\n")


def numbered(start: int, end: int) -> str:
    """Bytes [start, end) of the stream `seq -f %08.0f 0 N` prints: 9 bytes per line."""
    first, last = start // 9, -(-end // 9)
    text = "".join(f"{i:08d}\n" for i in range(first, last))
    return text[start - first * 9 : end - first * 9]


def numbered_job(chunks: int, lines_per_chunk: int, pause: float) -> str:
    """A shell command printing `chunks * lines_per_chunk` numbered lines, pausing between
    chunks so the output comes over a while, as a long job's would."""
    n = lines_per_chunk
    return (f"for i in $(seq 0 {chunks - 1}); do seq -f %08.0f $((i*{n})) $((i*{n}+{n - 1})); "
            f"sleep {pause}; done")


def split_cut(text: str) -> tuple[str, int, str]:
    parts = CUT.split(text)
    assert len(parts) == 3, f"expected exactly one cut marker, found {len(parts) // 2}"
    return parts[0], int(parts[1]), parts[2]


def test_stdout_and_stderr_are_captured_interleaved(q):
    job_id = q.enqueue("echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 0")
    q.burst()
    result = q.logs(job_id)
    assert result.stdout == "out1\nerr1\nout2\nerr2\n"
    assert job_id in result.stderr and "completed" in result.stderr  # the header
    as_json = q.json("logs", job_id)
    assert as_json == {"id": job_id, "run": 1, "state": "completed",
                       "output": "out1\nerr1\nout2\nerr2\n"}


def test_output_limit_keeps_head_and_tail_with_the_cut_count(q):
    q.configure(("output-limit", "1000"))
    total = 1111 * 9
    job_id = q.enqueue("seq -f %08.0f 0 1110")
    q.burst()
    head, cut, tail = split_cut(q.logs(job_id).stdout)
    assert head == numbered(0, 500)
    assert tail == numbered(total - 500, total)
    assert cut == total - 1000
    assert stored_output_bytes(q.db, job_id) == 1000


def test_output_limit_holds_when_the_tail_moves_past_an_earlier_flush(q):
    """The worker stores output about once a second. A chunk stored while the job still ran
    must not stay whole once the tail has moved partly past it."""
    q.configure(("output-limit", "1000"))
    # 2000 bytes, a pause for a flush, then 300 more bytes: head 500, tail 500 of 2300.
    job_id = q.enqueue("seq -f %08.0f 0 221; sleep 1.5; printf '%0300d' 0", "--max-retries", "0")
    q.burst()
    total = 222 * 9 + 300
    head, cut, tail = split_cut(q.logs(job_id).stdout)
    assert len(head) == 500 and len(tail) == 500, (len(head), len(tail))
    assert cut == total - 1000
    assert stored_output_bytes(q.db, job_id) <= 1000


@pytest.mark.slow
def test_50_mb_of_output_is_stored_capped_and_worker_memory_stays_flat(q):
    chunks, lines = 50, 111_111
    total = chunks * lines * 9  # 49,999,950 bytes
    q.start_worker()
    pid = wait_until(q.worker_pids, 10, "the worker to register")[0]
    # Paced over ~8 s so that even a loaded machine samples the worker often enough.
    job_id = q.enqueue(numbered_job(chunks, lines, 0.16))
    q.wait_state(job_id, "processing")
    samples, stored = [], []
    # RSS is sampled on a thread of its own, every 50 ms, so a loaded machine that makes each
    # CLI call slow still yields enough samples.
    running = threading.Event()
    running.set()

    def sample_rss() -> None:
        while running.is_set():
            rss = rss_kib(pid)
            if rss is not None:
                samples.append(rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    try:
        while q.state(job_id) == "processing":
            assert rss_kib(pid) is not None, "the worker process died"
            stored.append(stored_output_bytes(q.db, job_id))
            time.sleep(0.1)
    finally:
        running.clear()
        sampler.join()
    assert max(stored) <= MIB, stored  # the middle is deleted as the job runs, not at the end
    assert q.state(job_id) == "completed"
    assert len(samples) >= 10, samples  # the job ran for seconds; we saw most of it
    assert max(samples) < 60 * 1024, samples
    late = samples[len(samples) // 2 :]
    assert max(late) - min(late) < 4 * 1024, samples  # flat, not growing with the output

    head, cut, tail = split_cut(q.logs(job_id).stdout)
    assert head == numbered(0, len(head))
    assert tail == numbered(total - len(tail), total)
    assert len(head) + cut + len(tail) == total
    assert MIB - 64 * 1024 <= len(head) + len(tail) <= MIB
    assert MIB - 64 * 1024 <= stored_output_bytes(q.db, job_id) <= MIB
    assert q.show(job_id)["history"][0]["outcome"] == "completed"


def _retried_job(q, tmp_path) -> str:
    """A job that prints which run it is and fails its first run."""
    counter = tmp_path / "runs"
    q.configure(("backoff-base", "1"))
    return q.enqueue(f"n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter};"
                     f" echo run $n; echo oops $n >&2; [ $n -ge 2 ]", "--max-retries", "2")


def test_logs_attempt_shows_each_run_of_a_retried_job(q, tmp_path):
    job_id = _retried_job(q, tmp_path)
    q.start_worker()
    q.wait_state(job_id, "completed")
    assert q.logs(job_id, "--attempt", "1").stdout == "run 1\noops 1\n"
    assert q.logs(job_id, "--attempt", "2").stdout == "run 2\noops 2\n"
    latest = q.logs(job_id)
    assert latest.stdout == "run 2\noops 2\n"
    assert "run 2 of 2" in latest.stderr
    first = q.json("logs", job_id, "--attempt", "1")
    assert (first["run"], first["state"], first["output"]) == (1, "completed", "run 1\noops 1\n")
    assert [r["outcome"] for r in q.show(job_id)["history"]] == ["failed", "completed"]
    assert_refused(q.run("logs", job_id, "--attempt", "3"), 2)
    assert_refused(q.run("logs", job_id, "--attempt", "0"), 2)
    assert_refused(q.run("logs", "no-such-job"), 1)
    # A job that has not run yet has no output: not bad input (exit 2), just nothing to show.
    assert_refused(q.run("logs", q.enqueue("true", "--delay", "1h")), 1)


class Follower:
    """`logs -f` in the background, recording when each line arrived."""

    def __init__(self, q, job_id: str):
        self.proc = q.popen("logs", "-f", job_id)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def finish(self, timeout: float) -> tuple[int, float, str]:
        code = self.proc.wait(timeout=timeout)
        ended = time.monotonic()
        self.reader.join(timeout=5)
        stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, ended, stderr


def test_logs_follow_prints_lines_as_they_come_and_exits_0(q):
    job_id = q.enqueue("for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done")
    follower = Follower(q, job_id)  # before the job even started
    try:
        q.start_worker()
        code, ended, stderr = follower.finish(timeout=20)
    finally:
        follower.proc.kill()
    assert code == 0, stderr
    assert [text for _, text in follower.lines] == [f"line {i}" for i in range(1, 7)]
    first_arrived = follower.lines[0][0]
    assert ended - first_arrived > 1.0, "line 1 came only when the job ended: not followed"
    assert q.state(job_id) == "completed"
    assert "completed" in stderr.splitlines()[-1]


def test_logs_follow_goes_across_retries_and_exits_1_unless_completed(q, tmp_path):
    job_id = _retried_job(q, tmp_path)
    failing = q.enqueue("echo giving up; exit 3", "--max-retries", "0")
    retried, dead = Follower(q, job_id), Follower(q, failing)
    try:
        q.start_worker()
        code, _, _ = retried.finish(timeout=20)
        dead_code, _, dead_err = dead.finish(timeout=20)
    finally:
        retried.proc.kill()
        dead.proc.kill()
    assert code == 0
    assert [text for _, text in retried.lines] == ["run 1", "oops 1", "run 2", "oops 2"]
    assert dead_code == 1
    assert [text for _, text in dead.lines] == ["giving up"]
    assert "dead" in dead_err
    assert_refused(q.run("logs", "-f", "--json", job_id), 2)


def test_logs_of_a_running_job_then_cancelled_and_follow_exits_1(q):
    job_id = q.enqueue("echo partial; sleep 30")
    follower = Follower(q, job_id)
    try:
        q.start_worker()
        # Until a worker claims it, the job has no output to show (logs exits 1): wait for
        # the run first, then for its first flushed line.
        q.wait_state(job_id, "processing")
        wait_until(lambda: q.logs(job_id).stdout == "partial\n", 5,
                   "the running job's output so far")
        assert q.state(job_id) == "processing"
        assert q.json("cancel", "--no-wait", job_id) == [{"id": job_id, "state": "cancelling"}]
        q.wait_state(job_id, "cancelled")
        code, _, stderr = follower.finish(timeout=10)
    finally:
        follower.proc.kill()
    assert code == 1
    assert [text for _, text in follower.lines] == ["partial"]
    assert "cancelled" in stderr.splitlines()[-1]
    assert q.logs(job_id).stdout.startswith("partial\n")  # kept after the kill
