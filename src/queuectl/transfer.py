"""`queuectl migrate`: copy a whole queue from one database to another (SQLite <-> PostgreSQL).

What moves: every job with all its columns (seq included, so the queue keeps its order), the
attempt history, the stored output and the config. Not the workers: they belong to processes
on the source.

Generic over connectors: rows go out through `export_*` and in through `import_*` named
queries, with values unchanged (both dialects keep times as float epoch seconds). The whole
import is one transaction on the target, so a failure leaves it as it was.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass

from queuectl import sql
from queuectl.errors import Conflict, InputError, QueueError
from queuectl.store import JobStore, is_postgres, open_store, resolve_target
from queuectl.store.jobstore import SCHEMA_VERSION

BATCH = 500  # rows per read: a large queue never sits in memory whole

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|(?<!:):(\w+)")


@dataclass
class Copied:
    jobs: int = 0
    attempts: int = 0
    config: int = 0
    output_chunks: int = 0
    running: int = 0  # jobs copied in state processing: their leases expire on the target

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def transfer(source: str, target: str, now: float | None = None,
             progress: Callable[[int], None] | None = None) -> Copied:
    """Copy the queue at `source` into `target`, which must hold no jobs (InputError, nothing
    written, otherwise). `target` gets the schema if it has none yet."""
    source, target = resolve_target(source, "--from"), resolve_target(target, "--to")
    if source == target:
        raise InputError("--from and --to name the same database")
    if not is_postgres(source) and not os.path.isfile(source):
        raise InputError(f"no queue database at {source}")
    now = time.time() if now is None else now
    try:
        src_store = open_store(source, migrate=False)
    except InputError:
        raise
    except QueueError as exc:
        if is_postgres(source):
            raise  # an unreachable server is an operational failure, not bad input
        # --from names a file that is no queue (empty, foreign, newer): the argument is wrong.
        raise InputError(str(exc)) from None
    with closing(src_store) as src:
        _check_source(src, now)
        with closing(open_store(target)) as dst:
            try:
                return _copy(src, dst, progress)
            except Conflict as exc:
                raise QueueError(f"{dst.describe()} changed during the copy ({exc}); "
                                 "nothing was written") from None


def _check_source(src: JobStore, now: float) -> None:
    db = src.db
    row = db.fetch_one("schema_version") if db.fetch_one("schema_table_exists") else None
    if row is None:
        raise InputError(f"{src.describe()} is not a queuectl queue")
    if int(row["value"]) != SCHEMA_VERSION:
        raise InputError(
            f"{src.describe()} has schema version {row['value']}, this queuectl copies version "
            f"{SCHEMA_VERSION}; run any queuectl command on it with a matching version first"
        )
    # Running workers would keep changing the source (and run its jobs) during and after the
    # copy, and the same jobs would then run on the target as well.
    live = src.live_workers(now - src.settings()["lease-seconds"])
    if live:
        raise InputError(f"{len(live)} worker(s) are running on {src.describe()}; stop them "
                         "first ('queuectl --db SOURCE worker stop')")


def _copy(src: JobStore, dst: JobStore,
          progress: Callable[[int], None] | None = None) -> Copied:
    copied = Copied()

    def tick() -> None:
        if progress is not None:
            progress(copied.jobs + copied.attempts + copied.output_chunks)

    # On SQLite the source's transaction holds its write lock: nothing changes while we read.
    with src.db.transaction(), dst.db.transaction():
        dst.db.execute("lock_for_import")
        if dst.db.fetch_one("any_job"):
            raise InputError(f"{dst.describe()} already holds jobs; migrate only copies into an "
                             "empty queue (nothing was written)")
        writable = _placeholders(sql.load(dst.db.dialect)["import_job"])
        imported: Counter[tuple[str, str]] = Counter()
        for row in _batches(src, "export_jobs", {"after": 0}, lambda r: {"after": r["seq"]}):
            unknown = set(row) - writable
            if unknown:
                raise QueueError(f"cannot copy column(s) {', '.join(sorted(unknown))} of "
                                 f"{src.describe()}; nothing was written")
            dst.db.execute("import_job", row)
            imported[row["queue"], row["state"]] += 1
            copied.jobs += 1
            copied.running += row["state"] == "processing"
            tick()
        dst.count_inserted(imported)
        for row in _batches(src, "export_attempts", {"job_id": "", "run": -1},
                            lambda r: {"job_id": r["job_id"], "run": r["run"]}):
            dst.db.execute("import_attempt", row)
            copied.attempts += 1
            tick()
        # The run counters go as they are (runs purged from the source's history still
        # count); a target emptied by purges may hold counters of its own, which they replace.
        dst.db.execute("clear_attempt_counts")
        for row in src.db.fetch_all("attempt_totals"):
            dst.db.execute("import_attempt_count", row)
        dst.db.execute("clear_run_minutes")  # as the run counters, for the same reason
        for row in _batches(src, "export_run_minutes", {"minute": -1, "queue": ""},
                            lambda r: {"minute": r["minute"], "queue": r["queue"]}):
            dst.db.execute("import_run_minute", row)
        for row in _batches(src, "export_output", {"job_id": "", "run": -1, "start_byte": -1},
                            lambda r: {"job_id": r["job_id"], "run": r["run"],
                                       "start_byte": r["start_byte"]}):
            dst.db.execute("import_output", {**row, "data": bytes(row["data"])})
            copied.output_chunks += 1
            tick()
        for row in src.db.fetch_all("config_all"):
            dst.db.execute("config_set", row)
            copied.config += 1
        dst.db.execute("finish_import")
    return copied


def _batches(store: JobStore, name: str, start: dict, next_key) -> Iterator[dict]:
    """Keyset pagination: each batch starts after the last row of the previous one."""
    key = start
    while True:
        rows = store.db.fetch_all(name, {**key, "limit": BATCH})
        yield from rows
        if len(rows) < BATCH:
            return
        key = next_key(rows[-1])


def _placeholders(query: str) -> set[str]:
    return {a or b for a, b in _PLACEHOLDER.findall(query)}

