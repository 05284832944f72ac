"""`status`, /metrics and the dashboard read job counts that triggers keep (migration 4). They
must equal a plain COUNT of the jobs table after anything the queue does, on every backend,
and a queue created before migration 4 must be upgraded in place with its counts right."""

from __future__ import annotations

import re
import sqlite3

import pytest

from queuectl import sql
from queuectl.errors import InputError
from queuectl.models import STATES, NewJob
from queuectl.store import open_store
from queuectl.store.jobstore import SCHEMA_VERSION

from .common import T0, A, B, create_schema_version


def counted(store) -> dict[str, dict[str, int]]:
    """The truth, the slow way: every job counted."""
    found: dict[str, dict[str, int]] = {}
    for job in store.list(limit=10**6):
        found.setdefault(job.queue, dict.fromkeys(STATES, 0))[job.state] += 1
    return dict(sorted(found.items()))


def check(store) -> None:
    truth = counted(store)
    assert store.counts_by_queue() == truth
    totals = dict.fromkeys(STATES, 0)
    for per_state in truth.values():
        for state, n in per_state.items():
            totals[state] += n
    assert store.counts() == totals


def test_counts_follow_every_change(store):
    check(store)
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="a" if i % 2 else "b")
                   for i in range(8)], T0)
    store.enqueue([NewJob(id="k", command="true", unique_key="u"),
                   NewJob(id="k2", command="true", unique_key="u")], T0)  # one duplicate
    check(store)
    settings = store.settings()
    first = store.claim(A, T0, 15)
    second = store.claim(B, T0, 15)
    third = store.claim(A, T0, 15)
    check(store)  # three processing
    store.complete(first, T0 + 1)
    store.fail(second, T0 + 1, settings, exit_code=1, error="boom")  # failed, will retry
    assert store.release(third, T0 + 1, reason="cold stop")
    check(store)
    dying = store.claim(A, T0 + 2, 15)
    store.fail(dying.replace(attempts=dying.max_retries), T0 + 2, settings, exit_code=1,
               error="boom")  # dead
    check(store)
    store.cancel("j7", T0 + 3)
    store.dlq_retry([dying.id], T0 + 4)
    check(store)
    store.purge(["completed", "cancelled"], before=T0 + 100)
    check(store)
    recovered = store.claim(B, T0 + 5, 15)
    assert store.recover_lost(T0 + 100, settings, [B.id])  # its worker is gone
    assert store.get(recovered.id).state == "pending"
    check(store)


def test_an_empty_queue_is_not_listed(store):
    store.enqueue([NewJob(id="x", command="true", queue="gone")], T0)
    store.cancel("x", T0)
    store.purge(["cancelled"], before=T0 + 1)
    assert store.counts_by_queue() == {}
    assert store.counts() == dict.fromkeys(STATES, 0)


def test_a_version_3_queue_is_upgraded_in_place_with_its_counts(db):
    old = open_store(db, migrate=False)
    create_schema_version(old, 3)
    # Jobs written by the old version: no trigger counted them.
    # insert_job_batch: no conflict target, which names today's index conditions.
    with old.db.transaction():
        old.db.execute_many("insert_job_batch", [{
            "id": job_id, "command": "true", "state": "pending", "max_retries": 3,
            "created_at": T0, "updated_at": T0, "run_at": T0,
            "priority": 0, "queue": queue, "timeout": None, "cwd": None, "env": None,
        } for job_id, queue in (("old-1", "q"), ("old-2", "default"))])
    old.close()

    store = open_store(db)
    try:
        assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        assert [j.id for j in store.list()] == ["old-2", "old-1"]
        check(store)
        job = store.claim(A, T0, 15)
        store.complete(job, T0 + 1)
        check(store)
        store.enqueue([NewJob(id="new-1", command="true", queue="q"),
                       NewJob(id="new-2", command="true", unique_key="u")], T0 + 2)
        check(store)  # inserts after migration 5 are counted by the store
    finally:
        store.close()


def test_status_reads_no_jobs_row_on_sqlite(sqlite_database):
    """The counts come from the small table, not from a scan of jobs (EXPLAIN)."""
    store = open_store(sqlite_database)
    try:
        for name in ("count_by_state", "count_by_queue_and_state"):
            plan = [row[3] for row in store.db.conn.execute(
                "EXPLAIN QUERY PLAN " + store.db.queries[name])]
            assert all("jobs" not in step.replace("job_counts", "") for step in plan), plan
    finally:
        store.close()


@pytest.mark.parametrize("rows", [0, 3])
def test_migration_4_backfills_sqlite_counts(tmp_path, rows):
    path = str(tmp_path / "v3.db")
    store = open_store(path, migrate=False)
    create_schema_version(store, 3)
    store.close()
    raw = sqlite3.connect(path)
    for i in range(rows):
        raw.execute("INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at,"
                    " run_at, queue, finished_at) VALUES (?, 'true', 'completed', 3, 0, 0, 0,"
                    " 'z', 1)", (f"done-{i}",))
    raw.commit()
    raw.close()
    store = open_store(path)
    try:
        check(store)
        assert store.counts()["completed"] == rows
    finally:
        store.close()


@pytest.mark.parametrize("name, index", [
    ("list_jobs_in_state", "jobs_by_state_but_completed (state=?)"),
    ("page_jobs_in_state", "jobs_by_state_but_completed (state=? AND seq>? AND seq<?)"),
    ("dlq_list", "jobs_by_state_but_completed (state=?)"),
    ("dlq_retry_all", "jobs_by_state_but_completed (state=?)"),
    ("live_workers", "jobs_by_state_but_completed (state=?)"),
    ("purge_jobs", "jobs_finished (finished_at<?)"),
    ("list_jobs_in_queue", "jobs_by_queue (queue=?)"),  # test_queue_lists.py
    ("page_jobs_in_queue", "jobs_by_queue (queue=? AND seq>? AND seq<?)"),
    ("finished_between", "attempts_finished (finished_at>? AND finished_at<?)"),  # §37
    ("finished_by_minute", "run_minutes USING PRIMARY KEY (minute>?)"),
])
def test_reads_by_state_seek_an_index_on_sqlite(sqlite_database, name, index):
    """With a million completed jobs kept, a list of the few jobs in another state or in a
    small queue, the DLQ, the workers' current jobs and each purge batch must not step over
    all of them."""
    store = open_store(sqlite_database)
    try:
        query = store.db.queries[name]
        params = dict.fromkeys(re.findall(r"(?<!:):(\w+)", query))
        params.update(state="dead", states='["completed"]')
        plan = [row[3] for row in store.db.conn.execute("EXPLAIN QUERY PLAN " + query, params)]
    finally:
        store.close()
    assert any(index in step for step in plan), plan
    assert not any(re.match(r"SCAN (jobs|j)\b", step) or "AUTOMATIC" in step
                   for step in plan), plan


def test_a_search_pages_through_a_window_of_jobs_at_a_time(store, monkeypatch):
    """A dashboard search that matches nothing recent must not read every job for one page:
    each page looks at SEARCH_WINDOW jobs and leads on to older ones."""
    from queuectl.store import jobstore

    monkeypatch.setattr(jobstore, "SEARCH_WINDOW", 10)
    store.enqueue([NewJob(id=f"j{i:02d}", command="echo needle" if i == 3 else "true")
                   for i in range(25)], T0)
    seen, before, pages = [], None, 0
    while True:
        jobs, before = store.page(None, None, "needle", before, 5)
        seen += [j.id for j in jobs]
        pages += 1
        if before is None:
            break
    assert seen == ["j03"] and pages == 3
    jobs, after = store.page(None, None, None, None, 5)  # no filter: no window
    assert len(jobs) == 5 and after is not None
    # A queue whose jobs are fewer than the state's is walked on its own index: no window.
    jobs, after = store.page("pending", "default", None, None, 50)
    assert [j.id for j in jobs] == [f"j{i:02d}" for i in range(24, -1, -1)] and after is None
    # One whose jobs are more: the state's index, the queue a filter, a window at a time.
    store.cancel("j03", T0 + 1)
    jobs, after = store.page("cancelled", "default", None, None, 50)
    assert jobs == [] and after == 16
    jobs, after = store.page("cancelled", "default", None, after, 50)
    assert jobs == [] and after == 6
    jobs, after = store.page("cancelled", "default", None, after, 50)
    assert [j.id for j in jobs] == ["j03"] and after is None


def test_an_enqueue_refused_as_a_whole_counts_nothing(store):
    store.enqueue([NewJob(id="taken", command="true")], T0)
    before = store.counts_by_queue()
    with pytest.raises(InputError, match="'taken' already exists"):
        store.enqueue([NewJob(id=f"n{i}", command="true", queue="other") for i in range(5)]
                      + [NewJob(id="taken", command="true")], T0)
    assert store.counts_by_queue() == before
    check(store)


def test_every_statement_that_inserts_jobs_is_one_the_store_counts():
    """No trigger counts inserts (migration 5): JobStore.count_inserted must follow each of
    these. A new statement that inserts jobs has to be added here, and counted."""
    for dialect in ("sqlite", "postgres"):
        inserting = {name for name, text in sql.load(dialect).items()
                     if not name.startswith("migration_")
                     and re.search(r"(INSERT\s+INTO|COPY)\s+jobs\b", text)}
        assert inserting == {"insert_job", "insert_job_batch", "import_job"}, dialect


def test_recount_repairs_counts_that_drifted(store):
    """What an older queuectl enqueueing after an upgrade to schema 5 leaves behind (jobs no
    one counted), repaired by JobStore.recount (`status --recount`)."""
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="a" if i % 2 else "b")
                   for i in range(6)], T0)
    job = store.claim(A, T0, 15)
    store.complete(job, T0 + 1)
    store.db.run_script("UPDATE job_counts SET pending = pending - 5, completed = 7")
    assert store.counts_by_queue() != counted(store)
    assert store.recount() == 6
    check(store)
    store.enqueue([NewJob(id="after", command="true", queue="a")], T0 + 2)
    check(store)  # counting goes on from the rebuilt rows
