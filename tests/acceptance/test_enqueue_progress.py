"""A big `enqueue --file` shows progress on a terminal's stderr, and nothing in a pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess


def _jobs_file(tmp_path, n):
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"command": "true"}) + "\n" for _ in range(n)))
    return str(path)


def test_progress_on_a_terminal(cli, tmp_path):
    path = _jobs_file(tmp_path, 600)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(cli.command("enqueue", "--file", path), stdout=subprocess.PIPE,
                              stderr=follower, cwd=cli.cwd, timeout=120)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
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
