"""JobStore: every rule about jobs in the database, written once for both dialects.

Each state change of a claimed job is one UPDATE guarded by the claim's lease token
(`WHERE id = ? AND lease_token = ? AND state = 'processing'`). If the guard matches no row,
the caller lost the job (its lease expired and another worker recovered it) and must change
nothing; the methods return False/None for that instead of raising.
"""

from __future__ import annotations

import builtins  # `list` below names JobStore.list: annotations after it say builtins.list
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from queuectl import retry, sql
from queuectl.capture import OutputCapture
from queuectl.config import Settings, get_key, parse_value
from queuectl.errors import Conflict, InputError, JobNotFound, QueueError
from queuectl.models import (
    CANCELLED,
    COMPLETED,
    DEAD,
    FAILED,
    FINISHED_OUTCOMES,
    PENDING,
    STATES,
    TERMINAL_STATES,
    Job,
    NewJob,
    minute_of,
    new_job_id,
    new_job_ids,
)
from queuectl.record import Record
from queuectl.store.sent import Sent

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any

    from queuectl.journal import JournalEntry
    from queuectl.store.connector import Connector

SCHEMA_VERSION = 11
# workers.stop_requested: why a live worker takes no job. Paused came later and shares the
# column rather than add one: a new column is a migration, and every older queuectl on the
# queue would refuse it until upgraded; an older one shows a paused worker as stopping.
WORKER_CLAIMING, WORKER_STOPPING, WORKER_PAUSED = 0, 1, 2
SEARCH_WINDOW = 50_000  # jobs a dashboard search looks at per page (see page())
BATCH = 5000  # jobs per insert_job_batch call: bounds the memory of a huge --file


def _token() -> str:
    """A claim's lease token: random, so no other claim can ever hold the same one."""
    return os.urandom(8).hex()

_JOB_FIELDS = set(Job._fields)


class Enqueued(Record):
    id: str
    duplicate: bool = False  # True: a live job with the same unique_key existed; id is its id


class WorkerIdentity(Record):
    id: str
    host: str
    pid: int
    pid_started: str | None = None
    queues: list[str] | None = None


def row_to_job(row: dict) -> Job:
    values = {k: v for k, v in row.items() if k in _JOB_FIELDS}
    values["env"] = json.loads(row["env"]) if row.get("env") else {}
    return Job(**values)


class _ChainedClaim:
    """record_batch's claim, not yet sent. The last result's statement may take it along
    (`Connector.execute_then_fetch_all_last`: on PostgreSQL, one round trip for both); if it
    did not, record_batch sends it itself."""

    __slots__ = ("name", "params", "sent", "rows")

    def __init__(self, name: str, params: dict[str, Any]):
        self.name, self.params = name, params
        self.sent = False
        self.rows: list[dict] = []


class JobStore:
    def __init__(self, db: Connector):
        self.db = db
        self._chained: _ChainedClaim | None = None  # set only inside record_batch
        # Inside record_batch, while it records results held back in a batch: their
        # statements are queued (Connector.queue), all sent with the next one.
        self._queue_results = False
        # Inside record_batch: the output of every result it records, with its mark, to
        # rewind if the transaction fails after the result's own statements went through.
        self._batch_outputs: list[tuple[OutputCapture, Any]] | None = None
        # On SQLite, each recorded result's (queue, outcome, minute, and the row count of the
        # statement that inserted its attempt), counted in one statement per batch and kind
        # once they have been sent (_count_batch_runs); outside record_batch, at once.
        self._batch_runs: list[tuple[str, str, int, Sent]] = []

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        return self.db.describe()

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema. Safe when several processes start at once: the version
        is read and written inside one writing transaction."""
        if self._schema_version() == SCHEMA_VERSION:
            return
        with self.db.transaction():
            self.db.execute("lock_schema")  # PostgreSQL: one migrating process at a time
            version = self._schema_version()
            if version is None and self.db.fetch_one("any_table_exists"):
                raise QueueError(
                    f"{self.db.describe()} is not a queuectl database (it holds other tables); "
                    "point --db at a new file"
                )
            version = version or 0
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"{self.db.describe()} has schema version {version}, newer than this "
                    f"queuectl supports ({SCHEMA_VERSION}); upgrade queuectl"
                )
            for number, script in sql.migrations(self.db.dialect):
                if number > version:
                    self.db.run_script(script)
            self.db.execute("set_schema_version", {"version": str(SCHEMA_VERSION)})

    def _schema_version(self) -> int | None:
        if not self.db.fetch_one("schema_table_exists"):
            return None
        row = self.db.fetch_one("schema_version")
        return int(row["value"]) if row else None

    # -- config -----------------------------------------------------------------------------

    def settings(self) -> Settings:
        return Settings({r["key"]: r["value"] for r in self.db.fetch_all("config_all")})

    def config_set(self, name: str, text: str) -> Any:
        return self.config_set_many({name: text})[name]

    def config_set_many(self, texts: dict[str, Any]) -> dict[str, Any]:
        """Set several keys in one transaction, checked together (lease and heartbeat often
        have to change at once): all of them, or none."""
        values = {name: parse_value(name, text) for name, text in texts.items()}
        with self.db.transaction():
            stored = {r["key"]: r["value"] for r in self.db.fetch_all("config_all")}
            stored.update({name: str(value) for name, value in values.items()})
            Settings(stored).check_timing()
            for name, value in values.items():
                self.db.execute("config_set", {"key": name, "value": str(value)})
        return values

    def config_unset(self, name: str) -> None:
        get_key(name)
        with self.db.transaction():
            self.db.execute("config_unset", {"key": name})

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(self, specs: Iterable[NewJob], now: float,
                progress: Callable[[int], None] | None = None) -> list[Enqueued]:
        """Insert all jobs in one transaction: all of them, or (on any error) none.
        `progress(n)` is told how many are inserted so far (a big --file takes seconds).

        Runs of jobs without a unique_key go in batches through one prepared statement
        (insert_job_batch: no per-row round trip, one wake-up notification); a job with a
        unique_key goes alone through insert_job, whose result says whether a live job
        already held the key. Input order is kept, so seq (FIFO) follows the input."""
        specs = specs if isinstance(specs, list) else list(specs)
        results: list[Enqueued] = []
        with self.db.transaction():
            default_retries = self.settings()["max-retries"]
            start, total = 0, len(specs)
            while start < total:
                if specs[start].unique_key is not None:
                    results.append(self._insert(specs[start], now, default_retries))
                    start += 1
                else:
                    end = start + 1
                    while end < total and end - start < BATCH and specs[end].unique_key is None:
                        end += 1
                    results += self._insert_batch(specs[start:end], now, default_retries)
                    start = end
                if progress is not None:
                    progress(len(results))
            if results:
                self.db.execute("notify_new_jobs")
        return results

    def _insert_batch(self, batch: list[NewJob], now: float,
                      default_retries: int) -> list[Enqueued]:
        drawn = new_job_ids(sum(1 for spec in batch if not spec.id))
        rows: builtins.list[dict[str, Any]] = [
            {  # named as the columns they fill: PostgreSQL COPYs them by these names
                "id": spec.id or next(drawn),
                "command": spec.command,
                "state": PENDING,
                "max_retries": default_retries if spec.max_retries is None else spec.max_retries,
                "created_at": now,
                "updated_at": now,
                "run_at": spec.run_at if spec.run_at is not None else now + (spec.delay or 0),
                "priority": spec.priority,
                "queue": spec.queue,
                "timeout": spec.timeout,
                "cwd": spec.cwd,
                "env": json.dumps(spec.env) if spec.env else None,
            }
            for spec in batch
        ]
        try:
            self.db.execute_many("insert_job_batch", rows)  # all rows or none of them
        except Conflict:
            self._refuse_taken_id(batch)
            # No given id was taken, so a generated one collided: go row by row, where
            # _insert draws a new id for it.
            return [self._insert(spec, now, default_retries) for spec in batch]
        self.count_inserted(Counter((row["queue"], PENDING) for row in rows))
        trusted = Enqueued.trusted
        return [trusted({"id": row["id"], "duplicate": False}) for row in rows]

    def count_inserted(self, jobs: Mapping[tuple[str, str], int]) -> None:
        """Add jobs just inserted, counted by (queue, state), to job_counts: no trigger
        counts inserts (a trigger per row was half of a bulk enqueue's time), so every insert
        into jobs must be followed by this, in its transaction. One statement per queue."""
        per_queue: dict[str, dict[str, int]] = {}
        for (queue, state), n in jobs.items():
            per_queue.setdefault(queue, dict.fromkeys(STATES, 0))[state] += n
        for queue, by_state in per_queue.items():
            self.db.execute("count_inserted", {"queue": queue, **by_state})

    def recount(self) -> int:
        """Rebuild job_counts from the jobs themselves, the repair for counts that drifted
        (an older queuectl that kept enqueueing after an upgrade: DECISIONS.md §22), and the
        finished runs per minute from the history. Writers wait meanwhile. Returns how many
        jobs were counted."""
        with self.db.transaction():
            self.db.execute("lock_for_recount")
            self.db.execute("clear_counts")
            self.db.execute("recount_jobs")
            self.db.execute("clear_run_minutes")
            self.db.execute("recount_run_minutes")
        return sum(self.counts().values())

    def _refuse_taken_id(self, batch: list[NewJob]) -> None:
        """Name the first job of `batch` whose id the queue (or an earlier job of the same
        input) already holds, as the row-by-row insert did."""
        given = [spec.id for spec in batch if spec.id]
        taken: set[str] = set()
        for start in range(0, len(given), 500):
            chunk = given[start : start + 500]
            taken.update(row["id"] for row in
                         self.db.fetch_all("states_of", {"ids": json.dumps(chunk)}))
        seen: set[str] = set()
        for job_id in given:
            if job_id in taken or job_id in seen:
                raise InputError(f"a job with id {job_id!r} already exists; choose another id")
            seen.add(job_id)

    def _insert(self, spec: NewJob, now: float, default_retries: int) -> Enqueued:
        job_id = spec.id or new_job_id()
        if spec.id and self.db.fetch_one("job_id_exists", {"id": job_id}):
            raise InputError(f"a job with id {job_id!r} already exists; choose another id")
        run_at = spec.run_at if spec.run_at is not None else now + (spec.delay or 0)
        params = {
            "id": job_id,
            "command": spec.command,
            "max_retries": default_retries if spec.max_retries is None else spec.max_retries,
            "now": now,
            "run_at": run_at,
            "priority": spec.priority,
            "queue": spec.queue,
            "timeout": spec.timeout,
            "cwd": spec.cwd,
            "env": json.dumps(spec.env) if spec.env else None,
            "unique_key": spec.unique_key,
        }
        try:
            inserted = self.db.execute("insert_job", params)
        except Conflict:
            if spec.id is None:  # a generated id collided: astronomically rare, try once more
                return self._insert(NewJob(**{**spec.fields(), "id": new_job_id()}), now,
                                    default_retries)
            raise InputError(f"a job with id {job_id!r} already exists; choose another id") \
                from None
        if inserted == 0:  # a live job holds this unique_key
            existing = self.db.fetch_one("live_job_with_key", {"unique_key": spec.unique_key})
            if existing is None:  # pragma: no cover - the conflict row cannot vanish mid-txn
                raise QueueError(f"unique_key {spec.unique_key!r} conflicted but no job holds it")
            return Enqueued(existing["id"], duplicate=True)
        self.count_inserted({(spec.queue, PENDING): 1})
        return Enqueued(job_id)

    # -- the worker's path: claim, heartbeat, finish ------------------------------------------

    def claim(self, worker: WorkerIdentity, now: float, lease_seconds: float) -> Job | None:
        name, params = self._claim_statement(worker, now, lease_seconds)
        with self.db.transaction():
            # The last statement of its transaction, also inside record_and_claim.
            row = self.db.fetch_one_last(name, params)
        return row_to_job(row) if row else None

    def _claim_statement(self, worker: WorkerIdentity, now: float,
                         lease_seconds: float) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {
            "worker_id": worker.id,
            "host": worker.host,
            "token": _token(),
            "lease_until": now + lease_seconds,
            "now": now,
        }
        if not worker.queues:
            return "claim_any", params
        params["queues"] = json.dumps(worker.queues)
        return "claim_in_queues", params

    def _claim_statements(self, worker: WorkerIdentity, now: float, lease_seconds: float,
                          most: int) -> builtins.list[tuple[str, dict[str, Any]]]:
        """The statements that claim up to `most` jobs: the claim's batch form (`..._many`)
        where the dialect has it, else the one-job claim `most` times (claim_in_queues on
        SQLite, where a statement costs no round trip)."""
        name, params = self._claim_statement(worker, now, lease_seconds)
        if most > 1 and f"{name}_many" in self.db.queries:
            return [(f"{name}_many", params | {"most": most})]
        return [(name, params)] + [self._claim_statement(worker, now, lease_seconds)
                                   for _ in range(most - 1)]

    def record_and_claim(self, record: Callable[[], Any], worker: WorkerIdentity, now: float,
                         lease_seconds: float) -> tuple[Any, Job | None]:
        """Record a run's result (`record` is one of complete/fail/...) and claim this worker's
        next job in the same transaction: one commit per job instead of two, which is most of
        a SQLite worker's own cost. See record_batch."""
        [result], claimed = self.record_batch([record], worker, now, lease_seconds, claim=1)
        return result, claimed[0] if claimed else None

    def record_batch(self, records: builtins.list[Callable[[], Any]], worker: WorkerIdentity,
                     now: float, lease_seconds: float, claim: int = 1,
                     give_back: Iterable[Job] = (), clear_journal: str | None = None,
                     ) -> tuple[builtins.list[Any], builtins.list[Job]]:
        """In one transaction: record runs' results (each of `records` is a bound
        complete/fail/... call; all but the last must be `complete` calls, results held in a
        batch), give back jobs claimed ahead that will not run here, and claim up to `claim`
        jobs for this worker. Returns what each record returned and the jobs claimed, best
        first.

        All or nothing: if anything fails, nothing is written and the caller may try again.
        No claim when `worker stop` asked this worker to stop (the claim statement reads the
        flag, inside the transaction, so a stop that committed first always wins). The claim
        is one statement, whatever `claim` is (claim_any_many), except for a SQLite worker
        that serves named queues: the one-job claim statement, run `claim` times. The claims'
        parameters are made before and their Jobs after the transaction: on SQLite, Python
        inside it holds the one write lock. On PostgreSQL the whole transaction is one round
        trip: the held results and the give-backs are queued (Connector.queue) and sent with
        the last result, which takes the claim and the COMMIT along (DECISIONS.md 26, 31). On
        SQLite the same queue holds them, with the BEGIN, until the last result's first
        statement: the Python that builds them runs before the write lock is taken (32).
        `clear_journal` (PostgreSQL: the id of the job whose journal lines stay, or '') clears
        the worker's journal table in the same transaction (TableJournal.clear_with_commit)."""
        statements = self._claim_statements(worker, now, lease_seconds, claim) if claim else []
        give_back = builtins.list(give_back)
        # Sent with the last result, the claim commits with it on PostgreSQL: only when it is
        # the transaction's last statement.
        chained = _ChainedClaim(*statements[0]) if len(statements) == 1 and records \
            and not give_back else None
        rows: builtins.list[dict] = []
        results: builtins.list[Any] = []
        outputs: builtins.list[tuple[OutputCapture, Any]] = []
        self._batch_outputs = outputs
        self._batch_runs = []
        try:
            with self.db.transaction():
                if clear_journal is not None:
                    self.db.queue("journal_clear", {"worker_id": worker.id,
                                                    "keep": clear_journal})
                for job in give_back:
                    self.db.queue("unclaim_job", {"id": job.id, "token": job.lease_token,
                                                  "now": now})
                for index, record in enumerate(records):
                    last = index == len(records) - 1
                    self._queue_results = not last
                    if last:
                        self._chained = chained  # the last result's statement may take it along
                    results.append(record())
                self._queue_results = False
                self._chained = None
                if self._batch_runs:
                    self._count_batch_runs()
                if chained is not None and chained.sent:
                    statements.pop(0)
                    rows += chained.rows
                    if not chained.rows:
                        statements.clear()  # nothing due (or asked to stop): claim no more
                for number, (name, params) in enumerate(statements, 1):
                    fetch = self.db.fetch_all_last if number == len(statements) else \
                        self.db.fetch_all
                    found = fetch(name, params)
                    if not found:
                        break
                    rows += found
        except BaseException:
            for output, mark in outputs:  # the caller may retry: store the output again
                output.rewind(mark)
            raise
        finally:
            self._chained = None
            self._queue_results = False
            self._batch_outputs = None
            self._batch_runs = []
        results = [result.rowcount == 1 if isinstance(result, Sent) else result
                   for result in results]
        rows.sort(key=lambda row: (-row["priority"], row["run_at"], row["seq"]))
        return results, [row_to_job(row) for row in rows]

    def _count_batch_runs(self) -> None:
        """The run counters (migration 8) and finished runs per minute (migration 10) for the
        results a SQLite batch recorded (or the one result recorded outside a batch), one
        statement per queue and outcome (and per queue and minute) instead of two per job.
        Only runs whose attempt row was inserted count. A held result's was exactly when its
        finish_job matched (insert_attempt_after_finish); they were all sent with the
        batch's last result, whose own insert_attempt gives its row count."""
        recorded: Counter[tuple[str, str]] = Counter()
        finished: Counter[tuple[str, int]] = Counter()
        failed: Counter[tuple[str, int]] = Counter()
        for queue, outcome, minute, sent in self._batch_runs:
            if sent.rowcount == 1:
                recorded[queue, outcome] += 1
                if outcome in FINISHED_OUTCOMES:
                    finished[queue, minute] += 1
                    if outcome != COMPLETED:
                        failed[queue, minute] += 1
        self._batch_runs = []
        for (queue, outcome), runs in recorded.items():
            self.db.execute("count_recorded_runs", {"queue": queue, "outcome": outcome,
                                                    "runs": runs})
        for (queue, minute), runs in finished.items():
            self.db.execute("count_finished_minutes", {
                "minute": minute, "queue": queue, "finished": runs,
                "failed": failed[queue, minute]})

    def unclaim(self, job: Job, now: float) -> bool:
        """Give back a job that was claimed but never started (its worker was asked to stop
        right after a chained claim, or it waited in a batch): as if it had not been claimed,
        so no run is counted and no attempt recorded. A cancel asked meanwhile ends it
        cancelled."""
        with self.db.transaction():
            return self.db.execute("unclaim_job", {"id": job.id, "token": job.lease_token,
                                                   "now": now}) == 1

    def set_process(self, job: Job, pgid: int, pgid_started: str | None) -> bool:
        with self.db.transaction():
            return self.db.execute(
                "set_job_process",
                {"id": job.id, "token": job.lease_token, "pgid": pgid,
                 "pgid_started": pgid_started},
            ) == 1

    def renew_lease(self, job: Job, now: float, lease_seconds: float) -> bool:
        """False means the job is no longer ours: stop it and record nothing."""
        with self.db.transaction():
            return self.db.execute(
                "renew_lease",
                {"id": job.id, "token": job.lease_token, "lease_until": now + lease_seconds},
            ) == 1

    def cancel_requested(self, job: Job) -> bool:
        row = self.db.fetch_one("cancel_requested", {"id": job.id, "token": job.lease_token})
        return bool(row and row["cancel_requested"])

    def store_output(self, job: Job, output: OutputCapture) -> None:
        """Store what the run printed since the last call, while the run still owns the job,
        and drop stored chunks that the tail has moved past."""
        mark = output.mark()
        try:
            chunks = output.take_unstored()
            if chunks:
                with self.db.transaction():
                    self._insert_chunks(job, output, chunks)
        except BaseException:
            output.rewind(mark)
            raise

    def _insert_chunks(self, job: Job, output: OutputCapture,
                       chunks: list[tuple[int, bytes]]) -> None:
        write = self.db.queue if self._queue_results else self.db.execute
        for start, data in chunks:
            write("insert_output_chunk", {
                "job_id": job.id, "run": job.runs, "start_byte": start, "data": data,
                "token": job.lease_token,
            })
        if output.dropped:
            cut_end, replacement = output.take_trim()
            write("trim_output", {
                "job_id": job.id, "run": job.runs, "head_end": output.head_limit,
                "tail_start": cut_end,
            })
            if replacement is not None:
                write("insert_output_chunk", {
                    "job_id": job.id, "run": job.runs, "start_byte": replacement[0],
                    "data": replacement[1], "token": job.lease_token,
                })

    def complete(self, job: Job, now: float, exit_code: int = 0,
                 output: OutputCapture | None = None) -> bool | Sent:
        """True if recorded, False if the job was no longer ours; a Sent for a result held in
        a batch, which record_batch turns into that bool."""
        return self._finish(
            job, now, state=COMPLETED, attempts=job.attempts + 1, run_at=job.run_at,
            outcome="completed", exit_code=exit_code, error=None, finished=True, output=output,
        )

    def fail(self, job: Job, now: float, settings: Settings, exit_code: int | None,
             error: str, outcome: str = "failed", output: OutputCapture | None = None,
             draw: float = 0.5) -> str | None:
        """Charge an attempt; retry after base ** attempts seconds (spread by backoff-jitter,
        with `draw` uniform in [0, 1)), or dead when exhausted. Returns the new state, or None
        if the job was no longer ours."""
        attempts = job.attempts + 1
        if retry.is_exhausted(attempts, job.max_retries):
            state, run_at = DEAD, job.run_at
        else:
            state = FAILED
            delay = retry.backoff_delay(settings["backoff-base"], attempts)
            run_at = now + retry.jittered(delay, settings["backoff-jitter"], draw)
        done = self._finish(
            job, now, state=state, attempts=attempts, run_at=run_at, outcome=outcome,
            exit_code=exit_code, error=error, finished=state == DEAD, output=output,
        )
        return state if done else None

    def release(self, job: Job, now: float, reason: str,
                output: OutputCapture | None = None) -> bool:
        """Put a job back without charging an attempt (cold stop)."""
        return bool(self._finish(
            job, now, state=PENDING, attempts=job.attempts, run_at=now, outcome="released",
            exit_code=None, error=reason, finished=False, output=output,
        ))

    def finish_cancelled(self, job: Job, now: float, exit_code: int | None,
                         output: OutputCapture | None = None) -> bool:
        """A running job killed because the user cancelled it."""
        return bool(self._finish(
            job, now, state=CANCELLED, attempts=job.attempts, run_at=job.run_at,
            outcome="cancelled", exit_code=exit_code, error="cancelled by user while running",
            finished=True, output=output,
        ))

    def _finish(self, job: Job, now: float, *, state: str, attempts: int, run_at: float,
                outcome: str, exit_code: int | None, error: str | None, finished: bool,
                crashes: int | None = None, output: OutputCapture | None = None) -> bool | Sent:
        mark = output.mark() if output is not None else None
        if output is not None and self._batch_outputs is not None:
            self._batch_outputs.append((output, mark))  # a later statement may fail it yet
        try:
            return self._finish_in_transaction(
                job, now, state=state, attempts=attempts, run_at=run_at, outcome=outcome,
                exit_code=exit_code, error=error, finished=finished, crashes=crashes,
                output=output)
        except BaseException:
            if output is not None and mark is not None:
                output.rewind(mark)  # the caller may retry (Worker._durably): keep the output
            raise

    def _finish_in_transaction(self, job: Job, now: float, *, state: str, attempts: int,
                               run_at: float, outcome: str, exit_code: int | None,
                               error: str | None, finished: bool, crashes: int | None,
                               output: OutputCapture | None) -> bool | Sent:
        with self.db.transaction():
            if output is not None:  # guarded by the lease too: must precede finish_job
                chunks = output.take_unstored()
                if chunks:
                    self._insert_chunks(job, output, chunks)
            finish = {
                "id": job.id,
                "token": job.lease_token,
                "state": state,
                "attempts": attempts,
                "run_at": run_at,
                "exit_code": exit_code,
                "error": error,
                "finished_at": now if finished else None,
                "now": now,
                "crashes": job.crashes if crashes is None else crashes,
            }
            attempt = {
                "run": job.runs,
                "worker_id": job.worker_id,
                "host": job.host,
                "started_at": job.started_at or now,
                "outcome": outcome,
                "output_bytes": output.total if output is not None else None,
            }
            if "finish_job_with_attempt" in self.db.queries:  # see sql.ONE_STATEMENT_FORMS
                # Inside record_and_claim, the next claim goes along with it (DECISIONS.md 26).
                chained, self._chained = self._chained, None
                if chained is None:
                    if self._queue_results:  # a held result: record_batch reads it later
                        return self.db.queue("finish_job_with_attempt", finish | attempt)
                    return self.db.execute("finish_job_with_attempt", finish | attempt) == 1
                matched, chained.rows = self.db.execute_then_fetch_all_last(
                    "finish_job_with_attempt", finish | attempt, chained.name, chained.params)
                chained.sent = True
                return matched == 1
            attempt |= {"job_id": job.id, "finished_at": now, "exit_code": exit_code,
                        "error": error}
            if self._queue_results and "insert_attempt_after_finish" in self.db.queries:
                # A held result on SQLite: both statements wait for the transaction's next
                # one, the second checking the first's row count itself (sql.SQLITE_ONLY).
                # record_batch counts the run once they are sent (_count_batch_runs).
                sent = self.db.queue("finish_job", finish)
                self.db.queue("insert_attempt_after_finish", attempt)
                self._batch_runs.append((job.queue, outcome, minute_of(now), sent))
                return sent
            if self.db.execute("finish_job", finish) != 1:
                return False
            inserted = self.db.execute("insert_attempt", attempt)
            if "count_recorded_runs" in self.db.queries:  # PostgreSQL's insert_attempt counts
                # SQLite: counted as a batch's results are (migrations 8, 10), with the rest
                # of its batch when it is one's last result, else on its own, now.
                self._batch_runs.append((job.queue, outcome, minute_of(now), Sent(inserted)))
                if self._batch_outputs is None:
                    self._count_batch_runs()
        return True

    # -- recovery of jobs whose worker died ---------------------------------------------------

    def recover_lost(
        self,
        now: float,
        settings: Settings,
        dead_worker_ids: Iterable[str] = (),
        stop_leftovers: Callable[[Job], None] | None = None,
        journal_of: Callable[[str], dict[str, JournalEntry] | None] | None = None,
    ) -> list[tuple[Job, str]]:
        """Take back every job whose lease expired, or whose worker is known dead: pending
        again without charging an attempt, or dead once it has lost `max-crashes` workers.
        Returns (job, new state) pairs.

        Two guarded steps per job. First the recovering worker takes the lease over (so the old
        owner, if merely frozen, is fenced out from here on); then `stop_leftovers` kills what
        is left of the old run (on this host); only then is the job made claimable, so a second
        copy can never start while the first still runs here.

        `journal_of(worker_id)` reads a lost worker's journal (journal.py), if it kept one:
        a job whose result it holds is recorded with that result, and one it claimed ahead but
        never started is given back as if never claimed (no run, no crash counted).
        """
        candidates: builtins.list[tuple[dict, str | None]] = [
            (row, None) for row in self.db.fetch_all("expired_jobs", {"now": now})]
        for worker_id in dead_worker_ids:
            candidates += [
                (row, worker_id)
                for row in self.db.fetch_all("jobs_of_worker", {"worker_id": worker_id})
            ]
        # Read before any take-over: once a worker on the host has recovered every job of a
        # dead worker, it removes that worker's journal.
        journals: dict[str, dict[str, JournalEntry] | None] = {}
        if journal_of is not None:
            for worker_id in {row["worker_id"] for row, _ in candidates if row["worker_id"]}:
                journals[worker_id] = journal_of(worker_id)
        recovered = []
        for row, dead_worker_id in candidates:
            job = row_to_job(row)
            new_token = _token()
            with self.db.transaction():
                took = self.db.execute(
                    "take_over_lost",
                    {"id": job.id, "token": job.lease_token, "new_token": new_token,
                     "lease_until": now + settings["lease-seconds"], "now": now,
                     "dead_worker_id": dead_worker_id},
                )
            if took != 1:
                continue  # renewed meanwhile, or another worker got there first
            if stop_leftovers is not None:
                stop_leftovers(job)
            job.lease_token = new_token
            journal = journals.get(job.worker_id) if job.worker_id else None
            if journal is not None:  # by job id: see journal.read
                replayed = self._replay(job, journal.get(job.id), now, settings,
                                        cancel=bool(row.get("cancel_requested")))
                if replayed is not None:
                    recovered.append((job, replayed))
                    continue
            crashes = job.crashes + 1
            lost_too_often = crashes >= settings["max-crashes"]
            state = DEAD if lost_too_often else PENDING
            if row.get("cancel_requested"):
                if self._finish(job, now, state=CANCELLED, attempts=job.attempts,
                                run_at=job.run_at, outcome="cancelled", exit_code=None,
                                error="cancelled by user; its worker was lost meanwhile",
                                finished=True, crashes=crashes):
                    recovered.append((job, CANCELLED))
                continue
            error = (
                f"its worker died {crashes} times while running it (max-crashes "
                f"{settings['max-crashes']}): the job may be killing its worker"
                if lost_too_often
                else "its worker died or stopped heartbeating; re-queued without charging "
                "an attempt"
            )
            if self._finish(job, now, state=state, attempts=job.attempts, run_at=now,
                            outcome="crashed", exit_code=None, error=error,
                            finished=lost_too_often, crashes=crashes):
                recovered.append((job, state))
        return recovered

    def _replay(self, job: Job, entry: JournalEntry | None, now: float, settings: Settings,
                cancel: bool) -> str | None:
        """What a lost worker's journal says of `job` (whose lease the caller has taken over):
        its new state, or None when the journal cannot tell (the job was running: a crash)."""
        if entry is None:  # claimed ahead, never started: as if never claimed
            if not self.unclaim(job, now):
                return None
            # as unclaim_job decides (a cancel asked while it waited is carried out)
            return CANCELLED if cancel else FAILED if job.attempts > 0 else PENDING
        if entry.exit_code is None:
            return None
        output = OutputCapture(settings["output-limit"])
        output.feed(entry.output)
        job.started_at = entry.started_at
        done = self._finish(job, entry.finished_at or now, state=COMPLETED,
                            attempts=job.attempts + 1, run_at=job.run_at, outcome="completed",
                            exit_code=entry.exit_code, error=None, finished=True, output=output)
        return COMPLETED if done else None

    def jobs_of_worker(self, worker_id: str) -> builtins.list[Job]:
        """The jobs `worker_id` holds (processing), a take-over's included."""
        return [row_to_job(row) for row in
                self.db.fetch_all("jobs_of_worker", {"worker_id": worker_id})]

    # -- PostgreSQL workers' journal (journal_table.py; a SQLite worker's is a file) ----------

    def journal_write(self, worker_id: str, entries: builtins.list[dict[str, Any]]) -> None:
        """Append journal lines (dicts of job_id, token, started_at, and for a result
        exit_code, finished_at and output as bytes), in one statement that commits on its
        own (no BEGIN and COMMIT around it: one round trip): the table is unlogged, so it
        waits for no disk."""
        import base64  # PostgreSQL workers only: not on every CLI call's import path

        rows = [entry | {"worker_id": worker_id,
                         "output": base64.b64encode(entry["output"]).decode("ascii")
                         if entry.get("output") is not None else None}
                for entry in entries]
        self.db.execute("journal_write", {"rows": json.dumps(rows)})

    def journal_entries(self, worker_id: str) -> dict[str, JournalEntry] | None:
        """A worker's journal by job id, as journal.read gives a file's: None when it kept
        none (no line at all, not even its marker)."""
        from queuectl.journal import JournalEntry, add_entry

        found = self.db.fetch_all("journal_read", {"worker_id": worker_id})
        if not found:
            return None
        entries: dict[str, JournalEntry] = {}
        for row in found:
            if row["job_id"]:  # not the marker
                add_entry(entries, row["job_id"], JournalEntry(
                    row["token"], row["started_at"], row["exit_code"], row["finished_at"],
                    bytes(row["output"] or b"")))
        return entries

    def journal_clear(self, worker_id: str, keep: str = "") -> None:
        """Remove the lines a commit made moot: all but the marker and job `keep`'s."""
        self.db.execute("journal_clear", {"worker_id": worker_id, "keep": keep})

    def journal_forget(self, worker_id: str) -> None:
        self.db.execute("journal_forget", {"worker_id": worker_id})

    def workers_on_host(self, host: str) -> list[dict]:
        return self.db.fetch_all("workers_on_host", {"host": host})

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        row = self.db.fetch_one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        job = row_to_job(row)
        return job

    def list(self, state: str | None = None, limit: int = 100,
             queue: str | None = None) -> list[Job]:
        params = {"state": state, "queue": queue, "limit": limit}
        if queue is not None and self._fewer_in_queue_than_in_state(queue, state):
            name = "list_jobs_in_queue"
        elif state in (None, COMPLETED):
            # Completed jobs are not in jobs_by_state_but_completed; the newest jobs are mostly
            # completed ones, so walking all jobs from the newest finds them at once.
            name = "list_jobs"
        else:
            name = "list_jobs_in_state"
        return [row_to_job(r) for r in self.db.fetch_all(name, params)]

    def _fewer_in_queue_than_in_state(self, queue: str, state: str | None) -> bool:
        """Whether a list of one queue's jobs in `state` reads fewer index entries by walking
        that queue's jobs (jobs_by_queue) than by walking every job in that state. Either walk
        stops once it has found `limit` matches, so the shorter one is the one over fewer jobs,
        which the kept counts tell. Without a state, or for completed jobs (walked over all
        jobs otherwise), the queue's own jobs are never more. The counts only choose the walk:
        both return the same jobs."""
        if state in (None, COMPLETED):
            return True
        by_queue = self.counts_by_queue()
        in_queue = sum(by_queue.get(queue, {}).values())
        in_state = sum(counts[state] for counts in by_queue.values())
        return in_queue <= in_state

    def states(self, job_ids: builtins.list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(job_ids), 500):
            batch = job_ids[start : start + 500]
            rows = self.db.fetch_all("states_of", {"ids": json.dumps(batch)})
            found.update({row["id"]: row["state"] for row in rows})
        for job_id in job_ids:
            if job_id not in found:
                raise JobNotFound(job_id)
        return {job_id: found[job_id] for job_id in job_ids}

    def counts(self) -> dict[str, int]:
        row = self.db.fetch_one("count_by_state") or {}
        return {state: int(row.get(state) or 0) for state in STATES}

    def counts_by_queue(self) -> dict[str, dict[str, int]]:
        """{queue: {state: jobs}}, every state present (0 when none)."""
        return {r["queue"]: {state: int(r[state]) for state in STATES}
                for r in self.db.fetch_all("count_by_queue_and_state")}

    def page(self, state: str | None, queue: str | None, text: str | None,
             before: int | None, limit: int) -> tuple[builtins.list[Job], int | None]:
        """A page of jobs, newest first, below `before` (a seq from the previous page). Returns
        the jobs and the `before` of the next page (None on the last page).

        A queue's jobs are walked on their own index when they are fewer than the jobs in the
        state asked for (list() says why). A filter no index serves (a text, or a queue whose
        jobs are not the shorter walk) looks at most at SEARCH_WINDOW jobs per page: a search
        that matches nothing among a million jobs would otherwise read them all for one page.
        Such a page may hold fewer than `limit` jobs (even none) and still lead on to older
        ones."""
        text = text or None
        in_queue = queue is not None and self._fewer_in_queue_than_in_state(queue, state)
        floor = 0
        if text is not None or (queue is not None and not in_queue):
            if before is None:
                last = self.db.fetch_one("last_seq")
                before = (last["seq"] or 0) + 1 if last else 1
            floor = max(before - SEARCH_WINDOW, 0)
        params = {"state": state, "queue": queue, "text": text, "limit": limit + 1,
                  "before": 2**62 if before is None else before, "floor": floor}
        if in_queue:
            name = "page_jobs_in_queue"
        else:
            name = "page_jobs" if state in (None, COMPLETED) else "page_jobs_in_state"
        rows = self.db.fetch_all(name, params)
        more = len(rows) > limit
        rows = rows[:limit]
        if more:
            after = rows[-1]["seq"]
        else:
            after = floor if floor > 1 else None  # 1: seq starts there, nothing is below
        return [row_to_job(r) for r in rows], after

    def attempt_history(self, since: float, limit: int = 200_000) -> builtins.list[dict]:
        """Runs finished at or after `since`, newest first, at most `limit` (see stats.py)."""
        return self.db.fetch_all("attempt_history", {"since": since, "limit": limit})

    def finished_by_minute(self, first_minute: int) -> dict[int, tuple[int, int]]:
        """{minute: (finished runs, failed runs)} for each minute from `first_minute` on that
        had any, from the kept counts (migration 10)."""
        return {row["minute"]: (int(row["finished"]), int(row["failed"]))
                for row in self.db.fetch_all("finished_by_minute",
                                             {"first_minute": first_minute})}

    def finished_in_windows(self, now: float, windows: Iterable[float],
                            ) -> dict[float, tuple[int, int]]:
        """{window: (finished runs, failed runs)} with finished_at at or after now - window,
        for each window in seconds, bounded however many runs finished. The whole minutes a
        window holds come from the kept counts. Of its first minute, the shorter side of
        the window's edge is counted from the history: the part the window holds, or, when
        that is more than half the minute, the part before the edge, taken from the minute's
        kept count (at most half a minute of runs read, a quarter on average; DECISIONS.md
        §37). Runs stamped later than `now` (another host's clock ahead of ours) count as
        finished now."""
        windows = builtins.list(windows)
        minutes = self.finished_by_minute(minute_of(now - max(windows)))
        found = {}
        for window in windows:
            since = now - window
            edge = minute_of(since)
            finished = failed = 0
            for minute, (runs, failures) in minutes.items():
                if minute > edge:
                    finished += runs
                    failed += failures
            edge_kept = minutes.get(edge)
            if edge_kept is not None and since - edge * 60 < 30:
                before = self._finished_between(edge * 60, since)
                # Clamped: a run kept in the history but never counted (a worker of an older
                # queuectl, §37) must not make the count negative.
                finished += max(0, edge_kept[0] - before[0])
                failed += max(0, edge_kept[1] - before[1])
            else:
                inside = self._finished_between(since, (edge + 1) * 60)
                finished += inside[0]
                failed += inside[1]
            found[window] = (finished, failed)
        return found

    def _finished_between(self, since: float, until: float) -> tuple[int, int]:
        """(finished runs, failed runs) in the history with since <= finished_at < until."""
        row = self.db.fetch_one("finished_between", {"since": since, "until": until}) or {}
        return int(row.get("finished") or 0), int(row.get("failed") or 0)

    def attempt_totals(self) -> builtins.list[dict]:
        return self.db.fetch_all("attempt_totals")

    def oldest_due(self, now: float) -> float | None:
        row = self.db.fetch_one("oldest_due_job", {"now": now})
        return None if row is None else row["run_at"]

    def attempts(self, job_id: str) -> builtins.list[dict]:
        return self.db.fetch_all("job_attempts", {"job_id": job_id})

    # -- dead letter queue ------------------------------------------------------------------

    def dlq_list(self, limit: int = 1000) -> builtins.list[dict]:
        return self.db.fetch_all("dlq_list", {"limit": limit})

    def dlq_retry(self, job_ids: builtins.list[str], now: float) -> builtins.list[str]:
        """Make dead jobs pending again with a fresh retry budget (attempts reset to 0; the
        attempt history is kept). All or nothing: an id that is not dead changes nothing."""
        with self.db.transaction():
            for job_id in job_ids:
                holder = self._live_holder_of_key(job_id)
                if holder is not None:
                    raise QueueError(
                        f"job {job_id!r} cannot be retried: live job {holder!r} holds its "
                        "unique_key; wait for it or cancel it first"
                    )
                if self.db.execute("dlq_retry", {"id": job_id, "now": now}) != 1:
                    row = self.db.fetch_one("get_job", {"id": job_id})
                    if row is None:
                        raise JobNotFound(job_id)
                    raise InputError(
                        f"job {job_id!r} is {row['state']}, not dead; only jobs in the DLQ "
                        "can be retried"
                    )
        return job_ids

    def dlq_retry_all(self, now: float) -> int:
        """Retry every dead job, except one whose unique_key a live job holds (counting the
        ones retried here): it stays dead, as a second enqueue of that key would be refused."""
        with self.db.transaction():
            dead = self.db.fetch_all("list_jobs_in_state",
                                     {"state": DEAD, "queue": None, "limit": 2**62})
            if not any(row["unique_key"] for row in dead):
                return self.db.execute("dlq_retry_all", {"now": now})
            retried = 0
            for row in dead:
                if row["unique_key"] and self.db.fetch_one("live_job_with_key",
                                                           {"unique_key": row["unique_key"]}):
                    continue
                retried += self.db.execute("dlq_retry", {"id": row["id"], "now": now})
            return retried

    def dead_jobs_with_held_key(self) -> builtins.list[str]:
        """Ids of the dead jobs that dlq_retry_all leaves dead (a live job holds their key)."""
        return [row["id"] for row in self.db.fetch_all("dead_jobs_with_held_key")]

    def _live_holder_of_key(self, job_id: str) -> str | None:
        row = self.db.fetch_one("get_job", {"id": job_id})
        if row is None or row["state"] != DEAD or not row["unique_key"]:
            return None
        live = self.db.fetch_one("live_job_with_key", {"unique_key": row["unique_key"]})
        return None if live is None else live["id"]

    def dlq_purge(self) -> int:
        return self.purge([DEAD], before=float("inf"))

    def purge(self, states: builtins.list[str], before: float, batch: int = 1000,
              progress: Callable[[int], None] | None = None) -> int:
        """Delete finished jobs in `states` that finished before `before`, with their history
        and output, in batches of `batch` (one short transaction each)."""
        bad = [s for s in states if s not in TERMINAL_STATES]
        if bad:
            raise InputError(f"only finished jobs can be purged (completed, dead, cancelled), "
                             f"not {bad[0]!r}")
        params = {"states": json.dumps(states), "before": before, "limit": batch}
        with self.db.transaction():  # the recent figures only ever read the last half hour
            self.db.execute("purge_run_minutes", {"before": before})
        total = 0
        while True:
            with self.db.transaction():
                self.db.execute("purge_output", params)
                self.db.execute("purge_attempts", params)
                deleted = self.db.execute("purge_jobs", params)
            total += deleted
            if progress is not None:
                progress(total)
            if deleted < batch:
                return total

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, job_id: str, now: float) -> str:
        """'cancelled' for a job that was waiting (it will never run), 'cancelling' for a
        running one (its worker kills it and records it cancelled); raises for a finished
        or unknown job."""
        with self.db.transaction():
            if self.db.execute("cancel_waiting_job", {"id": job_id, "now": now}) == 1:
                return CANCELLED
            if self.db.execute("request_cancel", {"id": job_id, "now": now}) == 1:
                return "cancelling"
            row = self.db.fetch_one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        raise QueueError(f"job {job_id!r} is already {row['state']}; nothing to cancel")

    def output(self, job_id: str, run: int, from_byte: int = 0) -> builtins.list[tuple[int, bytes]]:
        rows = self.db.fetch_all("output_chunks_since",
                                 {"job_id": job_id, "run": run, "from_byte": from_byte})
        return [(r["start_byte"], bytes(r["data"])) for r in rows]

    # -- workers ----------------------------------------------------------------------------

    def register_worker(self, worker: WorkerIdentity, now: float) -> None:
        with self.db.transaction():
            self.db.execute(
                "register_worker",
                {"id": worker.id, "host": worker.host, "pid": worker.pid,
                 "pid_started": worker.pid_started,
                 "queues": ",".join(worker.queues) if worker.queues else None, "now": now},
            )

    def worker_heartbeat(self, worker_id: str, now: float) -> None:
        with self.db.transaction():
            self.db.execute("worker_heartbeat", {"id": worker_id, "now": now})

    def stop_requested(self, worker_id: str) -> bool | None:
        """None when the worker's row is gone (it was forgotten as dead while frozen)."""
        row = self.db.fetch_one("worker_stop_requested", {"id": worker_id})
        return None if row is None else row["stop_requested"] == WORKER_STOPPING

    def mark_stopping(self, worker_id: str) -> None:
        with self.db.transaction():
            self.db.execute("mark_worker_stopping", {"id": worker_id})

    def mark_paused(self, worker_id: str, paused: bool) -> None:
        """Show a worker as paused (Ctrl-Z), or no longer; a stop asked meanwhile stays."""
        with self.db.transaction():
            self.db.execute("mark_worker_paused" if paused else "mark_worker_resumed",
                            {"id": worker_id})

    def unregister_worker(self, worker_id: str) -> None:
        with self.db.transaction():
            self.db.execute("unregister_worker", {"id": worker_id})

    def request_stop(self, alive_since: float) -> int:
        with self.db.transaction():
            return self.db.execute("request_stop", {"alive_since": alive_since})

    def live_workers(self, alive_since: float) -> builtins.list[dict]:
        return self.db.fetch_all("live_workers", {"alive_since": alive_since})

    def forget_dead_workers(self, alive_since: float) -> int:
        with self.db.transaction():
            forgotten = self.db.execute("forget_dead_workers", {"alive_since": alive_since})
            if "journal_forget_orphans" in self.db.queries:
                # The journal of a worker whose row is gone (unregistered when found dead, or
                # forgotten just now), once no job still points to it (journal_table.py).
                self.db.execute("journal_forget_orphans")
        return forgotten
