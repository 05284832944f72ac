-- PostgreSQL dialect: the same blocks and meanings as sqlite.sql. Parameters are %(named)s
-- (psycopg), so a literal percent sign in a block with parameters must be written twice.
-- Times are DOUBLE PRECISION seconds since the epoch, as on SQLite, so `queuectl migrate`
-- copies values unchanged between the two.
--
-- Wake-ups: statements that make a job claimable (or ask workers to stop) also call
-- pg_notify('queuectl', ...). It is delivered at commit, so idle workers LISTENing on
-- that channel look for work at once instead of at their next poll. They are wrapped as
-- `WITH changed AS (...) SELECT ... FROM changed` so the statement still reports one row
-- per changed row, which is the count the JobStore checks.

-- name: migration_1
CREATE TABLE queuectl_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,           -- FIFO order within a priority
    id               TEXT NOT NULL UNIQUE,
    command          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN
                       ('pending', 'processing', 'completed', 'failed', 'dead', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,      -- charged runs (crashes are not charged)
    max_retries      INTEGER NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    run_at           DOUBLE PRECISION NOT NULL,       -- not claimed before this time
    priority         INTEGER NOT NULL DEFAULT 0,
    queue            TEXT NOT NULL DEFAULT 'default',
    timeout          DOUBLE PRECISION,
    cwd              TEXT,
    env              TEXT,                            -- JSON object, as text like SQLite
    unique_key       TEXT,
    runs             INTEGER NOT NULL DEFAULT 0,      -- every start, charged or not
    crashes          INTEGER NOT NULL DEFAULT 0,      -- runs lost with their worker
    last_error       TEXT,
    exit_code        INTEGER,
    finished_at      DOUBLE PRECISION,
    -- set while processing: who owns the job and the process group that runs it
    worker_id        TEXT,
    host             TEXT,
    lease_token      TEXT,
    lease_expires_at DOUBLE PRECISION,
    started_at       DOUBLE PRECISION,
    pgid             BIGINT,
    pgid_started     TEXT                             -- boot id + start time: guards pid reuse
);

-- The claim walks this index in order and stops at the first due job it can lock.
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'failed', 'processing');

-- The dead letter queue is a view, as on SQLite: one row and one state per job.
CREATE VIEW dlq AS
    SELECT id, command, attempts, max_retries, last_error, exit_code, crashes,
           created_at, finished_at AS died_at, queue
    FROM jobs WHERE state = 'dead';

CREATE TABLE attempts (
    job_id      TEXT NOT NULL,
    run         INTEGER NOT NULL,
    worker_id   TEXT,
    host        TEXT,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
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
    pid            BIGINT NOT NULL,
    pid_started    TEXT,                              -- boot id + start time: guards pid reuse
    queues         TEXT,
    started_at     DOUBLE PRECISION NOT NULL,
    heartbeat_at   DOUBLE PRECISION NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0
);

-- name: migration_2
-- Job options: cancel requests, captured output, queue-aware claims, retention.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN output_bytes BIGINT;

CREATE TABLE output_chunks (
    job_id     TEXT NOT NULL,
    run        INTEGER NOT NULL,
    start_byte BIGINT NOT NULL,
    data       BYTEA NOT NULL,
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
-- read a handful of rows instead of counting every job ever kept (DECISIONS.md §22).
-- Several workers change states at once here, and a counter row stays locked from the
-- change to the commit: one row per queue would make every claim and finish wait for the
-- others. So each connection adds its changes to its own shard (backend pid mod 16) and a
-- count is the sum over the shards. One shard's values mean nothing on their own (they go
-- negative when a job counted in one shard finishes in another); only the sums do.
-- (Migration 11 gives each connection a shard no other one writes: pids mod 16 collide.)
CREATE TABLE job_counts (
    queue      TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    pending    BIGINT NOT NULL DEFAULT 0,
    processing BIGINT NOT NULL DEFAULT 0,
    completed  BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0,
    dead       BIGINT NOT NULL DEFAULT 0,
    cancelled  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, shard)
);

INSERT INTO job_counts (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
SELECT queue, 0,
    count(*) FILTER (WHERE state = 'pending'),
    count(*) FILTER (WHERE state = 'processing'),
    count(*) FILTER (WHERE state = 'completed'),
    count(*) FILTER (WHERE state = 'failed'),
    count(*) FILTER (WHERE state = 'dead'),
    count(*) FILTER (WHERE state = 'cancelled')
FROM jobs GROUP BY queue;

-- Inserts and deletes come in batches (a bulk enqueue, a purge): counted once per statement.
CREATE FUNCTION queuectl_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
    SELECT queue, mod(pg_backend_pid(), 16),
        count(*) FILTER (WHERE state = 'pending'),
        count(*) FILTER (WHERE state = 'processing'),
        count(*) FILTER (WHERE state = 'completed'),
        count(*) FILTER (WHERE state = 'failed'),
        count(*) FILTER (WHERE state = 'dead'),
        count(*) FILTER (WHERE state = 'cancelled')
    FROM inserted GROUP BY queue ORDER BY queue
    ON CONFLICT (queue, shard) DO UPDATE SET
        pending = c.pending + excluded.pending,
        processing = c.processing + excluded.processing,
        completed = c.completed + excluded.completed,
        failed = c.failed + excluded.failed,
        dead = c.dead + excluded.dead,
        cancelled = c.cancelled + excluded.cancelled;
    RETURN NULL;
END
$$;

CREATE FUNCTION queuectl_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
    SELECT queue, mod(pg_backend_pid(), 16),
        -count(*) FILTER (WHERE state = 'pending'),
        -count(*) FILTER (WHERE state = 'processing'),
        -count(*) FILTER (WHERE state = 'completed'),
        -count(*) FILTER (WHERE state = 'failed'),
        -count(*) FILTER (WHERE state = 'dead'),
        -count(*) FILTER (WHERE state = 'cancelled')
    FROM deleted GROUP BY queue ORDER BY queue
    ON CONFLICT (queue, shard) DO UPDATE SET
        pending = c.pending + excluded.pending,
        processing = c.processing + excluded.processing,
        completed = c.completed + excluded.completed,
        failed = c.failed + excluded.failed,
        dead = c.dead + excluded.dead,
        cancelled = c.cancelled + excluded.cancelled;
    RETURN NULL;
END
$$;

-- A state change (the claim, every finish) is one job: counted per row, one upsert.
CREATE FUNCTION queuectl_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.queue = NEW.queue THEN
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (NEW.queue, mod(pg_backend_pid(), 16),
            (NEW.state = 'pending')::int - (OLD.state = 'pending')::int,
            (NEW.state = 'processing')::int - (OLD.state = 'processing')::int,
            (NEW.state = 'completed')::int - (OLD.state = 'completed')::int,
            (NEW.state = 'failed')::int - (OLD.state = 'failed')::int,
            (NEW.state = 'dead')::int - (OLD.state = 'dead')::int,
            (NEW.state = 'cancelled')::int - (OLD.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
    ELSE
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (OLD.queue, mod(pg_backend_pid(), 16),
            -(OLD.state = 'pending')::int,
            -(OLD.state = 'processing')::int,
            -(OLD.state = 'completed')::int,
            -(OLD.state = 'failed')::int,
            -(OLD.state = 'dead')::int,
            -(OLD.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (NEW.queue, mod(pg_backend_pid(), 16),
            (NEW.state = 'pending')::int,
            (NEW.state = 'processing')::int,
            (NEW.state = 'completed')::int,
            (NEW.state = 'failed')::int,
            (NEW.state = 'dead')::int,
            (NEW.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl_count_inserted();
CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl_count_deleted();
CREATE TRIGGER jobs_counted_on_update AFTER UPDATE OF state, queue ON jobs
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.queue IS DISTINCT FROM NEW.queue)
    EXECUTE FUNCTION queuectl_count_updated();

-- jobs_by_state (state, seq) was rewritten at every state change of every job, and its
-- completed part, nearly all of it, grew by one entry per finished job. Counts no longer
-- need it; lists do, but a list of completed jobs walks the primary key from the newest job
-- instead (recent jobs are mostly completed ones), so the index leaves completed jobs out:
-- a job that completes drops out of it and is never added back.
DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_state_but_completed ON jobs (state, seq) WHERE state <> 'completed';

-- name: migration_5
-- Inserts are counted by the store (count_inserted: once per queue and batch), as on SQLite,
-- where a trigger per inserted row was half the time of a bulk enqueue; one rule for both
-- backends (DECISIONS.md §22). State changes and deletes are still counted by triggers.
DROP TRIGGER jobs_counted_on_insert ON jobs;
DROP FUNCTION queuectl_count_inserted();

-- name: migration_6
-- The journal of workers that run short jobs in batches (DECISIONS.md §31): each job's start,
-- and each finished job's result until the commit that records it. UNLOGGED: its rows are
-- written without a WAL flush (a commit that touches only unlogged tables does not wait for
-- the disk), which is the whole point: one such write per job costs a fraction of a durable
-- commit. The server empties it when it recovers from a crash; the worker still holds what it
-- journaled then, and records it when it reconnects. Only the worker and the server lost
-- together lose a held result. A job_id of '' is the marker row: this worker keeps a journal.
CREATE UNLOGGED TABLE worker_journal (
    worker_id   TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    token       TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    exit_code   INTEGER,           -- NULL: started, no result yet
    finished_at DOUBLE PRECISION,
    output      BYTEA
);
CREATE INDEX worker_journal_by_worker ON worker_journal (worker_id);

-- name: migration_7
-- Nothing to change: SQLite's migration 7 rewrites lists of states that cost it a temporary
-- b-tree per written row; PostgreSQL tests such a list against an array. The version moves
-- on both, one number per queuectl.
SELECT 1;

-- name: migration_8
-- Runs ever recorded, per queue and outcome: the Prometheus counters queuectl_attempts_total
-- and queuectl_failures_total, which /metrics counted from every row of the history at each
-- scrape (DECISIONS.md §34). Added to as runs are recorded; nothing subtracts: a purge of old
-- history leaves the counters where they were, as a Prometheus counter must (a drop reads as
-- a reset, and rate() then counts the whole new value as fresh runs). Sharded per connection
-- as job_counts is (migration 4), so workers finishing at once do not queue on one row.
CREATE TABLE attempt_counts (
    queue   TEXT NOT NULL,
    outcome TEXT NOT NULL,
    shard   INTEGER NOT NULL,
    runs    BIGINT NOT NULL,
    PRIMARY KEY (queue, outcome, shard)
);

-- Filled from the history as it stands (runs already purged are not known any more).
INSERT INTO attempt_counts (queue, outcome, shard, runs)
SELECT j.queue, a.outcome, 0, count(*)
FROM attempts a JOIN jobs j ON j.id = a.job_id
GROUP BY j.queue, a.outcome;

-- No trigger keeps this table here: a statement trigger cost about 50 µs per recorded run on
-- this server (a tenth of a job's queue cost), so each statement that records a run counts
-- it in the same statement, a CTE (finish_job_with_attempt, insert_attempt; an import sets
-- the counters from its source's). tests/unit/test_sql_dialects.py holds every statement
-- that inserts into attempts to this.

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
-- (stats.py). A purge deletes the minutes before its cut-off. Sharded per connection as
-- attempt_counts is (migration 8), so workers finishing in the same minute do not queue on
-- one row.
CREATE TABLE run_minutes (
    minute   BIGINT NOT NULL,  -- the minute the runs finished in: floor(finished_at / 60)
    queue    TEXT NOT NULL,
    shard    INTEGER NOT NULL,
    finished BIGINT NOT NULL,
    failed   BIGINT NOT NULL,
    PRIMARY KEY (minute, queue, shard)
);

-- Filled from the history as it stands.
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
SELECT floor(a.finished_at / 60)::bigint, j.queue, 0, count(*),
       sum(CASE WHEN a.outcome = 'completed' THEN 0 ELSE 1 END)
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.outcome IN ('completed', 'failed', 'timeout', 'crashed')
GROUP BY 1, 2;

-- name: migration_11
-- Each connection writes its counts to a shard of its own (DECISIONS.md §38). Until now its
-- shard was `backend pid mod 16`, so two connections whose pids share a remainder shared
-- counter rows; their transactions queued behind each other's commits, and two that touched
-- two queues' rows in opposite orders (a worker's batch of results from queues a and b, a
-- cancel of jobs in b and a) deadlocked: PostgreSQL ended one after deadlock_timeout (1 s)
-- and its worker retried. Now a connection's first counted change takes the lowest free
-- shard from 16 up, as a session advisory lock that it holds until it disconnects, and
-- remembers it in a session setting; no other connection can write that shard meanwhile.
-- Shards 0 to 15 keep what was counted before, and what an older queuectl still running
-- after the upgrade counts in its own statements; only sums ever mean anything.
CREATE FUNCTION queuectl_shard() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    shard integer := nullif(current_setting('queuectl.shard', true), '')::integer;
BEGIN
    IF shard IS NULL THEN
        -- The setting is gone when the transaction that made it rolled back, but a session
        -- advisory lock is not transactional: take up the shard this session holds already.
        SELECT min(objid)::integer INTO shard FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid()
          AND classid = 1902343276 AND objsubid = 2;
        IF shard IS NULL THEN
            shard := 16;
            WHILE NOT pg_try_advisory_lock(1902343276, shard) LOOP
                shard := shard + 1;
            END LOOP;
        END IF;
        PERFORM set_config('queuectl.shard', shard::text, false);
    END IF;
    RETURN shard;
END
$$;

CREATE OR REPLACE FUNCTION queuectl_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
    SELECT queue, queuectl_shard(),
        -count(*) FILTER (WHERE state = 'pending'),
        -count(*) FILTER (WHERE state = 'processing'),
        -count(*) FILTER (WHERE state = 'completed'),
        -count(*) FILTER (WHERE state = 'failed'),
        -count(*) FILTER (WHERE state = 'dead'),
        -count(*) FILTER (WHERE state = 'cancelled')
    FROM deleted GROUP BY queue ORDER BY queue
    ON CONFLICT (queue, shard) DO UPDATE SET
        pending = c.pending + excluded.pending,
        processing = c.processing + excluded.processing,
        completed = c.completed + excluded.completed,
        failed = c.failed + excluded.failed,
        dead = c.dead + excluded.dead,
        cancelled = c.cancelled + excluded.cancelled;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION queuectl_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    own_shard integer := queuectl_shard();  -- a column is named shard
BEGIN
    IF OLD.queue = NEW.queue THEN
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (NEW.queue, own_shard,
            (NEW.state = 'pending')::int - (OLD.state = 'pending')::int,
            (NEW.state = 'processing')::int - (OLD.state = 'processing')::int,
            (NEW.state = 'completed')::int - (OLD.state = 'completed')::int,
            (NEW.state = 'failed')::int - (OLD.state = 'failed')::int,
            (NEW.state = 'dead')::int - (OLD.state = 'dead')::int,
            (NEW.state = 'cancelled')::int - (OLD.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
    ELSE
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (OLD.queue, own_shard,
            -(OLD.state = 'pending')::int,
            -(OLD.state = 'processing')::int,
            -(OLD.state = 'completed')::int,
            -(OLD.state = 'failed')::int,
            -(OLD.state = 'dead')::int,
            -(OLD.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
        INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed,
                                  dead, cancelled)
        VALUES (NEW.queue, own_shard,
            (NEW.state = 'pending')::int,
            (NEW.state = 'processing')::int,
            (NEW.state = 'completed')::int,
            (NEW.state = 'failed')::int,
            (NEW.state = 'dead')::int,
            (NEW.state = 'cancelled')::int)
        ON CONFLICT (queue, shard) DO UPDATE SET
            pending = c.pending + excluded.pending,
            processing = c.processing + excluded.processing,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            dead = c.dead + excluded.dead,
            cancelled = c.cancelled + excluded.cancelled;
    END IF;
    RETURN NULL;
END
$$;

-- name: schema_table_exists
SELECT 1 FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name = 'queuectl_meta'

-- name: any_table_exists
SELECT 1 FROM pg_tables WHERE schemaname = current_schema() LIMIT 1

-- name: lock_schema
-- Processes starting at once queue here; each then re-reads the version after the previous
-- one committed (READ COMMITTED), so exactly one of them creates the tables. Without it, two
-- concurrent CREATE TABLE fail on the catalog's unique indexes. The key is 'qctl' in ASCII.
SELECT pg_advisory_xact_lock(1902343276)

-- name: schema_version
SELECT value FROM queuectl_meta WHERE key = 'schema_version'

-- name: set_schema_version
INSERT INTO queuectl_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: insert_job
WITH changed AS (
    INSERT INTO jobs (id, command, state, attempts, max_retries, created_at, updated_at,
                      run_at, priority, queue, timeout, cwd, env, unique_key)
    VALUES (%(id)s, %(command)s, 'pending', 0, %(max_retries)s, %(now)s, %(now)s, %(run_at)s,
            %(priority)s, %(queue)s, %(timeout)s, %(cwd)s, %(env)s, %(unique_key)s)
    -- A live job with the same unique_key wins: no row, and the caller reports that job.
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                               AND state IN ('pending', 'failed', 'processing')
    DO NOTHING
    RETURNING 1
)
SELECT pg_notify('queuectl', 'job') FROM changed

-- name: insert_job_batch
-- Jobs without a unique_key, a whole batch in one COPY: the connector's execute_many streams
-- each row's values for these columns, named as the row's keys. About twice as fast as one
-- INSERT unpacking the rows from a JSON array on the server (DECISIONS.md §33). One
-- notify_new_jobs follows the whole enqueue; seq follows the rows' order.
COPY jobs (id, command, state, max_retries, created_at, updated_at, run_at, priority, queue,
           timeout, cwd, env) FROM STDIN

-- name: notify_new_jobs
SELECT pg_notify('queuectl', 'job')

-- name: lock_for_recount
-- Writers wait until the recount commits (their counter updates would race it); readers go on.
LOCK TABLE jobs IN EXCLUSIVE MODE

-- name: clear_counts
DELETE FROM job_counts

-- name: recount_jobs
-- The counts rebuilt from the jobs themselves, as migration 4 first filled them (shard 0;
-- the writers' own shards grow from there).
INSERT INTO job_counts (queue, shard, pending, processing, completed, failed, dead, cancelled)
SELECT queue, 0,
    count(*) FILTER (WHERE state = 'pending'),
    count(*) FILTER (WHERE state = 'processing'),
    count(*) FILTER (WHERE state = 'completed'),
    count(*) FILTER (WHERE state = 'failed'),
    count(*) FILTER (WHERE state = 'dead'),
    count(*) FILTER (WHERE state = 'cancelled')
FROM jobs GROUP BY queue

-- name: count_inserted
-- Jobs the store just inserted into one queue, by state (see migration_5); on this
-- connection's own counter row, like the triggers, so writers never wait for each other
-- (migration 11).
INSERT INTO job_counts AS c (queue, shard, pending, processing, completed, failed, dead,
                             cancelled)
VALUES (%(queue)s, queuectl_shard(), %(pending)s, %(processing)s, %(completed)s,
        %(failed)s, %(dead)s, %(cancelled)s)
ON CONFLICT (queue, shard) DO UPDATE SET
    pending = c.pending + excluded.pending,
    processing = c.processing + excluded.processing,
    completed = c.completed + excluded.completed,
    failed = c.failed + excluded.failed,
    dead = c.dead + excluded.dead,
    cancelled = c.cancelled + excluded.cancelled

-- name: live_job_with_key
SELECT id FROM jobs
WHERE unique_key = %(unique_key)s AND state IN ('pending', 'failed', 'processing')

-- name: job_id_exists
SELECT 1 FROM jobs WHERE id = %(id)s

-- name: claim_any
-- SKIP LOCKED: concurrent claimers pass over rows another transaction is claiming right now
-- instead of queueing behind it, so N workers take N different jobs without waiting.
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = %(worker_id)s, host = %(host)s,
    lease_token = %(token)s, lease_expires_at = %(lease_until)s, started_at = %(now)s,
    updated_at = %(now)s, pgid = NULL, pgid_started = NULL
-- Not for a worker that `worker stop` asked to stop: read in the claim itself, so a
-- chained claim (record_and_claim) needs no statement of its own for it. A worker
-- without a row (a test, or forgotten as dead while frozen) may claim.
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = %(worker_id)s AND stop_requested <> 0)
  AND seq = (
    SELECT seq FROM jobs
    WHERE state IN ('pending', 'failed') AND run_at <= %(now)s
    ORDER BY priority DESC, run_at, seq
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *

-- name: claim_any_many
-- claim_any for up to `most` jobs at once, the best first (a batch, DECISIONS.md §30): one
-- statement instead of one per job. ARRAY(...) runs the locking subquery exactly once (an
-- InitPlan); IN (subquery) may be planned as a join that runs it again and locks more rows
-- than it returns. Each job gets its own token: the claim's, dotted with the job's seq. With a
-- handful of jobs ready the planner sorts that handful; with many it walks jobs_ready
-- (tests/integration/test_postgres_specific.py reads both plans).
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = %(worker_id)s, host = %(host)s,
    lease_token = %(token)s || '.' || seq::text, lease_expires_at = %(lease_until)s,
    started_at = %(now)s, updated_at = %(now)s, pgid = NULL, pgid_started = NULL
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = %(worker_id)s AND stop_requested <> 0)
  AND seq = ANY (ARRAY(
    SELECT seq FROM jobs
    WHERE state IN ('pending', 'failed') AND run_at <= %(now)s
    ORDER BY priority DESC, run_at, seq
    LIMIT %(most)s
    FOR UPDATE SKIP LOCKED
))
RETURNING *

-- name: claim_in_queues
-- The best due job of each served queue (each found on jobs_ready_by_queue and locked with
-- SKIP LOCKED, so a queue whose best row is being claimed offers its next one), then the best
-- of those.
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = %(worker_id)s, host = %(host)s,
    lease_token = %(token)s, lease_expires_at = %(lease_until)s, started_at = %(now)s,
    updated_at = %(now)s, pgid = NULL, pgid_started = NULL
-- Not for a worker that `worker stop` asked to stop: read in the claim itself, so a
-- chained claim (record_and_claim) needs no statement of its own for it. A worker
-- without a row (a test, or forgotten as dead while frozen) may claim.
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = %(worker_id)s AND stop_requested <> 0)
  AND seq = (
    SELECT best.seq
    FROM jsonb_array_elements_text(%(queues)s::jsonb) AS served(queue)
    CROSS JOIN LATERAL (
        SELECT seq, priority, run_at FROM jobs
        WHERE queue = served.queue AND state IN ('pending', 'failed') AND run_at <= %(now)s
        ORDER BY priority DESC, run_at, seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS best
    ORDER BY best.priority DESC, best.run_at, best.seq
    LIMIT 1
)
RETURNING *

-- name: claim_in_queues_many
-- claim_in_queues for up to `most` jobs at once (a batch): the best `most` due jobs of each
-- served queue, each walk locked with SKIP LOCKED, then the best `most` of those. The rows
-- locked but not taken stay locked only until this short transaction commits. ARRAY(...)
-- runs the locking subquery exactly once, as in claim_any_many. PostgreSQL only: a SQLite
-- worker runs claim_in_queues once per job of the batch, which costs it no round trip.
UPDATE jobs
SET state = 'processing', runs = runs + 1, worker_id = %(worker_id)s, host = %(host)s,
    lease_token = %(token)s || '.' || seq::text, lease_expires_at = %(lease_until)s,
    started_at = %(now)s, updated_at = %(now)s, pgid = NULL, pgid_started = NULL
WHERE NOT EXISTS (SELECT 1 FROM workers WHERE id = %(worker_id)s AND stop_requested <> 0)
  AND seq = ANY (ARRAY(
    SELECT best.seq
    FROM jsonb_array_elements_text(%(queues)s::jsonb) AS served(queue)
    CROSS JOIN LATERAL (
        SELECT seq, priority, run_at FROM jobs
        WHERE queue = served.queue AND state IN ('pending', 'failed') AND run_at <= %(now)s
        ORDER BY priority DESC, run_at, seq
        LIMIT %(most)s
        FOR UPDATE SKIP LOCKED
    ) AS best
    ORDER BY best.priority DESC, best.run_at, best.seq
    LIMIT %(most)s
))
RETURNING *

-- name: unclaim_job
-- A claim undone before its run started: back to waiting (failed if an earlier run failed, as
-- before the claim), and the run the claim counted is taken back. Claimable again: wake workers.
-- A cancel asked meanwhile (the job looked running: it waited in its worker's batch) is carried
-- out now: cancelled.
WITH changed AS (
    UPDATE jobs
    SET state = CASE WHEN cancel_requested <> 0 THEN 'cancelled'
                     WHEN attempts > 0 THEN 'failed' ELSE 'pending' END,
        finished_at = CASE WHEN cancel_requested <> 0 THEN %(now)s ELSE finished_at END,
        last_error = CASE WHEN cancel_requested <> 0 THEN 'cancelled by user before it started'
                          ELSE last_error END,
        cancel_requested = 0, runs = runs - 1,
        worker_id = NULL, host = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = %(now)s
    WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'
    RETURNING state
)
SELECT pg_notify('queuectl', 'job') FROM changed

-- name: set_job_process
UPDATE jobs SET pgid = %(pgid)s, pgid_started = %(pgid_started)s
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'

-- name: renew_lease
UPDATE jobs SET lease_expires_at = %(lease_until)s
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'

-- name: cancel_requested
SELECT cancel_requested FROM jobs
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'

-- name: cancel_waiting_job
UPDATE jobs
SET state = 'cancelled', finished_at = %(now)s, updated_at = %(now)s,
    last_error = 'cancelled by user'
WHERE id = %(id)s AND state IN ('pending', 'failed')

-- name: request_cancel
-- The notification wakes the running job's worker, which checks for a cancel when told that
-- something changed.
WITH changed AS (
    UPDATE jobs SET cancel_requested = 1, updated_at = %(now)s
    WHERE id = %(id)s AND state = 'processing'
    RETURNING 1
)
SELECT pg_notify('queuectl', 'cancel') FROM changed

-- name: insert_output_chunk
-- Only while the run still owns the job: a fenced-out worker stores nothing.
INSERT INTO output_chunks (job_id, run, start_byte, data)
SELECT %(job_id)s, %(run)s, %(start_byte)s, %(data)s
WHERE EXISTS (SELECT 1 FROM jobs WHERE id = %(job_id)s AND lease_token = %(token)s
                                   AND state = 'processing')
ON CONFLICT (job_id, run, start_byte) DO NOTHING

-- name: trim_output
DELETE FROM output_chunks
WHERE job_id = %(job_id)s AND run = %(run)s
  AND start_byte >= %(head_end)s AND start_byte + octet_length(data) <= %(tail_start)s

-- name: output_chunks_since
-- Every chunk that holds a byte at or after from_byte (logs -f asks for what is new).
SELECT start_byte, data FROM output_chunks
WHERE job_id = %(job_id)s AND run = %(run)s AND start_byte + octet_length(data) > %(from_byte)s
ORDER BY start_byte

-- name: finish_job
-- Only a job that becomes claimable again (pending, or failed with a backoff) wakes workers.
WITH changed AS (
    UPDATE jobs
    SET state = %(state)s, attempts = %(attempts)s, run_at = %(run_at)s,
        exit_code = %(exit_code)s, last_error = %(error)s, finished_at = %(finished_at)s,
        updated_at = %(now)s, crashes = %(crashes)s,
        worker_id = NULL, host = NULL, lease_token = NULL, lease_expires_at = NULL,
        pgid = NULL, pgid_started = NULL, cancel_requested = 0
    WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'
    RETURNING state
)
SELECT CASE WHEN state IN ('pending', 'failed') THEN pg_notify('queuectl', 'job') END
FROM changed

-- name: finish_job_with_attempt
-- finish_job and insert_attempt in one statement, one round trip instead of two (a tenth of
-- a job's queue cost here). The attempt is written only when the guarded update matched. Its
-- parameters are cast: in a SELECT list PostgreSQL would take an untyped NULL for text. The
-- UPDATE is finish_job's, word for word (tests/unit/test_sql_dialects.py holds them equal).
WITH changed AS (
    UPDATE jobs
    SET state = %(state)s, attempts = %(attempts)s, run_at = %(run_at)s,
        exit_code = %(exit_code)s, last_error = %(error)s, finished_at = %(finished_at)s,
        updated_at = %(now)s, crashes = %(crashes)s,
        worker_id = NULL, host = NULL, lease_token = NULL, lease_expires_at = NULL,
        pgid = NULL, pgid_started = NULL, cancel_requested = 0
    WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'
    RETURNING state, queue
), attempt AS (
    INSERT INTO attempts (job_id, run, worker_id, host, started_at, finished_at, outcome,
                          exit_code, error, output_bytes)
    SELECT %(id)s::text, %(run)s::integer, %(worker_id)s::text, %(host)s::text,
           %(started_at)s::double precision, %(now)s::double precision, %(outcome)s::text,
           %(exit_code)s::integer, %(error)s::text, %(output_bytes)s::bigint
    FROM changed
    ON CONFLICT (job_id, run) DO NOTHING
    RETURNING outcome
), counted AS (
    -- The run counters (migration 8), in this connection's own shard (migration 11).
    INSERT INTO attempt_counts AS c (queue, outcome, shard, runs)
    SELECT changed.queue, attempt.outcome, queuectl_shard(), 1 FROM changed, attempt
    ON CONFLICT (queue, outcome, shard) DO UPDATE SET runs = c.runs + 1
), minute_counted AS (
    -- The finished runs of its minute (migration 10), when it is one.
    INSERT INTO run_minutes AS m (minute, queue, shard, finished, failed)
    SELECT floor(%(now)s::double precision / 60)::bigint, changed.queue,
           queuectl_shard(), 1, CASE WHEN attempt.outcome = 'completed' THEN 0 ELSE 1 END
    FROM changed, attempt
    WHERE attempt.outcome IN ('completed', 'failed', 'timeout', 'crashed')
    ON CONFLICT (minute, queue, shard) DO UPDATE
    SET finished = m.finished + 1, failed = m.failed + excluded.failed
)
SELECT CASE WHEN state IN ('pending', 'failed') THEN pg_notify('queuectl', 'job') END
FROM changed

-- name: take_over_lost
UPDATE jobs SET lease_token = %(new_token)s, lease_expires_at = %(lease_until)s,
    updated_at = %(now)s
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'processing'
  AND (lease_expires_at < %(now)s OR worker_id = %(dead_worker_id)s)

-- name: jobs_of_worker
SELECT * FROM jobs WHERE state = 'processing' AND worker_id = %(worker_id)s

-- name: workers_on_host
SELECT id, pid, pid_started FROM workers WHERE host = %(host)s

-- name: expired_jobs
SELECT * FROM jobs
WHERE state = 'processing' AND lease_expires_at < %(now)s
ORDER BY lease_expires_at
LIMIT 100

-- name: insert_attempt
WITH attempt AS (
    INSERT INTO attempts (job_id, run, worker_id, host, started_at, finished_at, outcome,
                          exit_code, error, output_bytes)
    VALUES (%(job_id)s, %(run)s, %(worker_id)s, %(host)s, %(started_at)s, %(finished_at)s,
            %(outcome)s, %(exit_code)s, %(error)s, %(output_bytes)s)
    ON CONFLICT (job_id, run) DO NOTHING
    RETURNING job_id, outcome, finished_at
), minute_counted AS (
    -- The finished runs of its minute (migration 10); see finish_job_with_attempt.
    INSERT INTO run_minutes AS m (minute, queue, shard, finished, failed)
    SELECT floor(attempt.finished_at / 60)::bigint, j.queue, queuectl_shard(), 1,
           CASE WHEN attempt.outcome = 'completed' THEN 0 ELSE 1 END
    FROM attempt JOIN jobs j ON j.id = attempt.job_id
    WHERE attempt.outcome IN ('completed', 'failed', 'timeout', 'crashed')
    ON CONFLICT (minute, queue, shard) DO UPDATE
    SET finished = m.finished + 1, failed = m.failed + excluded.failed
)
-- The run counters (migration 8); see finish_job_with_attempt.
INSERT INTO attempt_counts AS c (queue, outcome, shard, runs)
SELECT j.queue, attempt.outcome, queuectl_shard(), 1
FROM attempt JOIN jobs j ON j.id = attempt.job_id
ON CONFLICT (queue, outcome, shard) DO UPDATE SET runs = c.runs + 1

-- name: journal_write
-- A worker's journal lines (see migration_6), one or two per call: the result of the job that
-- just ended travels with the start of the next.
INSERT INTO worker_journal (worker_id, job_id, token, started_at, exit_code, finished_at,
                            output)
SELECT r.worker_id, r.job_id, r.token, r.started_at, r.exit_code, r.finished_at,
       decode(r.output, 'base64')
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS r(worker_id text, job_id text, token text, started_at double precision,
          exit_code integer, finished_at double precision, output text)

-- name: journal_read
SELECT job_id, token, started_at, exit_code, finished_at, output FROM worker_journal
WHERE worker_id = %(worker_id)s

-- name: journal_clear
-- After a commit that recorded what the journal held: all but the marker and the start of the
-- job still running (`keep`, or '').
DELETE FROM worker_journal
WHERE worker_id = %(worker_id)s AND job_id <> '' AND job_id <> %(keep)s

-- name: journal_forget
DELETE FROM worker_journal WHERE worker_id = %(worker_id)s

-- name: journal_forget_orphans
-- Journals of workers whose row is gone (unregistered, or forgotten as dead) that no job
-- still points to.
DELETE FROM worker_journal j
WHERE NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = j.worker_id)
  AND NOT EXISTS (SELECT 1 FROM jobs WHERE state = 'processing' AND worker_id = j.worker_id)

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s

-- name: list_jobs
-- Newest first, walking the primary key backwards: also serves completed jobs (which
-- jobs_by_state_but_completed leaves out), as the newest jobs are mostly completed ones.
SELECT * FROM jobs
WHERE (CAST(%(state)s AS TEXT) IS NULL OR state = %(state)s)
  AND (CAST(%(queue)s AS TEXT) IS NULL OR queue = %(queue)s)
ORDER BY seq DESC LIMIT %(limit)s

-- name: list_jobs_in_state
-- Any state but completed, on jobs_by_state_but_completed (its condition is repeated so the
-- planner can use it): the newest :limit of that state without a scan.
SELECT * FROM jobs
WHERE state = %(state)s AND state <> 'completed'
  AND (CAST(%(queue)s AS TEXT) IS NULL OR queue = %(queue)s)
ORDER BY seq DESC LIMIT %(limit)s

-- name: list_jobs_in_queue
-- One queue's jobs, newest first, on jobs_by_queue: as many index entries as that queue has
-- jobs at most, however many other queues hold (JobStore.list says when it is used).
SELECT * FROM jobs
WHERE queue = %(queue)s
  AND (CAST(%(state)s AS TEXT) IS NULL OR state = %(state)s)
ORDER BY seq DESC LIMIT %(limit)s

-- name: states_of
SELECT id, state FROM jobs WHERE id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))

-- name: count_by_state
-- From the counts migration_4's triggers keep: a few rows, however many jobs.
SELECT COALESCE(SUM(pending), 0)::BIGINT AS pending,
       COALESCE(SUM(processing), 0)::BIGINT AS processing,
       COALESCE(SUM(completed), 0)::BIGINT AS completed,
       COALESCE(SUM(failed), 0)::BIGINT AS failed,
       COALESCE(SUM(dead), 0)::BIGINT AS dead,
       COALESCE(SUM(cancelled), 0)::BIGINT AS cancelled
FROM job_counts

-- name: count_by_queue_and_state
-- A queue is listed while it holds a job (its counts row stays once it is empty).
SELECT queue,
       SUM(pending)::BIGINT AS pending,
       SUM(processing)::BIGINT AS processing,
       SUM(completed)::BIGINT AS completed,
       SUM(failed)::BIGINT AS failed,
       SUM(dead)::BIGINT AS dead,
       SUM(cancelled)::BIGINT AS cancelled
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
WHERE a.finished_at >= %(since)s
ORDER BY a.finished_at DESC
LIMIT %(limit)s

-- name: attempt_totals
-- Every run ever recorded, by queue and outcome: the Prometheus counters (migration 8 keeps
-- them; a few rows, however long the history).
SELECT queue, outcome, SUM(runs)::bigint AS n  -- a sum of bigints is numeric
FROM attempt_counts
GROUP BY queue, outcome

-- name: oldest_due_job
SELECT MIN(run_at) AS run_at FROM jobs WHERE state IN ('pending', 'failed') AND run_at <= %(now)s

-- name: last_seq
SELECT MAX(seq) AS seq FROM jobs

-- name: page_jobs
-- A page of the dashboard's job list, newest first, resumed below the last seq shown (keyset
-- paging: page 100 costs what page 1 does). Walks the primary key backwards and stops at
-- :limit matches, or at :floor (a search looks at a window of jobs per page, see
-- JobStore.page); the text filter is a plain substring test on id and command. Also the
-- page of completed jobs, which are most of the newest ones.
SELECT * FROM jobs
WHERE seq < %(before)s AND seq >= %(floor)s
  AND (CAST(%(state)s AS TEXT) IS NULL OR state = %(state)s)
  AND (CAST(%(queue)s AS TEXT) IS NULL OR queue = %(queue)s)
  AND (CAST(%(text)s AS TEXT) IS NULL OR strpos(id || ' ' || command, %(text)s) > 0)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: page_jobs_in_state
-- The same in one state other than completed, on jobs_by_state_but_completed: a rare state
-- is found without a scan.
SELECT * FROM jobs 
WHERE state = %(state)s AND state <> 'completed' AND seq < %(before)s AND seq >= %(floor)s
  AND (CAST(%(queue)s AS TEXT) IS NULL OR queue = %(queue)s)
  AND (CAST(%(text)s AS TEXT) IS NULL OR strpos(id || ' ' || command, %(text)s) > 0)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: page_jobs_in_queue
-- The same for one queue, on jobs_by_queue, when its jobs are the shorter walk (JobStore.page).
SELECT * FROM jobs
WHERE queue = %(queue)s AND seq < %(before)s AND seq >= %(floor)s
  AND (CAST(%(state)s AS TEXT) IS NULL OR state = %(state)s)
  AND (CAST(%(text)s AS TEXT) IS NULL OR strpos(id || ' ' || command, %(text)s) > 0)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: finished_by_minute
-- Finished and failed runs in each minute from :first_minute on (migration 10): a few rows per
-- minute, however many runs.
SELECT minute, sum(finished)::bigint AS finished, sum(failed)::bigint AS failed
FROM run_minutes
WHERE minute >= %(first_minute)s
GROUP BY minute

-- name: finished_between
-- Finished and failed runs with :since <= finished_at < :until, counted from the history: for
-- the part of a window's first minute that the window holds (never more than a minute).
SELECT count(*) AS finished,
       COALESCE(sum(CASE WHEN outcome = 'completed' THEN 0 ELSE 1 END), 0) AS failed
FROM attempts
WHERE finished_at >= %(since)s AND finished_at < %(until)s
  AND outcome IN ('completed', 'failed', 'timeout', 'crashed')

-- name: clear_run_minutes
DELETE FROM run_minutes

-- name: recount_run_minutes
-- Rebuilt from the history (status --recount).
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
SELECT floor(a.finished_at / 60)::bigint, j.queue, 0, count(*),
       sum(CASE WHEN a.outcome = 'completed' THEN 0 ELSE 1 END)
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.outcome IN ('completed', 'failed', 'timeout', 'crashed')
GROUP BY 1, 2

-- name: purge_run_minutes
-- Whole minutes before the cut-off: their runs' history may be gone.
DELETE FROM run_minutes WHERE (minute + 1) * 60 <= %(before)s

-- name: job_attempts
SELECT * FROM attempts WHERE job_id = %(job_id)s ORDER BY run

-- name: dlq_list
-- The dlq view's rows, read from jobs so that the planner sees the condition of
-- jobs_by_state_but_completed and finds the dead jobs without a scan.
SELECT id, command, attempts, max_retries, last_error, exit_code, crashes,
       created_at, finished_at AS died_at, queue
FROM jobs
WHERE state = 'dead' AND state <> 'completed'
ORDER BY died_at DESC, id LIMIT %(limit)s

-- name: dlq_retry
WITH changed AS (
    UPDATE jobs
    SET state = 'pending', attempts = 0, crashes = 0, run_at = %(now)s, updated_at = %(now)s,
        finished_at = NULL
    WHERE id = %(id)s AND state = 'dead'
    RETURNING 1
)
SELECT pg_notify('queuectl', 'job') FROM changed

-- name: dlq_retry_all
-- One notification per row, but PostgreSQL folds identical ones within a transaction.
WITH changed AS (
    UPDATE jobs
    SET state = 'pending', attempts = 0, crashes = 0, run_at = %(now)s, updated_at = %(now)s,
        finished_at = NULL
    WHERE state = 'dead' AND state <> 'completed'  -- on jobs_by_state_but_completed
    RETURNING 1
)
SELECT pg_notify('queuectl', 'job') FROM changed

-- name: dead_jobs_with_held_key
-- The dead jobs `dlq retry --all` leaves dead: a live job holds their unique_key.
SELECT dead.id FROM jobs AS dead
WHERE dead.state = 'dead' AND dead.state <> 'completed'  -- on jobs_by_state_but_completed
  AND dead.unique_key IS NOT NULL
  AND EXISTS (SELECT 1 FROM jobs AS live
              WHERE live.unique_key = dead.unique_key
                AND live.state IN ('pending', 'failed', 'processing'))
ORDER BY dead.seq

-- name: purge_output
-- purge_*: finished jobs older than a cut-off, oldest first, in bounded batches; the job rows
-- go last so the three subqueries pick the same batch (see sqlite.sql).
DELETE FROM output_chunks WHERE job_id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT jsonb_array_elements_text(%(states)s::jsonb))
      AND state IN ('completed', 'dead', 'cancelled')
      AND finished_at < %(before)s
    ORDER BY finished_at, seq LIMIT %(limit)s)

-- name: purge_attempts
DELETE FROM attempts WHERE job_id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT jsonb_array_elements_text(%(states)s::jsonb))
      AND state IN ('completed', 'dead', 'cancelled')
      AND finished_at < %(before)s
    ORDER BY finished_at, seq LIMIT %(limit)s)

-- name: purge_jobs
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE state IN (SELECT jsonb_array_elements_text(%(states)s::jsonb))
      AND state IN ('completed', 'dead', 'cancelled')
      AND finished_at < %(before)s
    ORDER BY finished_at, seq LIMIT %(limit)s)

-- name: config_all
SELECT key, value FROM config ORDER BY key

-- name: config_set
INSERT INTO config (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: config_unset
DELETE FROM config WHERE key = %(key)s

-- name: register_worker
INSERT INTO workers (id, host, pid, pid_started, queues, started_at, heartbeat_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(pid_started)s, %(queues)s, %(now)s, %(now)s)

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = %(now)s WHERE id = %(id)s

-- name: worker_stop_requested
SELECT stop_requested FROM workers WHERE id = %(id)s

-- name: mark_worker_stopping
-- A worker stopping by a signal says so, as `worker stop` does for it (status: "stopping").
UPDATE workers SET stop_requested = 1 WHERE id = %(id)s

-- name: mark_worker_paused
-- stop_requested also says why a live worker takes no job: 1 stopping, 2 paused (Ctrl-Z,
-- pausing.py), 0 neither. A stop wins over a pause and is never undone by a resume.
UPDATE workers SET stop_requested = 2 WHERE id = %(id)s AND stop_requested = 0

-- name: mark_worker_resumed
UPDATE workers SET stop_requested = 0 WHERE id = %(id)s AND stop_requested = 2

-- name: unregister_worker
DELETE FROM workers WHERE id = %(id)s

-- name: request_stop
WITH changed AS (
    UPDATE workers SET stop_requested = 1 WHERE heartbeat_at >= %(alive_since)s
    RETURNING 1
)
SELECT pg_notify('queuectl', 'stop') FROM changed

-- name: live_workers
SELECT w.*, j.id AS current_job, j.started_at AS job_started_at
FROM workers w
LEFT JOIN jobs j ON j.worker_id = w.id AND j.state = 'processing'
                 AND j.state <> 'completed'  -- on jobs_by_state_but_completed
WHERE w.heartbeat_at >= %(alive_since)s
ORDER BY w.started_at, w.id COLLATE "C"

-- name: forget_dead_workers
DELETE FROM workers WHERE heartbeat_at < %(alive_since)s

-- name: any_job
-- This block and the ones below serve `queuectl migrate` (transfer.py).
SELECT 1 FROM jobs LIMIT 1

-- name: lock_for_import
-- Enqueues wait until the copy commits, so none can take a seq the copy is about to use.
LOCK TABLE jobs, attempts IN EXCLUSIVE MODE

-- name: export_jobs
SELECT * FROM jobs WHERE seq > %(after)s ORDER BY seq LIMIT %(limit)s

-- name: export_attempts
SELECT * FROM attempts WHERE (job_id, run) > (%(job_id)s, %(run)s)
ORDER BY job_id, run LIMIT %(limit)s

-- name: export_run_minutes
-- The finished runs per minute as they are (migration 10), shards summed: a copy keeps the
-- counts of runs its source's purges left in a minute they did not wholly delete.
SELECT minute, queue, sum(finished)::bigint AS finished, sum(failed)::bigint AS failed
FROM run_minutes WHERE (minute, queue) > (%(minute)s, %(queue)s)
GROUP BY minute, queue ORDER BY minute, queue LIMIT %(limit)s

-- name: import_run_minute
INSERT INTO run_minutes (minute, queue, shard, finished, failed)
VALUES (%(minute)s, %(queue)s, 0, %(finished)s, %(failed)s)

-- name: import_job
-- Every column, seq included, so the copy keeps the order of the queue. A column added by a
-- later migration must be added here too (transfer.py refuses to copy a column it cannot write).
INSERT INTO jobs (
    seq, id, command, state, attempts, max_retries, created_at, updated_at, run_at,
    priority, queue, timeout, cwd, env, unique_key, runs, crashes, last_error,
    exit_code, finished_at, worker_id, host, lease_token, lease_expires_at, started_at,
    pgid, pgid_started, cancel_requested
) VALUES (
    %(seq)s, %(id)s, %(command)s, %(state)s, %(attempts)s, %(max_retries)s,
    %(created_at)s, %(updated_at)s, %(run_at)s, %(priority)s, %(queue)s, %(timeout)s,
    %(cwd)s, %(env)s, %(unique_key)s, %(runs)s, %(crashes)s, %(last_error)s,
    %(exit_code)s, %(finished_at)s, %(worker_id)s, %(host)s, %(lease_token)s,
    %(lease_expires_at)s, %(started_at)s, %(pgid)s, %(pgid_started)s, %(cancel_requested)s
)

-- name: import_attempt
INSERT INTO attempts (job_id, run, worker_id, host, started_at,
                      finished_at, outcome, exit_code, error, output_bytes)
VALUES (%(job_id)s, %(run)s, %(worker_id)s, %(host)s, %(started_at)s, %(finished_at)s,
        %(outcome)s, %(exit_code)s, %(error)s, %(output_bytes)s)

-- name: export_output
SELECT * FROM output_chunks WHERE (job_id, run, start_byte) > (%(job_id)s, %(run)s, %(start_byte)s)
ORDER BY job_id, run, start_byte LIMIT %(limit)s

-- name: import_output
INSERT INTO output_chunks (job_id, run, start_byte, data)
VALUES (%(job_id)s, %(run)s, %(start_byte)s, %(data)s)

-- name: clear_attempt_counts
-- An import's run counters are the source's (its attempt_totals), not its history recounted:
-- runs purged from the source's history still count (see migration_8).
DELETE FROM attempt_counts

-- name: import_attempt_count
INSERT INTO attempt_counts (queue, outcome, shard, runs)
VALUES (%(queue)s, %(outcome)s, 0, %(n)s)

-- name: finish_import
-- The copied rows brought their own seq values; start the sequence after the largest.
SELECT setval(pg_get_serial_sequence('jobs', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM jobs
