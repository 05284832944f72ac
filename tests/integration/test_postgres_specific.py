"""What only the PostgreSQL backend has to prove: real processes racing for jobs on one
database, the claim staying on its index, schema creation by many processes at once,
LISTEN/NOTIFY wake-ups, surviving a lost connection, and clear errors without a server."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from conditions import wait_until
from queuectl import sql
from queuectl.config import Settings
from queuectl.errors import DatabaseUnavailable, QueueError
from queuectl.models import NewJob
from queuectl.store import WorkerIdentity, mask_password, open_store
from queuectl.store.jobstore import SCHEMA_VERSION
from queuectl.store.postgres import IDLE_IN_TRANSACTION_TIMEOUT

KILL_OTHERS = ("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


# -P: run with the package from PYTHONPATH, not the checkout's queuectl.py shim in the cwd.
def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-P", "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_together(procs: list[subprocess.Popen]) -> list[str]:
    """Wait until every process says it is ready, then let them all go at once. Returns the
    last line each printed."""
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(out.strip().splitlines()[-1])
    return results


def admin(url: str):
    import psycopg  # only here: the tests that need no server run without psycopg too

    return psycopg.connect(url, autocommit=True)


# -- claims -----------------------------------------------------------------------------------

CLAIMER = """
import json, sys, time
from queuectl.store import WorkerIdentity, mask_password, open_store
store = open_store(sys.argv[1])
me = WorkerIdentity(id=sys.argv[2], host=sys.argv[2], pid=0)
print("ready", flush=True)
sys.stdin.readline()
claimed = []
while (job := store.claim(me, time.time(), 60)) is not None:
    assert store.complete(job, time.time())
    claimed.append(job.id)
print(json.dumps(claimed))
"""


def test_processes_racing_on_one_database_claim_every_job_exactly_once(pg_database):
    store = open_store(pg_database)
    ids = [e.id for e in store.enqueue([NewJob(id=f"j{i}", command="true")
                                        for i in range(400)], time.time())]
    hosts = [f"host-{n}" for n in range(4)]
    results = start_together([spawn(CLAIMER, pg_database, host) for host in hosts])
    claimed_by = {host: json.loads(line) for host, line in zip(hosts, results, strict=True)}
    everything = [job_id for claimed in claimed_by.values() for job_id in claimed]
    assert sorted(everything) == sorted(ids)  # all of them, none twice
    assert sum(1 for claimed in claimed_by.values() if claimed) >= 2, claimed_by  # a real race
    for host, claimed in claimed_by.items():
        for job_id in claimed:
            [attempt] = store.attempts(job_id)
            assert (attempt["host"], attempt["outcome"]) == (host, "completed")
    assert store.counts()["completed"] == 400
    store.close()


def _claim_params() -> dict:
    return {"worker_id": "w", "host": "h", "token": "t", "lease_until": 2e9, "now": 1e9,
            "most": 16}


def _fill_for_explain(store) -> None:
    """Mostly finished jobs and a few ready ones, as in a queue that has run for a while: the
    shape where walking the partial index beats scanning the table."""
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(3000)], 1e9)
    store.db.run_script("UPDATE jobs SET state = 'completed' WHERE seq > 20")


# Both as queuectl leaves a database (it never runs ANALYZE) and with fresh statistics.
@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_the_claim_walks_the_ready_index_on_postgres(pg_database, analyzed):
    store = open_store(pg_database)
    _fill_for_explain(store)
    with admin(pg_database) as conn:
        if analyzed:
            conn.execute("ANALYZE jobs")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + sql.load("postgres")["claim_any"], _claim_params()))
    store.close()
    assert "using jobs_ready" in plan.lower(), plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_a_batch_claim_walks_the_ready_index_when_many_jobs_are_ready(pg_database, analyzed):
    """claim_any_many takes up to 16: with a handful of jobs ready the planner rightly sorts
    that handful (the fill above), but with many ready it must walk jobs_ready, not sort them
    all at every claim. Its rows are then found by primary key."""
    store = open_store(pg_database)
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(50_000)], 1e9)
    with admin(pg_database) as conn:
        if analyzed:
            conn.execute("ANALYZE jobs")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + sql.load("postgres")["claim_any_many"], _claim_params()))
    store.close()
    assert "using jobs_ready on" in plan.lower(), plan
    assert "jobs_pkey" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_a_batch_claim_in_named_queues_walks_each_queue_s_index(pg_database, analyzed):
    """claim_in_queues_many: each served queue sought on jobs_ready_by_queue for its best few,
    never a scan of every ready job (the only sort is of those few per queue)."""
    store = open_store(pg_database)
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="abc"[i % 3])
                   for i in range(30_000)], 1e9)
    with admin(pg_database) as conn:
        if analyzed:
            conn.execute("ANALYZE jobs")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + sql.load("postgres")["claim_in_queues_many"],
            _claim_params() | {"queues": '["a", "b"]'}))
    store.close()
    assert "Index Scan using jobs_ready_by_queue" in plan, plan  # walked, in order
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("claim", ["claim_any", "claim_any_many"])
@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_the_claim_walks_the_ready_index_on_sqlite(sqlite_database, analyzed, claim):
    store = open_store(sqlite_database)
    _fill_for_explain(store)
    store.close()
    conn = sqlite3.connect(sqlite_database)
    if analyzed:
        conn.execute("ANALYZE")
    plan = [row[3] for row in conn.execute(
        "EXPLAIN QUERY PLAN " + sql.load("sqlite")[claim], _claim_params())]
    conn.close()
    assert any("jobs_ready" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort of the ready jobs


# -- schema ---------------------------------------------------------------------------------

OPENER = """
import sys
from queuectl.store import open_store
print("ready", flush=True)
sys.stdin.readline()
open_store(sys.argv[1]).close()
print("ok")
"""


def test_eight_processes_can_create_the_schema_at_once(pg_database):
    results = start_together([spawn(OPENER, pg_database) for _ in range(8)])
    assert results == ["ok"] * 8
    store = open_store(pg_database)
    assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
    store.close()


def test_a_database_holding_other_tables_is_not_taken_over(pg_database):
    with admin(pg_database) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(QueueError, match="is not a queuectl database"):
        open_store(pg_database)
    with admin(pg_database) as conn:  # and nothing was created next to it
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0] == 1


# -- LISTEN/NOTIFY ----------------------------------------------------------------------------


def test_changed_turns_true_within_a_second_of_an_enqueue_elsewhere(pg_database):
    watcher, other = open_store(pg_database), open_store(pg_database)
    watcher.db.changed()  # opens the LISTEN connection
    assert watcher.db.changed() is False  # nothing happened since
    other.enqueue([NewJob(id="a", command="true")], time.time())
    wait_until(watcher.db.changed, 1.0, "changed() turned True")
    assert watcher.db.changed() is False  # reported once
    watcher.close()
    other.close()


def _job_in(store, state: str, settings: Settings) -> None:
    store.enqueue([NewJob(id="a", command="true", max_retries=0 if state == "dead" else 3)], 0)
    if state != "pending":
        job = store.claim(WorkerIdentity("w", "h", 1), 1, 60)
        if state == "dead":
            store.fail(job, 2, settings, 1, "boom")


def _claimed(store):
    return store.claim(WorkerIdentity("w", "h", 1), 3, 60)


SETTINGS = Settings({"lease-seconds": "10"})
# (state to start from, what to do, whether workers must be woken)
OPERATIONS = {
    "enqueue": (None, lambda s: s.enqueue([NewJob(id="b", command="true")], 5), True),
    "dlq retry": ("dead", lambda s: s.dlq_retry(["a"], 5), True),
    "dlq retry --all": ("dead", lambda s: s.dlq_retry_all(5), True),
    "fail with retries left": ("pending", lambda s: s.fail(_claimed(s), 5, SETTINGS, 1, "x"),
                               True),
    "release": ("pending", lambda s: s.release(_claimed(s), 5, "cold stop"), True),
    "recover a lost job": ("processing", lambda s: s.recover_lost(100, SETTINGS), True),
    "worker stop": (None, lambda s: s.request_stop(0), True),
    "complete": ("pending", lambda s: s.complete(_claimed(s), 5), False),
    "fail into the DLQ": ("dead", lambda s: None, False),
    "heartbeat": ("processing", lambda s: s.worker_heartbeat("w", 5), False),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_exactly_the_changes_that_make_work_notify(pg_database, name):
    start, operation, wakes = OPERATIONS[name]
    store = open_store(pg_database)
    store.register_worker(WorkerIdentity("w", "h", 1), 1)
    if start is not None:
        _job_in(store, start, SETTINGS)
    with admin(pg_database) as listener:
        listener.execute("LISTEN queuectl")
        operation(store)
        # Notifications arrive in commit order: once our marker is in, everything before it is.
        store.db.run_script("SELECT pg_notify('queuectl', 'marker')")
        seen = []
        for note in listener.notifies(timeout=5):
            if note.payload == "marker":
                break
            seen.append(note.payload)
        else:
            pytest.fail("the marker notification never arrived")
    store.close()
    assert bool(seen) == wakes, seen


def test_a_lost_listen_connection_wakes_the_worker_then_listens_again(pg_database):
    watcher, other = open_store(pg_database), open_store(pg_database)
    watcher.db.changed()
    with admin(pg_database) as conn:
        def listening() -> bool:
            return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname = "
                                     "current_database() AND query = 'LISTEN queuectl'"
                                     ).fetchone())

        assert listening()
        conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                     "WHERE query = 'LISTEN queuectl' AND datname = current_database()")
        wait_until(watcher.db.changed, 1.0, "the lost listener woke the worker")
        wait_until(lambda: watcher.db.changed() and listening(), 5.0, "listening again")
    while watcher.db.changed():  # anything reported by the reconnection itself
        pass
    other.enqueue([NewJob(id="a", command="true")], time.time())
    wait_until(watcher.db.changed, 1.0, "a wake-up after reconnecting")
    watcher.close()
    other.close()


# -- connection loss ----------------------------------------------------------------------------


def test_a_lost_connection_raises_once_then_the_next_call_reconnects(pg_database):
    store = open_store(pg_database)
    store.enqueue([NewJob(id="a", command="true")], time.time())
    with admin(pg_database) as conn:
        conn.execute(KILL_OTHERS)
    with pytest.raises(DatabaseUnavailable, match="lost the connection to PostgreSQL at "
                       "127.0.0.1:5432"):
        store.counts()
    assert store.counts()["pending"] == 1
    store.close()


def test_a_connection_lost_inside_a_transaction_writes_nothing(pg_database):
    store = open_store(pg_database)
    store.enqueue([NewJob(id="a", command="true")], time.time())
    with pytest.raises(DatabaseUnavailable):
        with store.db.transaction():
            store.db.execute("config_set", {"key": "max-retries", "value": "9"})
            with admin(pg_database) as conn:
                conn.execute(KILL_OTHERS)
            store.db.execute("config_set", {"key": "backoff-base", "value": "3"})
    assert store.settings()["max-retries"] == 3  # rolled back with the connection
    assert store.claim(WorkerIdentity("w", "h", 1), time.time(), 10).id == "a"
    store.close()


def test_a_failing_first_statement_sent_with_begin_rolls_back_and_leaves_the_session_usable(
        pg_database):
    """BEGIN travels in one pipeline with a transaction's first statement: a failure of that
    statement must surface as the same errors, and the session must be usable after."""
    from queuectl.errors import Conflict

    store = open_store(pg_database)
    store.db.run_script("CREATE TEMP TABLE once (id INTEGER PRIMARY KEY)")
    insert = "INSERT INTO once VALUES (%(id)s)"
    with store.db.transaction():
        store.db._run(insert, {"id": 1})
    with pytest.raises(Conflict, match="duplicate key"):
        with store.db.transaction():
            store.db._run(insert, {"id": 1})
    with pytest.raises(QueueError, match="database error"):
        with store.db.transaction():
            store.db._run("SELECT 1 / %(zero)s", {"zero": 0})
            store.db._run(insert, {"id": 2})  # never reached
    with store.db.transaction():
        store.db._run(insert, {"id": 3})
    assert [r["id"] for r in store.db._run("SELECT id FROM once ORDER BY id").fetchall()] == [1, 3]
    store.close()


def test_a_last_statement_sent_with_its_commit_commits_all_or_nothing(pg_database):
    """fetch_one_last sends the COMMIT in one pipeline with the transaction's last statement:
    the whole transaction lands when it succeeds, none of it when it fails, and nothing may
    follow it in the transaction."""
    store, other = open_store(pg_database), open_store(pg_database)
    store.config_set("max-retries", "3")
    with store.db.transaction():
        store.db.execute("config_set", {"key": "max-retries", "value": "7"})
        store.db.execute("config_set", {"key": "backoff-base", "value": "5"})
        assert store.db.fetch_one_last("get_job", {"id": "none"}) is None
    assert (other.settings()["max-retries"], other.settings()["backoff-base"]) == (7, 5)

    with pytest.raises(QueueError, match="database error"):
        with store.db.transaction():
            store.db.execute("config_set", {"key": "max-retries", "value": "9"})
            store.db.fetch_one_last("claim_in_queues", {  # the server refuses the JSON
                "worker_id": "w", "host": "h", "token": "t", "lease_until": 1.0, "now": 0.0,
                "queues": "not json"})
    assert other.settings()["max-retries"] == 7  # rolled back with the failed last statement

    with pytest.raises(RuntimeError, match="after the one fetch_one_last"):
        with store.db.transaction():
            store.db.execute("config_set", {"key": "max-retries", "value": "4"})
            store.db.fetch_one_last("get_job", {"id": "none"})
            store.db.execute("config_set", {"key": "backoff-base", "value": "6"})
    assert (other.settings()["max-retries"], other.settings()["backoff-base"]) == (4, 5)
    assert store.settings()["max-retries"] == 4  # and the session goes on
    store.close()
    other.close()


class RoundTrips:
    """The store's real connection, counting how often the client waits for the server: once
    per statement sent on its own, once per pipeline (sent together, answered together)."""

    def __init__(self, conn):
        self._conn, self.count, self._in_pipeline = conn, 0, False

    def execute(self, *args, **kwargs):
        self.count += not self._in_pipeline
        return self._conn.execute(*args, **kwargs)

    @contextlib.contextmanager
    def pipeline(self):
        self.count += 1
        self._in_pipeline = True
        try:
            with self._conn.pipeline() as pipeline:
                yield pipeline
        finally:
            self._in_pipeline = False

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_result_and_the_next_claim_travel_in_one_round_trip(pg_database):
    """Across hosts a round trip costs more than the statements (DECISIONS.md 8): a job's
    result, its attempt row, the next claim and the COMMIT go to the server together."""
    store = open_store(pg_database)
    me = WorkerIdentity("w", "h", 1)
    now = time.time()
    store.enqueue([NewJob(command="true", id="a"), NewJob(command="true", id="b")], now)
    store.register_worker(me, now)
    job = store.claim(me, now, 60)
    spy = store.db._conn = RoundTrips(store.db._conn)
    done, following = store.record_and_claim(lambda: store.complete(job, now + 1), me, now + 1,
                                             60)
    assert (done, following.id, spy.count) == (True, "b", 1)
    assert [a["outcome"] for a in store.attempts("a")] == ["completed"]
    store.close()


def test_a_batch_s_results_and_the_next_batch_s_claim_travel_in_one_round_trip(pg_database):
    """A batch (DECISIONS.md 31): the held results are queued (Connector.queue) and go to
    the server with the last one, the clearing of the worker's journal, the claim of the next
    batch and the COMMIT."""
    from queuectl.journal_table import TableJournal

    store = open_store(pg_database)
    me = WorkerIdentity("w", "h", 1)
    now = time.time()
    store.enqueue([NewJob(command="true", id=f"j{i}") for i in range(8)], now)
    store.register_worker(me, now)
    _, batch = store.record_batch([], me, now, 60, claim=4)
    journal = TableJournal(store, me.id)
    for job in batch:
        journal.started(job, now)
        journal.ended(job, now, now + 1, 0, b"")
    spy = store.db._conn = RoundTrips(store.db._conn)
    records = [lambda job=job: store.complete(job, now + 1) for job in batch]
    clear = journal.clear_with_commit()
    results, following = store.record_batch(records, me, now + 1, 60, claim=4,
                                            clear_journal=clear)
    journal.committed(cleared=clear is not None)
    assert (results, [j.id for j in following], spy.count) == (
        [True] * 4, ["j4", "j5", "j6", "j7"], 1)  # the journal's lines cleared in it too
    assert {store.get(j.id).state for j in batch} == {"completed"}
    assert store.journal_entries(me.id) == {}
    store.close()


def test_a_queued_statement_that_fails_rolls_its_transaction_back(pg_database):
    store, other = open_store(pg_database), open_store(pg_database)
    store.config_set("max-retries", "3")
    with pytest.raises(QueueError, match="database error"):
        with store.db.transaction():
            sent = store.db.queue("config_set", {"key": "max-retries", "value": "9"})
            store.db.queue("claim_in_queues", {"worker_id": "w", "host": "h", "token": "t",
                                               "lease_until": 1.0, "now": 0.0,
                                               "queues": "not json"})
    assert other.settings()["max-retries"] == 3
    with pytest.raises(TypeError):
        bool(sent)  # never known: reading it as a truth value is a bug
    with store.db.transaction():
        sent = store.db.queue("config_set", {"key": "max-retries", "value": "5"})
    assert (sent.rowcount, other.settings()["max-retries"]) == (1, 5)
    store.close()
    other.close()


def test_a_result_sent_with_a_failing_last_statement_is_rolled_back(pg_database):
    store, other = open_store(pg_database), open_store(pg_database)
    store.config_set("max-retries", "3")
    with pytest.raises(QueueError, match="database error"):
        with store.db.transaction():
            store.db.execute_then_fetch_all_last(
                "config_set", {"key": "max-retries", "value": "9"},
                "claim_in_queues", {"worker_id": "w", "host": "h", "token": "t",
                                    "lease_until": 1.0, "now": 0.0, "queues": "not json"})
    assert other.settings()["max-retries"] == 3
    with store.db.transaction():
        matched, rows = store.db.execute_then_fetch_all_last(
            "config_set", {"key": "max-retries", "value": "5"}, "get_job", {"id": "none"})
    assert (matched, rows, other.settings()["max-retries"]) == (1, [], 5)
    store.close()
    other.close()


def test_a_worker_rides_out_the_loss_of_all_its_connections(pg_database):
    with_password = pg_database.replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
    worker = subprocess.Popen(
        [sys.executable, "-P", "-m", "queuectl", "--db", with_password, "worker", "start"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = open_store(pg_database)
    try:
        wait_until(lambda: store.live_workers(0), 20.0, "the worker registered")
        with admin(pg_database) as conn:
            wait_until(lambda: conn.execute("SELECT 1 FROM pg_stat_activity WHERE query = "
                                            "'LISTEN queuectl'").fetchone(), 20.0, "listening")
            conn.execute(KILL_OTHERS)
        store.close()
        store = open_store(pg_database)
        store.enqueue([NewJob(id="after", command="true")], time.time())
        wait_until(lambda: store.get("after").state == "completed", 20.0,
                   "the job ran after the worker reconnected")
        assert worker.poll() is None
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
        store.close()
    assert worker.returncode == 0, err
    assert "lost the connection to PostgreSQL at 127.0.0.1:5432" in err  # said, then recovered
    assert "Traceback" not in err and "s3cret" not in err, err


# -- errors and the optional extra ------------------------------------------------------------


def run_cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom queuectl.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-P", "-c", code, *args], capture_output=True, text=True,
                          timeout=60)


def test_an_unreachable_server_is_one_clear_line_and_exit_1():
    pytest.importorskip("psycopg")
    result = run_cli("--db", "postgresql://postgres:hunter2@127.0.0.1:1/x", "status")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "127.0.0.1:1" in result.stderr and "hunter2" not in result.stderr


def test_without_psycopg_a_postgres_url_says_how_to_install_it(tmp_path):
    blocked = "import sys; sys.modules['psycopg'] = None  # as if the extra were missing"
    result = run_cli("--db", "postgresql://postgres@127.0.0.1/x", "status", prelude=blocked)
    assert result.returncode == 1
    assert result.stderr == ("queuectl: error: PostgreSQL support is not installed: "
                             "pip install 'queuectl[postgres]'\n")
    # ...while SQLite still works, and never even tries to import psycopg.
    check = "import atexit; atexit.register(lambda: print(sorted(m for m in sys.modules " \
            "if m.startswith('psycopg'))))"
    result = run_cli("--db", str(tmp_path / "q.db"), "status", prelude=f"import sys\n{check}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_describe_masks_the_password(pg_database):
    url = pg_database.replace("postgres@", "postgres:s3cret@")
    store = open_store(url)  # trust authentication ignores the password
    assert "s3cret" not in store.describe() and ":***@" in store.describe()
    store.close()
    assert mask_password("postgresql://u@h/db?password=x&sslmode=require") == \
        "postgresql://u@h/db?password=***&sslmode=require"


def test_a_session_frozen_in_a_transaction_is_ended_by_the_server(pg_database):
    """Every session asks the server to end it when it sits idle inside a transaction (a
    frozen worker would keep its row locks and stall the others); also after a reconnect.
    The holder's locks go with it: here a short timeout shows a blocked writer get through."""
    holder, other = open_store(pg_database), open_store(pg_database)
    try:
        def setting(store) -> str:
            return store.db._run("SHOW idle_in_transaction_session_timeout").fetchone()[
                "idle_in_transaction_session_timeout"]

        assert setting(holder) == IDLE_IN_TRANSACTION_TIMEOUT
        other.db._run(KILL_OTHERS)
        with pytest.raises(DatabaseUnavailable):
            setting(holder)
        assert setting(holder) == IDLE_IN_TRANSACTION_TIMEOUT
        holder.db._run("SET idle_in_transaction_session_timeout = '300ms'")
        holder.db._run("BEGIN")
        holder.db._run("UPDATE queuectl_meta SET value = value WHERE key = 'schema_version'")
        # The holder now freezes (does nothing); the other writer needs the same row.
        other.db._run("SET lock_timeout = '20s'")
        other.db._run("UPDATE queuectl_meta SET value = value WHERE key = 'schema_version'")
        with pytest.raises(DatabaseUnavailable):
            holder.db._run("SELECT 1")
    finally:
        holder.close()
        other.close()


def test_workers_commit_durably_like_the_cli(pg_database):
    """DECISIONS.md 8 on PostgreSQL: a worker's session keeps synchronous_commit on, as the
    CLI's does, also after a reconnect: an asynchronous commit is lost when the server
    crashes, and a lost claim lets a second worker start a job that is still running."""
    cli = open_store(pg_database)
    worker = open_store(pg_database, durable=False)
    try:
        def setting(store) -> str:
            return store.db._run("SHOW synchronous_commit").fetchone()["synchronous_commit"]

        assert (setting(cli), setting(worker)) == ("on", "on")
        cli.db._run(KILL_OTHERS)
        with pytest.raises(DatabaseUnavailable):
            setting(worker)
        assert setting(worker) == "on"
    finally:
        cli.close()
        worker.close()
