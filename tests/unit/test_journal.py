"""The worker's journal (journal.py): what a recovering worker reads back of what was written."""

from __future__ import annotations

import os

from queuectl.journal import Journal, JournalEntry, journal_path, read
from queuectl.models import Job


def job(job_id: str, token: str) -> Job:
    return Job(id=job_id, command="true", state="processing", attempts=0, max_retries=3,
               created_at=1.0, updated_at=1.0, run_at=1.0, lease_token=token)


def test_a_journal_lives_in_a_folder_next_to_the_queue_file(tmp_path):
    path = journal_path(str(tmp_path / "q.db"), "host:12:ab/cd")
    assert path == str(tmp_path / "q.db-journals" / "host:12:ab_cd.journal")


def test_started_and_ended_jobs_read_back_by_job_id(tmp_path):
    path = journal_path(str(tmp_path / "q.db"), "w1")
    a, b = job("a", "t-a"), job("b", "t-b")
    journal = Journal(path)
    journal.started(a, 10.0)
    journal.ended(a, 10.0, 10.5, 0, b"hello\n\x00\xff")
    journal.started(b, 11.0)
    assert read(path) == {
        "a": JournalEntry("t-a", 10.0, 0, 10.5, b"hello\n\x00\xff"),
        "b": JournalEntry("t-b", 11.0),
    }
    journal.close(remove=False)
    assert os.path.exists(path)


def test_no_journal_reads_as_none_and_an_empty_one_as_no_entries(tmp_path):
    path = journal_path(str(tmp_path / "q.db"), "w1")
    assert read(path) is None
    Journal(path).close(remove=False)
    assert read(path) == {}


def test_a_line_cut_short_is_skipped(tmp_path):
    path = journal_path(str(tmp_path / "q.db"), "w1")
    journal = Journal(path)
    journal.started(job("a", "t-a"), 10.0)
    journal.close(remove=False)
    with open(path, "ab") as file:
        file.write(b'{"job":"b","token":"t-b","sta')
    assert read(path) == {"a": JournalEntry("t-a", 10.0)}


def test_a_commit_empties_it_but_keeps_the_job_still_running(tmp_path):
    done, running = job("a", "t-a"), job("b", "t-b")
    path = journal_path(str(tmp_path / "q.db"), "w1")
    journal = Journal(path)
    journal.started(done, 10.0)
    journal.ended(done, 10.0, 10.1, 0, b"")  # held, then committed below
    journal.started(running, 10.2)
    journal.committed(running=True)
    assert read(path) == {"b": JournalEntry("t-b", 10.2)}
    journal.committed()
    assert read(path) == {}
    journal.started(done, 12.0)  # appends after the truncation, from the start of the file
    assert read(path) == {"a": JournalEntry("t-a", 12.0)}


def test_closing_removes_it_and_a_new_journal_starts_empty(tmp_path):
    path = journal_path(str(tmp_path / "q.db"), "w1")
    journal = Journal(path)
    journal.started(job("a", "t-a"), 10.0)
    journal.close(remove=True)
    assert read(path) is None
    Journal(path).close(remove=False)
    assert read(path) == {}
