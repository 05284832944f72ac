"""A SQLite worker's journal: which of its claimed jobs it started, and the results it holds.

A SQLite worker that runs short jobs back to back records them in batches (DECISIONS.md §30):
it claims several jobs in one transaction and records their results with the next claim, one
commit per batch instead of one per job. Between two commits a finished job's result lives
only in the worker's memory, so the worker first writes it here: one line appended to a file
of its own next to the queue file, with a plain `write` and no `fsync`. Such a line survives
the death of any process (it is in the kernel's page cache as soon as `write` returns); only
a power cut or a kernel crash can lose it, and those can lose a SQLite worker's last commits
too (`synchronous=NORMAL`, §8). So a held result is as safe as a recorded one.

Before each job starts, a "started" line names its claim (the lease token). A worker that
recovers a dead worker's jobs reads its journal (`read`): a job with a result line is
recorded with that result; a job with only a started line crashed its worker (a crash is
charged, as always); a job the journal does not name was claimed ahead and never started, so
it is given back uncharged. A worker with no journal file (PostgreSQL, an older queuectl) is
recovered as before: every job of it charged a crash.

The file is emptied after each commit that recorded what it held, and removed when the worker
exits with nothing held.
"""

from __future__ import annotations

import base64
import json
import os

from queuectl.models import Job
from queuectl.record import Record


class JournalEntry(Record):
    """What a dead worker's journal says of one of its jobs."""

    token: str  # the claim's lease token
    started_at: float
    exit_code: int | None = None  # None: started, no result (it was running when it died)
    finished_at: float | None = None
    output: bytes = b""


def journals_folder(queue_file: str) -> str:
    """The folder next to the queue file that its workers share: their journals, and the
    turns at the write lock they take on it (store/turns.py)."""
    return queue_file + "-journals"


def journal_path(queue_file: str, worker_id: str) -> str:
    """Where the worker `worker_id` of the queue in `queue_file` keeps its journal: in a folder
    next to the queue file, so any worker of that queue can read it (another container on the
    same host included)."""
    return os.path.join(journals_folder(queue_file), worker_id.replace("/", "_") + ".journal")


class Journal:
    """The writing side, one per worker process."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                           | os.O_CLOEXEC, 0o600)
        self._running_line = b""  # the started line of the job running now, if any

    def started(self, job: Job, at: float) -> None:
        """Before the job's command is spawned: from here on a death of the worker charges it
        a crash instead of giving it back."""
        line = f'{{"job":{_text(job.id)},"token":{_text(job.lease_token)},"started":{at!r}}}\n'
        self._running_line = line.encode()
        os.write(self._fd, self._running_line)

    def ended(self, job: Job, started_at: float, finished_at: float, exit_code: int,
              output: bytes) -> None:
        """The job's result, written before the worker holds it back."""
        self._running_line = b""
        printed = base64.b64encode(output).decode("ascii") if output else ""
        os.write(self._fd, (
            f'{{"job":{_text(job.id)},"token":{_text(job.lease_token)},'
            f'"started":{started_at!r},"finished":{finished_at!r},"exit":{exit_code:d},'
            f'"output":"{printed}"}}\n').encode())

    def flush(self) -> None:
        """Nothing waits here: every line is written when it is made."""

    def clear_with_commit(self, running: bool = False) -> str | None:
        """None: a file cannot be emptied in the database's transaction (see committed)."""
        return None

    def committed(self, running: bool = False, cleared: bool = False) -> None:
        """Everything held is recorded: empty the file, keeping the started line of the job
        still `running` (a batch is also committed at a long job's first cancel check)."""
        os.ftruncate(self._fd, 0)
        if running and self._running_line:
            os.write(self._fd, self._running_line)
        else:
            self._running_line = b""

    def close(self, remove: bool) -> None:
        """On exit. Kept (remove=False) when results are still held in it: a recovering worker
        records them."""
        os.close(self._fd)
        if remove:
            discard(self.path)


def _text(value: str | None) -> str:
    """A JSON string. The lines are written by hand, not by json.dumps of a dict: a worker
    writes two per job, and that was a tenth of its own CPU per `true` job."""
    return json.dumps(value)


def read(path: str) -> dict[str, JournalEntry] | None:
    """A journal's entries by job id, or None when there is no journal (the worker kept none,
    or it was removed). By job id, not by token: a recovery that took a job over (a new
    token) and was itself killed before it recorded the job's result leaves the job with the
    dead worker's id and a token the journal never saw; the next recovery must still find
    it. A job appears in one worker's journal for one claim at most: the file is emptied at
    every commit, and nothing a commit records is claimed again in it.

    A line that does not parse is skipped: a write cut short can only be the last one, and
    what it would have said is then lost as if never written (a result: its job counts as
    crashed; a start: as never started, and it had not yet been spawned)."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except FileNotFoundError:
        return None
    entries: dict[str, JournalEntry] = {}
    for raw in text.splitlines():
        try:
            fields = json.loads(raw)
            token, job_id, started = fields["token"], fields["job"], float(fields["started"])
            if "exit" in fields:
                entry = JournalEntry(token, started, int(fields["exit"]),
                                     float(fields["finished"]),
                                     base64.b64decode(fields["output"]))
            else:
                entry = JournalEntry(token, started)
        except (ValueError, KeyError, TypeError):
            continue
        add_entry(entries, job_id, entry)
    return entries


def add_entry(entries: dict[str, JournalEntry], job_id: str, entry: JournalEntry) -> None:
    """Note what one journal line says of a job, the lines read in any order: its result wins
    over its start line (a file's or a table's journal, journal_table.py)."""
    if entry.exit_code is not None or job_id not in entries:
        entries[job_id] = entry


def discard(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
