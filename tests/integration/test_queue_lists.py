"""`list --queue NAME` and the dashboard's queue filter walk that queue's own jobs
(jobs_by_queue, migration 9) when they are fewer than the jobs in the state asked for, instead
of every job newest first (DECISIONS.md §36). Whichever walk is chosen, the jobs listed are
the same: these tests hold both, on both backends."""

from __future__ import annotations

import pytest

from queuectl.models import NewJob
from queuectl.store import open_store
from queuectl.store.jobstore import SCHEMA_VERSION, WorkerIdentity

from .common import T0, A, open_store_of_version

STATES = [None, "pending", "processing", "completed", "failed", "dead", "cancelled"]


def _fill(store) -> None:
    """Three queues of very different sizes, their jobs in every state, interleaved."""
    store.enqueue([NewJob(id=f"big-{i:03d}", command="true", queue="big", max_retries=0)
                   for i in range(120)]
                  + [NewJob(id=f"small-{i}", command="true", queue="small", max_retries=0)
                     for i in range(6)]
                  + [NewJob(id=f"mid-{i:02d}", command="true", queue="mid", max_retries=0)
                     for i in range(30)], T0)
    serving = {queue: WorkerIdentity(id=f"w-{queue}", host=A.host, pid=A.pid, queues=[queue])
               for queue in ("big", "small", "mid")}
    settings = store.settings()
    for _ in range(90):  # most of big finished, one of small, a few of mid failed for good
        store.complete(store.claim(serving["big"], T0 + 1, 60), T0 + 2)
    store.complete(store.claim(serving["small"], T0 + 1, 60), T0 + 2)
    for _ in range(3):
        store.fail(store.claim(serving["mid"], T0 + 1, 60), T0 + 2, settings, 1, "exit code 1")
    store.claim(serving["small"], T0 + 1, 60)  # left running
    store.cancel("mid-29", T0 + 3)


def _by_filter(jobs, state, queue):
    return [j.id for j in jobs if (state is None or j.state == state) and j.queue == queue]


@pytest.mark.parametrize("queue", ["big", "small", "mid", "no-such-queue"])
def test_a_queue_s_list_is_the_same_whichever_index_it_walks(store, queue):
    _fill(store)
    everything = store.list(limit=1000)
    for state in STATES:
        expected = _by_filter(everything, state, queue)
        for limit in (1, 5, 1000):
            assert [j.id for j in store.list(state, limit, queue)] == expected[:limit], \
                (state, limit)


@pytest.mark.parametrize("queue", ["big", "small"])
def test_a_queue_s_pages_are_the_same_whichever_index_they_walk(store, queue):
    _fill(store)
    everything = store.list(limit=1000)
    for state in STATES:
        seen, before = [], None
        for _ in range(100):
            jobs, before = store.page(state, queue, None, before, 7)
            seen += [j.id for j in jobs]
            if before is None:
                break
        assert seen == _by_filter(everything, state, queue), state
        found, _ = store.page(state, queue, "-1", None, 1000)  # a text search within it
        assert [j.id for j in found] == [i for i in seen if "-1" in i], state


def _walks(store, monkeypatch) -> list[str]:
    """The names of the list statements the store sends from now on."""
    sent: list[str] = []
    fetch_all = store.db.fetch_all

    def noting(name, *args):
        sent.append(name)
        return fetch_all(name, *args)

    monkeypatch.setattr(store.db, "fetch_all", noting)
    return sent


def test_the_walk_over_fewer_jobs_is_chosen(store, monkeypatch):
    """big holds 120 jobs, small 6, and 60 are pending in all: big's pending jobs are found
    on the state's index, small's on the queue's own."""
    _fill(store)
    sent = _walks(store, monkeypatch)
    store.list("pending", 50, "big")
    store.list("pending", 50, "small")
    store.list(None, 50, "big")  # no state: the queue's own jobs, never more than all jobs
    store.list("completed", 50, "big")  # the other way walks every job
    store.list("pending", 50, None)
    lists = [name for name in sent if name.startswith("list_")]
    assert lists == ["list_jobs_in_state", "list_jobs_in_queue", "list_jobs_in_queue",
                     "list_jobs_in_queue", "list_jobs_in_state"]


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_a_rare_queue_s_jobs_are_sought_on_its_index_on_postgres(pg_database, analyzed):
    from .test_postgres_specific import admin

    store = open_store(pg_database)
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(30_000)]
                  + [NewJob(id=f"r{i}", command="true", queue="rare") for i in range(5)], 1e9)
    store.close()
    with admin(pg_database) as conn:
        if analyzed:
            conn.execute("ANALYZE jobs")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + store.db.queries["list_jobs_in_queue"],
            {"queue": "rare", "state": None, "limit": 50}))
    assert "jobs_by_queue" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_version_8_queue_gets_the_index_and_keeps_its_jobs(db):
    store = open_store_of_version(db, 8)
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="q" if i % 2 else "default")
                   for i in range(6)], T0)
    store.close()
    store = open_store(db)
    try:
        assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        assert [j.id for j in store.list(None, 10, "q")] == ["j5", "j3", "j1"]
        if store.db.dialect == "sqlite":
            assert store.db.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'jobs_by_queue'").fetchone()
        else:
            assert store.db._run("SELECT 1 FROM pg_indexes WHERE indexname = 'jobs_by_queue'"
                                 ).fetchone()
    finally:
        store.close()
