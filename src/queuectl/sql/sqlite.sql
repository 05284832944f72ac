-- SQLite dialect. Parameters are :named. Times are REAL seconds since the epoch (UTC).
-- Every statement that changes a claimed job is guarded by `lease_token = :token AND
-- state = 'processing'`: a worker that lost its lease changes nothing (see DECISIONS.md).

-- name: migration_1
CREATE TABLE queuectl_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order within a priority
    id               TEXT NOT NULL UNIQUE,
    command          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN
                       ('pending', 'processing', 'completed', 'failed', 'dead', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,   -- charged runs (crashes are not charged)
    max_retries      INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    run_at           REAL NOT NULL,                -- not claimed before this time
    priority         INTEGER NOT NULL DEFAULT 0,
    queue            TEXT NOT NULL DEFAULT 'default',
    timeout          REAL,
    cwd              TEXT,
    env              TEXT,                         -- JSON object
    unique_key       TEXT,
    runs             INTEGER NOT NULL DEFAULT 0,   -- every start, charged or not
    crashes          INTEGER NOT NULL DEFAULT 0,   -- runs lost with their worker
    last_error       TEXT,
    exit_code        INTEGER,
    finished_at      REAL,
    -- set while processing: who owns the job and the process group that runs it
    worker_id        TEXT,
    host             TEXT,
    lease_token      TEXT,
    lease_expires_at REAL,
    started_at       REAL,
    pgid             INTEGER,
    pgid_started     TEXT                          -- boot id + start time: guards pid reuse
);

-- The claim walks this index in order and stops at the first due job.
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'failed', 'processing');

-- The dead letter queue of the seed's drawing. A view, not a copy: a job has exactly one row
-- and one state, so it can never be both in the DLQ and elsewhere, or lost between the two.
CREATE VIEW dlq AS
    SELECT id, command, attempts, max_retries, last_error, exit_code, crashes,
           created_at, finished_at AS died_at, queue
    FROM jobs WHERE state = 'dead';

CREATE TABLE attempts (
    job_id      TEXT NOT NULL,
    run         INTEGER NOT NULL,
    worker_id   TEXT,
    host        TEXT,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    outcome     TEXT NOT NULL,   -- completed, failed, crashed, released
    exit_code   INTEGER,
    error       TEXT,
    PRIMARY KEY (job_id, run)
);

CREATE TABLE config (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    pid_started    TEXT,                           -- boot id + start time: guards pid reuse
    queues         TEXT,
    started_at     REAL NOT NULL,
    heartbeat_at   REAL NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0
);

-- name: migration_2
-- Job options (issue 3): cancel requests, captured output, queue-aware claims, retention.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN output_bytes INTEGER;

-- Output of each run, in chunks as the worker flushes them, so `logs -f` on any host can
-- follow a running job. Only the head and the tail of a long output are kept: chunks that
-- fall in the middle are deleted as the tail moves on (see capture.py).
CREATE TABLE output_chunks (
    job_id     TEXT NOT NULL,
    run        INTEGER NOT NULL,
    start_byte INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (job_id, run, start_byte)
);

CREATE INDEX jobs_ready_by_queue ON jobs (queue, priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('completed', 'dead', 'cancelled');

-- name: migration_3
-- status, stats, /metrics and the dashboard read recent history by finish time: without this
-- index each of them scans every run ever recorded.
CREATE INDEX attempts_finished ON attempts (finished_at);

-- name: migration_4
-- Job counts per queue and state, kept by triggers, so `status`, /metrics and the dashboard
-- read a handful of rows instead of counting every job ever kept (DECISIONS.md §22). Same
-- shape as on PostgreSQL, where `shard` spreads the writers over several rows; SQLite has
-- one writer at a time, so it is always 0 here.
CREATE TABLE job_counts (
    queue      TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    pending    INTEGER NOT NULL DEFAULT 0,
    processing INTEGER NOT NULL DEFAULT 0,
    completed  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    dead       INTEGER NOT NULL DEFAULT 0,
    cancelled  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, shard)
);

INSERT INTO job_counts (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
SELECT queue, 0,
    SUM(state = 'pending'),
    SUM(state = 'processing'),
    SUM(state = 'completed'),
    SUM(state = 'failed'),
    SUM(state = 'dead'),
    SUM(state = 'cancelled')
FROM jobs GROUP BY queue;

CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
    VALUES (NEW.queue, 0, NEW.state = 'pending', NEW.state = 'processing',
            NEW.state = 'completed', NEW.state = 'failed', NEW.state = 'dead',
            NEW.state = 'cancelled')
    ON CONFLICT (queue, shard) DO UPDATE SET
        pending = pending + excluded.pending,
        processing = processing + excluded.processing,
        completed = completed + excluded.completed,
        failed = failed + excluded.failed,
        dead = dead + excluded.dead,
        cancelled = cancelled + excluded.cancelled;
END;

-- The claim and every finish change a job's state: one small UPDATE here per change.
CREATE TRIGGER jobs_counted_on_update AFTER UPDATE OF state ON jobs
WHEN OLD.state <> NEW.state AND OLD.queue = NEW.queue BEGIN
    UPDATE job_counts SET
        pending = pending + (NEW.state = 'pending') - (OLD.state = 'pending'),
        processing = processing + (NEW.state = 'processing') - (OLD.state = 'processing'),
        completed = completed + (NEW.state = 'completed') - (OLD.state = 'completed'),
        failed = failed + (NEW.state = 'failed') - (OLD.state = 'failed'),
        dead = dead + (NEW.state = 'dead') - (OLD.state = 'dead'),
        cancelled = cancelled + (NEW.state = 'cancelled') - (OLD.state = 'cancelled')
    WHERE queue = NEW.queue AND shard = 0;
END;

-- Nothing moves a job to another queue today; should anything, the counts follow.
CREATE TRIGGER jobs_counted_on_move AFTER UPDATE OF queue ON jobs
WHEN OLD.queue <> NEW.queue BEGIN
    UPDATE job_counts SET
        pending = pending - (OLD.state = 'pending'),
        processing = processing - (OLD.state = 'processing'),
        completed = completed - (OLD.state = 'completed'),
        failed = failed - (OLD.state = 'failed'),
        dead = dead - (OLD.state = 'dead'),
        cancelled = cancelled - (OLD.state = 'cancelled')
    WHERE queue = OLD.queue AND shard = 0;
    INSERT INTO job_counts (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
    VALUES (NEW.queue, 0, NEW.state = 'pending', NEW.state = 'processing',
            NEW.state = 'completed', NEW.state = 'failed', NEW.state = 'dead',
            NEW.state = 'cancelled')
    ON CONFLICT (queue, shard) DO UPDATE SET
        pending = pending + excluded.pending,
        processing = processing + excluded.processing,
        completed = completed + excluded.completed,
        failed = failed + excluded.failed,
        dead = dead + excluded.dead,
        cancelled = cancelled + excluded.cancelled;
END;

CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET
        pending = pending - (OLD.state = 'pending'),
        processing = processing - (OLD.state = 'processing'),
        completed = completed - (OLD.state = 'completed'),
        failed = failed - (OLD.state = 'failed'),
        dead = dead - (OLD.state = 'dead'),
        cancelled = cancelled - (OLD.state = 'cancelled')
    WHERE queue = OLD.queue AND shard = 0;
END;

-- jobs_by_state (state, seq) was rewritten at every state change of every job, and its
-- completed part, nearly all of it, grew by one entry per finished job. Counts no longer
-- need it; lists do, but a list of completed jobs walks the primary key from the newest job
-- instead (recent jobs are mostly completed ones), so the index leaves completed jobs out:
-- a job that completes drops out of it and is never added back.
DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_state_but_completed ON jobs (state, seq) WHERE state <> 'completed';

-- name: migration_5
-- Inserts are counted by the store (count_inserted: once per queue and batch), no longer by
-- a trigger per inserted row, which was half the time of a bulk enqueue (DECISIONS.md §22).
-- State changes and deletes are still counted by triggers.
DROP TRIGGER jobs_counted_on_insert;

-- name: migration_6
-- Nothing here: PostgreSQL's migration 6 makes its workers' journal table; a SQLite worker
-- journals to a file (journal.py). The version moves on both, one number per queuectl.

-- name: migration_7
-- SQLite builds a temporary b-tree for a list of more than two constants, `state IN ('a', 'b',
-- 'c')`, each time a statement evaluates it for a row being written: the CHECK of every
-- insert and state change, and the conditions of the partial indexes below. About 6 µs each,
-- five times per finished job and three per enqueued one (DECISIONS.md §33). The same
-- conditions as chains of `=`, which cost a few string compares, accept exactly the same rows.
--
-- The CHECK lives in the table's definition, which SQLite cannot alter; its own documented
-- procedure for changing a CHECK constraint edits the stored definition in place (nothing in
-- the file's rows changes; every existing row already passes the new, equivalent condition).
-- RESET re-reads the schema on this connection; rebuilding the indexes below changes the
-- schema cookie, so every other connection re-reads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = replace(sql,
    'CHECK (state IN
                       (''pending'', ''processing'', ''completed'', ''failed'', ''dead'', ''cancelled''))',
    'CHECK (state = ''pending'' OR state = ''processing'' OR state = ''completed''
                            OR state = ''failed'' OR state = ''dead'' OR state = ''cancelled'')')
WHERE type = 'table' AND name = 'jobs';
PRAGMA writable_schema = RESET;

-- A query uses a partial index only if its WHERE holds the index's condition as written:
-- insert_job's conflict target, live_job_with_key, dead_jobs_with_held_key and the purges
-- spell these chains the same way.
DROP INDEX jobs_unique_active;
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'pending' OR state = 'failed' OR state = 'processing');
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE (state = 'completed' OR state = 'dead' OR state = 'cancelled');

-- name: migration_8
-- Runs ever recorded, per queue and outcome: the Prometheus counters queuectl_attempts_total
-- and queuectl_failures_total, which /metrics counted from every row of the history at each
-- scrape (0.8 s at a million runs, and growing with them; DECISIONS.md §34). The store adds
-- to them in the transaction that records the runs (count_recorded_runs); nothing
-- subtracts: a purge of old history leaves the counters where they were, as a Prometheus
-- counter must (a drop reads as a reset, and rate() then counts the whole new value as fresh
-- runs). Same shape as PostgreSQL's, where `shard` spreads concurrent writers; always 0
-- here. WITHOUT ROWID: the table is its primary key, so a transaction that counts a run
-- writes one more page to the WAL, not two (the rows and a separate index of them).
CREATE TABLE attempt_counts (
    queue   TEXT NOT NULL,
    outcome TEXT NOT NULL,
    shard   INTEGER NOT NULL,
    runs    INTEGER NOT NULL,
    PRIMARY KEY (queue, outcome, shard)
) WITHOUT ROWID;

-- Filled from the history as it stands (runs already purged are not known any more).
INSERT INTO attempt_counts (queue, outcome, shard, runs)
SELECT j.queue, a.outcome, 0, COUNT(*)
FROM attempts a JOIN jobs j ON j.id = a.job_id
GROUP BY j.queue, a.outcome;

-- name: migration_9
-- `list --queue NAME` found a queue's jobs by walking every job, newest first: 0.1 s at a
-- million finished jobs for a queue with few jobs or none, and more with each job kept
-- (DECISIONS.md §36). Written once per job, when it is inserted: nothing after changes a
-- job's queue or seq, so claims and results never touch it.
CREATE INDEX jobs_by_queue ON jobs (queue, seq);

-- name: migration_10
-- Finished runs per minute, per queue, and how many of them failed (failed, timeout, crashed):
-- the throughput and failure rate of `status`, the dashboard's chart and /metrics. They read
-- every run of the last 15 or 30 minutes, capped at 200,000: under a steady 1,000 runs a
-- second `status` took 0.65 s and reported 200,000 runs for the 1,000,000 of its window
-- (DECISIONS.md §37). Added to in the transaction that records a finished run, as
-- attempt_counts is; runs that ended released or cancelled are not finished runs
-- (stats.py). A purge deletes the minutes before its cut-off. Same shape as PostgreSQL's,
-- where `shard` spreads concurrent writers; always 0 here.
CREATE TABLE run_minutes (
    minute   INTEGER NOT NULL,  -- the minute the runs finished in: floor(finished_at / 60)
    queue    TEXT NOT NULL,
    shard    INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    failed   INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, shard)
) WITHOUT ROWID;

-- Filled from the history as it stands.
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
SELECT CAST(a.finished_at / 60 AS INTEGER), j.queue, 0, count(*),
       sum(CASE WHEN a.outcome = 'completed' THEN 0 ELSE 1 END)
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.outcome IN ('completed', 'failed', 'timeout', 'crashed')
GROUP BY 1, 2;

-- name: migration_11
-- Nothing to change: PostgreSQL's migration 11 gives each connection counter rows of its own;
-- here one writer at a time keeps one row per queue (shard 0). The version moves on both.
SELECT 1;

-- name: schema_table_exists
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queuectl_meta'

-- name: any_table_exists
SELECT 1 FROM sqlite_master LIMIT 1

-- name: lock_schema
-- Nothing to do: the migration's BEGIN IMMEDIATE already made it the only writer.
SELECT 1

-- name: schema_version
SELECT value FROM queuectl_meta WHERE key = 'schema_version'

-- name: set_schema_version
INSERT INTO queuectl_meta (key, value) VALUES ('schema_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: insert_job
-- A live job (pending, failed or processing) with the same unique_key wins: nothing is
-- inserted (rowcount 0) and the caller reports that job instead.
INSERT INTO jobs (id, command, state, attempts, max_retries, created_at, updated_at, run_at,
                  priority, queue, timeout, cwd, env, unique_key)
VALUES (:id, :command, 'pending', 0, :max_retries, :now, :now, :run_at,
        :priority, :queue, :timeout, :cwd, :env, :unique_key)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                           AND (state = 'pending' OR state = 'failed' OR state = 'processing')
DO NOTHING

-- name: insert_job_batch
-- Jobs without a unique_key: the connector's execute_many repeats the VALUES row, one per job,
-- up to 500 per INSERT (multirow.py). A taken id fails the whole batch (the connector undoes
-- it), and the store names the id. The parameters are named as the columns they fill, as
-- PostgreSQL's COPY takes them.
INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at, run_at, priority,
                  queue, timeout, cwd, env)
VALUES (:id, :command, :state, :max_retries, :created_at, :updated_at, :run_at, :priority,
        :queue, :timeout, :cwd, :env)

-- name: notify_new_jobs
-- Nothing to do: SQLite workers see new commits through PRAGMA data_version.
SELECT 1

-- name: lock_for_recount
-- Nothing to do: BEGIN IMMEDIATE already keeps every other writer out until the recount commits.
SELECT 1

-- name: clear_counts
DELETE FROM job_counts

-- name: recount_jobs
-- The counts rebuilt from the jobs themselves, as migration 4 first filled them.
INSERT INTO job_counts (queue, shard, pending, processing, completed, failed, dead, cancelled)
SELECT queue, 0,
    SUM(state = 'pending'),
    SUM(state = 'processing'),
    SUM(state = 'completed'),
    SUM(state = 'failed'),
    SUM(state = 'dead'),
    SUM(state = 'cancelled')
FROM jobs GROUP BY queue

-- name: count_inserted
-- Jobs the store just inserted into one queue, by state (see migration_5).
INSERT INTO job_counts (queue, shard, pending, processing, completed, failed, dead, cancelled)
VALUES (:queue, 0, :pending, :processing, :completed, :failed, :dead, :cancelled)
ON CONFLICT (queue, shard) DO UPDATE SET
    pending = pending + excluded.pending,
    processing = processing + excluded.processing,
    completed = completed + excluded.completed,
    failed = failed + excluded.failed,
    dead = dead + excluded.dead,
    cancelled = cancelled + excluded.cancelled

-- name: live_job_with_key
SELECT id FROM jobs
WHERE unique_key = :unique_key
  AND (state = 'pending' OR state = 'failed' OR state = 'processing')

-- name: job_id_exists
SELECT 1 FROM jobs WHERE id = :id

-- name: claim_any
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = :worker_id, host = :host,
    lease_token = :token, lease_expires_at = :lease_until, started_at = :now,
    updated_at = :now, pgid = NULL, pgid_started = NULL
-- Not for a worker that `worker stop` asked to stop: read in the claim itself, so a
-- chained claim (record_and_claim) needs no statement of its own for it. A worker
-- without a row (a test, or forgotten as dead while frozen) may claim.
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = :worker_id AND stop_requested <> 0)
  AND seq = (
    -- INDEXED BY: without statistics (queuectl never runs ANALYZE) SQLite picks jobs_by_state
    -- and sorts every ready job, 25 ms per claim at 100k pending instead of 0.3 ms. Naming the
    -- index also makes SQLite refuse this query if a change ever made the index unusable.
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE state IN ('pending', 'failed') AND run_at <= :now
    ORDER BY priority DESC, run_at, seq
    LIMIT 1
)
RETURNING *

-- name: claim_any_many
-- claim_any for up to `most` jobs at once, the best first (a batch, DECISIONS.md §30): one
-- statement instead of one per job, about 20 µs less per job. SQLite runs the IN subquery once
-- (into a temporary index). Each job gets its own token: the claim's, dotted with its seq.
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = :worker_id, host = :host,
    lease_token = :token || '.' || seq, lease_expires_at = :lease_until, started_at = :now,
    updated_at = :now, pgid = NULL, pgid_started = NULL
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = :worker_id AND stop_requested <> 0)
  AND seq IN (
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE state IN ('pending', 'failed') AND run_at <= :now
    ORDER BY priority DESC, run_at, seq
    LIMIT :most
)
RETURNING *

-- name: claim_in_queues
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = :worker_id, host = :host,
    lease_token = :token, lease_expires_at = :lease_until, started_at = :now,
    updated_at = :now, pgid = NULL, pgid_started = NULL
-- Not for a worker that `worker stop` asked to stop: read in the claim itself, so a
-- chained claim (record_and_claim) needs no statement of its own for it. A worker
-- without a row (a test, or forgotten as dead while frozen) may claim.
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = :worker_id AND stop_requested <> 0)
  AND seq = (
    -- The best due job of each served queue, each found by walking jobs_ready_by_queue, then
    -- the best of those. Filtering one walk of jobs_ready by queue instead would step over
    -- every ready job of the queues this worker does not serve.
    SELECT best.seq FROM jobs AS best
    WHERE best.seq IN (
        SELECT (SELECT seq FROM jobs INDEXED BY jobs_ready_by_queue
                WHERE queue = served.value AND state IN ('pending', 'failed')
                  AND run_at <= :now
                ORDER BY priority DESC, run_at, seq
                LIMIT 1)
        FROM json_each(:queues) AS served)
    ORDER BY best.priority DESC, best.run_at, best.seq
    LIMIT 1
)
RETURNING *

-- name: unclaim_job
-- A claim undone before its run started: back to waiting (failed if an earlier run failed, as
-- before the claim), and the run the claim counted is taken back. A cancel asked meanwhile (the
-- job looked running: it waited in its worker's batch) is carried out now: cancelled.
UPDATE jobs
SET state = CASE WHEN cancel_requested <> 0 THEN 'cancelled'
                 WHEN attempts > 0 THEN 'failed' ELSE 'pending' END,
    finished_at = CASE WHEN cancel_requested <> 0 THEN :now ELSE finished_at END,
    last_error = CASE WHEN cancel_requested <> 0 THEN 'cancelled by user before it started'
                      ELSE last_error END,
    cancel_requested = 0, runs = runs - 1,
    worker_id = NULL, host = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = :now
WHERE id = :id AND lease_token = :token AND state = 'processing'

-- name: set_job_process
UPDATE jobs SET pgid = :pgid, pgid_started = :pgid_started
WHERE id = :id AND lease_token = :token AND state = 'processing'

-- name: renew_lease
UPDATE jobs SET lease_expires_at = :lease_until
WHERE id = :id AND lease_token = :token AND state = 'processing'

-- name: cancel_requested
SELECT cancel_requested FROM jobs
WHERE id = :id AND lease_token = :token AND state = 'processing'

-- name: cancel_waiting_job
UPDATE jobs
SET state = 'cancelled', finished_at = :now, updated_at = :now,
    last_error = 'cancelled by user'
WHERE id = :id AND state IN ('pending', 'failed')

-- name: request_cancel
UPDATE jobs SET cancel_requested = 1, updated_at = :now
WHERE id = :id AND state = 'processing'

-- name: insert_output_chunk
-- Only while the run still owns the job: a fenced-out worker stores nothing.
INSERT INTO output_chunks (job_id, run, start_byte, data)
SELECT :job_id, :run, :start_byte, :data
WHERE EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND lease_token = :token
                                   AND state = 'processing')
ON CONFLICT (job_id, run, start_byte) DO NOTHING

-- name: trim_output
DELETE FROM output_chunks
WHERE job_id = :job_id AND run = :run
  AND start_byte >= :head_end AND start_byte + length(data) <= :tail_start

-- name: output_chunks_since
-- Every chunk that holds a byte at or after from_byte (logs -f asks for what is new).
SELECT start_byte, data FROM output_chunks
WHERE job_id = :job_id AND run = :run AND start_byte + length(data) > :from_byte
ORDER BY start_byte

-- name: finish_job
UPDATE jobs
SET state = :state, attempts = :attempts, run_at = :run_at, exit_code = :exit_code,
    last_error = :error, finished_at = :finished_at, updated_at = :now, crashes = :crashes,
    worker_id = NULL, host = NULL, lease_token = NULL, lease_expires_at = NULL,
    pgid = NULL, pgid_started = NULL, cancel_requested = 0
WHERE id = :id AND lease_token = :token AND state = 'processing'

-- name: take_over_lost
UPDATE jobs SET lease_token = :new_token, lease_expires_at = :lease_until, updated_at = :now
WHERE id = :id AND lease_token = :token AND state = 'processing'
  AND (lease_expires_at < :now OR worker_id = :dead_worker_id)

-- name: jobs_of_worker
SELECT * FROM jobs WHERE state = 'processing' AND worker_id = :worker_id

-- name: workers_on_host
SELECT id, pid, pid_started FROM workers WHERE host = :host

-- name: expired_jobs
SELECT * FROM jobs
WHERE state = 'processing' AND lease_expires_at < :now
ORDER BY lease_expires_at
LIMIT 100

-- name: insert_attempt
INSERT INTO attempts (job_id, run, worker_id, host, started_at, finished_at, outcome,
                      exit_code, error, output_bytes)
VALUES (:job_id, :run, :worker_id, :host, :started_at, :finished_at, :outcome,
        :exit_code, :error, :output_bytes)
ON CONFLICT (job_id, run) DO NOTHING

-- name: insert_attempt_after_finish
-- insert_attempt for a result held in a batch (Connector.queue), sent right after its
-- finish_job: nothing reads finish_job's row count before both have run, so this statement
-- checks it itself. changes() is the row count of the connection's last completed INSERT,
-- UPDATE or DELETE (not counting what triggers did): 1 when finish_job still owned the job.
INSERT INTO attempts (job_id, run, worker_id, host, started_at, finished_at, outcome,
                      exit_code, error, output_bytes)
SELECT :job_id, :run, :worker_id, :host, :started_at, :finished_at, :outcome,
       :exit_code, :error, :output_bytes
WHERE changes() = 1
ON CONFLICT (job_id, run) DO NOTHING

-- name: count_recorded_runs
-- The run counters (migration 8): :runs more runs in :queue that ended :outcome, sent by
-- JobStore._count_batch_runs once per queue and outcome for the results of a batch (or the
-- one result recorded outside a batch) whose attempt rows were inserted: no trigger, which
-- did the same at twice the cost (DECISIONS.md §34).
INSERT INTO attempt_counts (queue, outcome, shard, runs)
VALUES (:queue, :outcome, 0, :runs)
ON CONFLICT (queue, outcome, shard) DO UPDATE SET runs = runs + excluded.runs

-- name: count_finished_minutes
-- The finished runs of a minute (migration 10), the same way: :finished more finished runs
-- in :queue in :minute, :failed of them failures.
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
VALUES (:minute, :queue, 0, :finished, :failed)
ON CONFLICT (minute, queue, shard) DO UPDATE
SET finished = finished + excluded.finished, failed = failed + excluded.failed

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: list_jobs
-- Newest first, walking the primary key backwards: also serves completed jobs (which
-- jobs_by_state_but_completed leaves out), as the newest jobs are mostly completed ones.
SELECT * FROM jobs
WHERE (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY seq DESC LIMIT :limit

-- name: list_jobs_in_state
-- Any state but completed, on jobs_by_state_but_completed (its condition is repeated so the
-- planner can use it): the newest :limit of that state without a scan.
SELECT * FROM jobs
WHERE state = :state AND state <> 'completed'
  AND (:queue IS NULL OR queue = :queue)
ORDER BY seq DESC LIMIT :limit

-- name: list_jobs_in_queue
-- One queue's jobs, newest first, on jobs_by_queue: as many index entries as that queue has
-- jobs at most, however many other queues hold (JobStore.list says when it is used).
-- INDEXED BY: without statistics SQLite cannot tell this index from the others.
SELECT * FROM jobs INDEXED BY jobs_by_queue
WHERE queue = :queue
  AND (:state IS NULL OR state = :state)
ORDER BY seq DESC LIMIT :limit

-- name: states_of
SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: count_by_state
-- From the counts migration_4's triggers keep: a few rows, however many jobs.
SELECT COALESCE(SUM(pending), 0) AS pending,
       COALESCE(SUM(processing), 0) AS processing,
       COALESCE(SUM(completed), 0) AS completed,
       COALESCE(SUM(failed), 0) AS failed,
       COALESCE(SUM(dead), 0) AS dead,
       COALESCE(SUM(cancelled), 0) AS cancelled
FROM job_counts

-- name: count_by_queue_and_state
-- A queue is listed while it holds a job (its counts row stays once it is empty).
SELECT queue,
       SUM(pending) AS pending,
       SUM(processing) AS processing,
       SUM(completed) AS completed,
       SUM(failed) AS failed,
       SUM(dead) AS dead,
       SUM(cancelled) AS cancelled
FROM job_counts
GROUP BY queue
HAVING SUM(pending + processing + completed + failed + dead + cancelled) > 0
ORDER BY queue

-- name: attempt_history
-- Runs that finished since a cut-off, with what stats.py needs to tell how long each waited:
-- the job's due time is known for its latest run once the job is finished (completed, dead
-- and cancelled keep run_at); an earlier run waited since the run before it ended (or, for the
-- first run, since the job was created). Newest first, capped, so a huge history costs a
-- bounded read.
SELECT a.job_id, a.run, a.started_at, a.finished_at, a.outcome, j.queue, j.command,
       CASE WHEN a.run = j.runs AND j.state IN ('completed', 'dead', 'cancelled')
            THEN j.run_at END AS due_at,
       CASE WHEN a.run = 1 THEN j.created_at
            ELSE (SELECT p.finished_at FROM attempts p
                  WHERE p.job_id = a.job_id AND p.run = a.run - 1) END AS ready_at
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.finished_at >= :since
ORDER BY a.finished_at DESC
LIMIT :limit

-- name: attempt_totals
-- Every run ever recorded, by queue and outcome: the Prometheus counters (migration 8 keeps
-- them; a few rows, however long the history).
SELECT queue, outcome, SUM(runs) AS n
FROM attempt_counts
GROUP BY queue, outcome

-- name: oldest_due_job
SELECT MIN(run_at) AS run_at FROM jobs WHERE state IN ('pending', 'failed') AND run_at <= :now

-- name: last_seq
SELECT MAX(seq) AS seq FROM jobs

-- name: page_jobs
-- A page of the dashboard's job list, newest first, resumed below the last seq shown (keyset
-- paging: page 100 costs what page 1 does). Walks the primary key backwards and stops at
-- :limit matches, or at :floor (a search looks at a window of jobs per page, see
-- JobStore.page); the text filter is a plain substring test on id and command. Also the
-- page of completed jobs, which are most of the newest ones.
SELECT * FROM jobs
WHERE seq < :before AND seq >= :floor
  AND (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue)
  AND (:text IS NULL OR instr(id || ' ' || command, :text) > 0)
ORDER BY seq DESC
LIMIT :limit

-- name: page_jobs_in_state
-- The same in one state other than completed, on jobs_by_state_but_completed: a rare state
-- is found without a scan.
SELECT * FROM jobs INDEXED BY jobs_by_state_but_completed 
WHERE state = :state AND state <> 'completed' AND seq < :before AND seq >= :floor
  AND (:queue IS NULL OR queue = :queue)
  AND (:text IS NULL OR instr(id || ' ' || command, :text) > 0)
ORDER BY seq DESC
LIMIT :limit

-- name: page_jobs_in_queue
-- The same for one queue, on jobs_by_queue, when its jobs are the shorter walk (JobStore.page).
SELECT * FROM jobs INDEXED BY jobs_by_queue
WHERE queue = :queue AND seq < :before AND seq >= :floor
  AND (:state IS NULL OR state = :state)
  AND (:text IS NULL OR instr(id || ' ' || command, :text) > 0)
ORDER BY seq DESC
LIMIT :limit

-- name: finished_by_minute
-- Finished and failed runs in each minute from :first_minute on (migration 10): a few rows per
-- minute, however many runs.
SELECT minute, sum(finished) AS finished, sum(failed) AS failed
FROM run_minutes
WHERE minute >= :first_minute
GROUP BY minute

-- name: finished_between
-- Finished and failed runs with :since <= finished_at < :until, counted from the history: for
-- the part of a window's first minute that the window holds (never more than a minute).
SELECT count(*) AS finished,
       COALESCE(sum(CASE WHEN outcome = 'completed' THEN 0 ELSE 1 END), 0) AS failed
FROM attempts
WHERE finished_at >= :since AND finished_at < :until
  AND outcome IN ('completed', 'failed', 'timeout', 'crashed')

-- name: clear_run_minutes
DELETE FROM run_minutes

-- name: recount_run_minutes
-- Rebuilt from the history (status --recount).
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
SELECT CAST(a.finished_at / 60 AS INTEGER), j.queue, 0, count(*),
       sum(CASE WHEN a.outcome = 'completed' THEN 0 ELSE 1 END)
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.outcome IN ('completed', 'failed', 'timeout', 'crashed')
GROUP BY 1, 2

-- name: purge_run_minutes
-- Whole minutes before the cut-off: their runs' history may be gone.
DELETE FROM run_minutes WHERE (minute + 1) * 60 <= :before

-- name: job_attempts
SELECT * FROM attempts WHERE job_id = :job_id ORDER BY run

-- name: dlq_list
-- The dlq view's rows, read from jobs so that the planner sees the condition of
-- jobs_by_state_but_completed and finds the dead jobs without a scan.
SELECT id, command, attempts, max_retries, last_error, exit_code, crashes,
       created_at, finished_at AS died_at, queue
FROM jobs
WHERE state = 'dead' AND state <> 'completed'
ORDER BY died_at DESC, id LIMIT :limit

-- name: dlq_retry
UPDATE jobs
SET state = 'pending', attempts = 0, crashes = 0, run_at = :now, updated_at = :now,
    finished_at = NULL
WHERE id = :id AND state = 'dead'

-- name: dlq_retry_all
UPDATE jobs
SET state = 'pending', attempts = 0, crashes = 0, run_at = :now, updated_at = :now,
    finished_at = NULL
WHERE state = 'dead' AND state <> 'completed'  -- on jobs_by_state_but_completed

-- name: dead_jobs_with_held_key
-- The dead jobs `dlq retry --all` leaves dead: a live job holds their unique_key.
SELECT dead.id FROM jobs AS dead
WHERE dead.state = 'dead' AND dead.state <> 'completed'  -- on jobs_by_state_but_completed
  AND dead.unique_key IS NOT NULL
  AND EXISTS (SELECT 1 FROM jobs AS live
              WHERE live.unique_key = dead.unique_key
                AND (live.state = 'pending' OR live.state = 'failed'
                     OR live.state = 'processing'))
ORDER BY dead.seq

-- name: purge_output
-- purge_*: finished jobs older than a cut-off, oldest first, in bounded batches so a big purge
-- never holds the write lock for long. Output, then history, then the jobs, in one transaction;
-- the job rows go last so the three subqueries pick the same batch. The literal chain of
-- finished states lets the planner walk jobs_finished in finish order.
DELETE FROM output_chunks WHERE job_id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT value FROM json_each(:states))
      AND (state = 'completed' OR state = 'dead' OR state = 'cancelled')
      AND finished_at < :before
    ORDER BY finished_at, seq LIMIT :limit)

-- name: purge_attempts
DELETE FROM attempts WHERE job_id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT value FROM json_each(:states))
      AND (state = 'completed' OR state = 'dead' OR state = 'cancelled')
      AND finished_at < :before
    ORDER BY finished_at, seq LIMIT :limit)

-- name: purge_jobs
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT value FROM json_each(:states))
      AND (state = 'completed' OR state = 'dead' OR state = 'cancelled')
      AND finished_at < :before
    ORDER BY finished_at, seq LIMIT :limit)

-- name: config_all
SELECT key, value FROM config ORDER BY key

-- name: config_set
INSERT INTO config (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: config_unset
DELETE FROM config WHERE key = :key

-- name: register_worker
INSERT INTO workers (id, host, pid, pid_started, queues, started_at, heartbeat_at)
VALUES (:id, :host, :pid, :pid_started, :queues, :now, :now)

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = :now WHERE id = :id

-- name: worker_stop_requested
SELECT stop_requested FROM workers WHERE id = :id

-- name: mark_worker_stopping
-- A worker stopping by a signal says so, as `worker stop` does for it (status: "stopping").
UPDATE workers SET stop_requested = 1 WHERE id = :id

-- name: mark_worker_paused
-- stop_requested also says why a live worker takes no job: 1 stopping, 2 paused (Ctrl-Z,
-- pausing.py), 0 neither. A stop wins over a pause and is never undone by a resume.
UPDATE workers SET stop_requested = 2 WHERE id = :id AND stop_requested = 0

-- name: mark_worker_resumed
UPDATE workers SET stop_requested = 0 WHERE id = :id AND stop_requested = 2

-- name: unregister_worker
DELETE FROM workers WHERE id = :id

-- name: request_stop
UPDATE workers SET stop_requested = 1 WHERE heartbeat_at >= :alive_since

-- name: live_workers
SELECT w.*, j.id AS current_job, j.started_at AS job_started_at
FROM workers w
LEFT JOIN jobs j ON j.worker_id = w.id AND j.state = 'processing'
                 AND j.state <> 'completed'  -- on jobs_by_state_but_completed
WHERE w.heartbeat_at >= :alive_since
ORDER BY w.started_at, w.id

-- name: forget_dead_workers
DELETE FROM workers WHERE heartbeat_at < :alive_since

-- name: any_job
-- This block and the ones below serve `queuectl migrate` (transfer.py).
SELECT 1 FROM jobs LIMIT 1

-- name: lock_for_import
-- Nothing to do: BEGIN IMMEDIATE already keeps every other writer out until the copy commits.
SELECT 1

-- name: export_jobs
SELECT * FROM jobs WHERE seq > :after ORDER BY seq LIMIT :limit

-- name: export_attempts
SELECT * FROM attempts WHERE (job_id, run) > (:job_id, :run)
ORDER BY job_id, run LIMIT :limit

-- name: export_run_minutes
-- The finished runs per minute as they are (migration 10), shards summed: a copy keeps the
-- counts of runs its source's purges left in a minute they did not wholly delete.
SELECT minute, queue, sum(finished) AS finished, sum(failed) AS failed
FROM run_minutes WHERE (minute, queue) > (:minute, :queue)
GROUP BY minute, queue ORDER BY minute, queue LIMIT :limit

-- name: import_run_minute
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
VALUES (:minute, :queue, 0, :finished, :failed)

-- name: import_job
-- Every column, seq included, so the copy keeps the order of the queue. A column added by a
-- later migration must be added here too (transfer.py refuses to copy a column it cannot write).
INSERT INTO jobs (
    seq, id, command, state, attempts, max_retries, created_at, updated_at, run_at,
    priority, queue, timeout, cwd, env, unique_key, runs, crashes, last_error,
    exit_code, finished_at, worker_id, host, lease_token, lease_expires_at, started_at,
    pgid, pgid_started, cancel_requested
) VALUES (
    :seq, :id, :command, :state, :attempts, :max_retries, :created_at, :updated_at,
    :run_at, :priority, :queue, :timeout, :cwd, :env, :unique_key, :runs, :crashes,
    :last_error, :exit_code, :finished_at, :worker_id, :host, :lease_token,
    :lease_expires_at, :started_at, :pgid, :pgid_started, :cancel_requested
)

-- name: import_attempt
INSERT INTO attempts (job_id, run, worker_id, host, started_at,
                      finished_at, outcome, exit_code, error, output_bytes)
VALUES (:job_id, :run, :worker_id, :host, :started_at, :finished_at, :outcome, :exit_code,
        :error, :output_bytes)

-- name: export_output
SELECT * FROM output_chunks WHERE (job_id, run, start_byte) > (:job_id, :run, :start_byte)
ORDER BY job_id, run, start_byte LIMIT :limit

-- name: import_output
INSERT INTO output_chunks (job_id, run, start_byte, data)
VALUES (:job_id, :run, :start_byte, :data)

-- name: clear_attempt_counts
-- An import's run counters are the source's (its attempt_totals), not its history recounted:
-- runs purged from the source's history still count (see migration_8).
DELETE FROM attempt_counts

-- name: import_attempt_count
INSERT INTO attempt_counts (queue, outcome, shard, runs)
VALUES (:queue, :outcome, 0, :n)

-- name: finish_import
-- Nothing to do: AUTOINCREMENT already moved past the largest seq inserted.
SELECT 1
