"""PostgreSQL's counter shards (migration 11, DECISIONS.md §38): each connection counts into
rows no other connection writes while it lives, so writers never wait for one another on a
counter row, and no order in which two transactions touch queues can deadlock them."""

from __future__ import annotations

import threading

import pytest

from conditions import wait_until
from queuectl.models import NewJob
from queuectl.store import open_store

from .common import T0, A, open_store_of_version

psycopg = pytest.importorskip("psycopg")

FIRST_SHARD = 16  # 0 to 15 were the shards of `backend pid mod 16`, before migration 11


def cancel(conn, job_id: str) -> None:
    """A counted change (the count trigger moves the job from pending to cancelled)."""
    conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = %s", (job_id,))


def shard_of(conn) -> int | None:
    value = conn.execute("SELECT current_setting('queuectl.shard', true)").fetchone()[0]
    return int(value) if value else None


def held_shards(conn) -> list[int]:
    rows = conn.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = %s "
                        "AND classid = 1902343276 AND objsubid = 2 ORDER BY objid",
                        (conn.info.backend_pid,)).fetchall()
    return [int(objid) for objid, in rows]


def shards_released(url: str) -> None:
    """Wait until no connection holds a shard: a backend lets its locks go when it has ended,
    a moment after its client closed the connection."""
    def none_held() -> bool:
        with psycopg.connect(url) as conn:
            return not conn.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 1902343276 "
                "AND objsubid = 2 AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())").fetchone()
    wait_until(none_held, timeout=10, what="the closed connections' shards to be released")


def cancelled_by_queue(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT queue, sum(cancelled) FROM job_counts GROUP BY queue"
                                 ).fetchall())


def enqueue(url: str, ids: list[str]) -> None:
    store = open_store(url)
    try:
        store.enqueue([NewJob(id=job_id, command="true", queue=job_id[0]) for job_id in ids], T0)
    finally:
        store.close()


def test_two_connections_changing_two_queues_in_opposite_orders_do_not_deadlock(pg_database):
    enqueue(pg_database, ["a1", "a2", "b1", "b2"])
    # Before migration 11, connections whose pids left the same remainder mod 16 shared
    # counter rows: this test takes such a pair (17 connections always hold one), which
    # deadlocked there.
    conns = [psycopg.connect(pg_database) for _ in range(17)]
    try:
        by_remainder: dict[int, list] = {}
        for conn in conns:
            by_remainder.setdefault(conn.info.backend_pid % 16, []).append(conn)
        first, second = next(same for same in by_remainder.values() if len(same) > 1)[:2]
        for conn in (first, second):
            conn.execute("SET lock_timeout = '10s'")  # bounds the test if the fix is gone
        cancel(first, "a1")  # first holds its counter row of queue a until it commits
        cancel(second, "b1")  # and second its row of queue b
        errors: list[Exception] = []

        def then(conn, job_id: str) -> None:
            try:
                cancel(conn, job_id)
                conn.commit()
            except psycopg.Error as exc:
                errors.append(exc)
                conn.rollback()

        crossing = threading.Thread(target=then, args=(first, "b2"))
        crossing.start()
        then(second, "a2")
        crossing.join(timeout=30)
        assert not crossing.is_alive()
        assert errors == []
        assert shard_of(first) != shard_of(second)
    finally:
        for conn in conns:
            conn.close()
    assert cancelled_by_queue(pg_database) == {"a": 2, "b": 2}


def test_a_connection_takes_the_lowest_free_shard_and_frees_it_when_it_leaves(pg_database):
    enqueue(pg_database, ["a1", "a2", "a3", "a4"])
    shards_released(pg_database)
    with psycopg.connect(pg_database) as one, psycopg.connect(pg_database) as two:
        one.execute("SELECT count(*) FROM job_counts")
        assert shard_of(one) is None  # a reader takes no shard
        cancel(one, "a1")
        one.commit()
        cancel(two, "a2")
        two.commit()
        assert {shard_of(one), shard_of(two)} == {FIRST_SHARD, FIRST_SHARD + 1}
        counted = dict(one.execute("SELECT shard, cancelled FROM job_counts WHERE queue = 'a' "
                                   "AND cancelled <> 0").fetchall())
        assert counted == {shard_of(one): 1, shard_of(two): 1}
        left = shard_of(one)
    shards_released(pg_database)
    with psycopg.connect(pg_database) as three, psycopg.connect(pg_database) as four:
        cancel(three, "a3")  # both have left: the shards are free again
        cancel(four, "a4")
        three.commit()
        four.commit()
        assert {shard_of(three), shard_of(four)} == {FIRST_SHARD, FIRST_SHARD + 1}
        assert left in {shard_of(three), shard_of(four)}
    assert cancelled_by_queue(pg_database) == {"a": 4}


def test_a_first_change_rolled_back_keeps_its_shard_for_the_next(pg_database):
    """The setting that remembers the shard is undone with the transaction that made it; the
    advisory lock is not. The next change takes up the shard the session holds, rather than
    a second one, which would stay held and unused until it disconnects."""
    enqueue(pg_database, ["a1", "a2"])
    with psycopg.connect(pg_database) as one, psycopg.connect(pg_database) as two:
        cancel(one, "a1")
        kept = held_shards(one)
        one.rollback()
        assert shard_of(one) is None
        assert held_shards(one) == kept and len(kept) == 1
        cancel(two, "a2")  # another connection meanwhile takes another shard
        two.commit()
        assert shard_of(two) not in kept
        cancel(one, "a1")
        one.commit()
        assert [shard_of(one)] == held_shards(one) == kept
    assert cancelled_by_queue(pg_database) == {"a": 2}


def test_a_queue_made_before_migration_11_keeps_its_counts_and_counts_on(pg_database):
    old = open_store_of_version(pg_database, 10)
    old.enqueue([NewJob(id=f"j{i}", command="true") for i in range(3)], T0)
    claimed = old.claim(A, T0 + 1, 600)
    old.close()
    store = open_store(pg_database)
    try:
        assert store.complete(claimed, T0 + 2, 0)
        counts = store.counts_by_queue()["default"]
        assert (counts["pending"], counts["completed"]) == (2, 1)
        assert store.db.fetch_one("schema_version")["value"] == "11"
    finally:
        store.close()
    with psycopg.connect(pg_database) as conn:
        shards = {shard for shard, in conn.execute("SELECT shard FROM job_counts").fetchall()}
    assert min(shards) < FIRST_SHARD <= max(shards)  # what was counted before stays put


def test_every_counter_a_connection_writes_is_in_its_own_shard(pg_database):
    """The statements that count (an enqueue's, a result's with its run counters and minute)
    and the trigger that counts state changes all write the connection's shard."""
    store = open_store(pg_database)
    try:
        store.enqueue([NewJob(id="j", command="true")], T0)
        assert store.complete(store.claim(A, T0 + 1, 600), T0 + 2, 0)
        with store.db.transaction():
            store.db.execute("insert_attempt", {
                "job_id": "j", "run": 2, "worker_id": A.id, "host": A.host,
                "started_at": T0 + 3, "finished_at": T0 + 4, "outcome": "failed",
                "exit_code": 1, "error": "boom", "output_bytes": 0})
    finally:
        store.close()
    with psycopg.connect(pg_database) as conn:
        shards = {table: conn.execute(f"SELECT DISTINCT shard FROM {table}").fetchall()
                  for table in ("job_counts", "attempt_counts", "run_minutes")}
    assert set(map(tuple, shards.values())) == {((FIRST_SHARD,),)}, shards
