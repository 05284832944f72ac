"""A big `enqueue --file` and `migrate` show progress on a terminal's stderr, nothing in a pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess


def _jobs_file(tmp_path, n):
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"command": "true"}) + "\n" for _ in range(n)))
    return str(path)


def _drain(leader: int) -> bytes:
    """All a pty's programs wrote, once its other side is closed."""
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side is closed and everything is read
            return seen
        if not chunk:
            return seen
        seen += chunk


def test_progress_on_a_terminal(cli, tmp_path):
    path = _jobs_file(tmp_path, 600)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(cli.command("enqueue", "--file", path), stdout=subprocess.PIPE,
                              stderr=follower, cwd=cli.cwd, timeout=120)
        os.close(follower)
        follower = -1
        seen = _drain(leader)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 600
    assert b"enqueued 600/600" in seen


def test_no_progress_in_a_pipe(cli, tmp_path):
    done = cli("enqueue", "--file", _jobs_file(tmp_path, 600))
    assert done.returncode == 0 and done.stderr == ""
    assert len(done.stdout.splitlines()) == 600


def test_migrate_shows_progress_on_a_terminal(cli, tmp_path):
    assert cli("enqueue", "--file", _jobs_file(tmp_path, 50)).returncode == 0
    target = str(tmp_path / "copy.db")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(cli.command()[:-2] + ["migrate", "--from", cli.db, "--to", target],
                              stdout=subprocess.PIPE, stderr=follower, cwd=cli.cwd, timeout=120)
        os.close(follower)
        follower = -1
        seen = _drain(leader)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"\r\x1b[Kcopied rows " in seen  # drawn at most every 0.2 s: not every count
    assert b"copied 50 job(s)" in seen
