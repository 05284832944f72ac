"""The trust boundary: enqueueing is running code as the worker's user.

A worker refuses a SQLite queue that someone else could write (the file, its -wal/-shm, or a
folder above it), with one line saying what and how to fix it, exit 2, and the file left as
it was, unless told otherwise (--allow-shared-db, QUEUECTL_ALLOW_SHARED_DB=1). And a job's
environment carries none of queuectl's secrets: no database password, no dashboard token.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import assert_one_error_line

pytestmark = pytest.mark.timeout(120)

NOBODY = 65534
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="changing a file's owner needs root")


def run(db, *args: str, umask: int | None = None, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "QUEUECTL_ALLOW_SHARED_DB"}
    return subprocess.run(
        [sys.executable, "-m", "queuectl", "--db", str(db), *args], capture_output=True,
        text=True, timeout=60, env={**full_env, **(env or {})}, cwd=cwd,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def job_state(db, job_id: str) -> str:
    result = run(db, "show", job_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["state"]


@pytest.fixture
def queue(tmp_path) -> Path:
    """A queue with one pending job, in a folder of its own (tmp_path is private)."""
    folder = tmp_path / "queue"
    folder.mkdir(mode=0o700)
    db = folder / "q.db"
    assert run(db, "enqueue", '{"id": "job", "command": "true"}').returncode == 0
    return db


def files_of(db: Path) -> dict[str, bytes | list[str]]:
    return {p.name: p.read_bytes() if p.is_file() else sorted(os.listdir(p))
            for p in db.parent.iterdir() if p.name.startswith(db.name)}


def refused(db: Path, says: str) -> str:
    """`worker start` refuses, as the contract for a refusal says, and touches nothing."""
    before = files_of(db)
    result = run(db, "worker", "start", "--burst")
    assert_one_error_line(result, 2)
    message = result.stderr
    assert message.startswith(f"queuectl: error: refusing to run jobs from {db}: "), message
    assert says in message, message
    assert "--allow-shared-db" in message and "QUEUECTL_ALLOW_SHARED_DB=1" in message
    assert files_of(db) == before, "a refused worker changed the queue's files"
    return message


def test_a_private_queue_runs(queue):
    result = run(queue, "worker", "start", "--burst", "--quiet")
    assert result.returncode == 0, result.stderr
    assert job_state(queue, "job") == "completed"


@pytest.mark.parametrize("mode, writers", [(0o666, "its group and every user"),
                                           (0o646, "every user"), (0o660, "its group")])
def test_a_file_others_can_write_is_refused(queue, mode, writers):
    os.chmod(queue, mode)
    if ROOT:
        os.chown(queue, -1, NOBODY)  # a group with other members than the owner
    message = refused(queue, f"it is writable by {writers} (mode {mode:04o})")
    assert f"Fix: chmod go-w {queue};" in message
    assert job_state(queue, "job") == "pending"


def test_a_group_writable_file_of_a_private_group_is_accepted(queue):
    # umask 002 systems give each user a group of their own: that group is just the owner.
    import grp
    import pwd

    gid = pwd.getpwuid(os.geteuid()).pw_gid
    others = [m for m in grp.getgrgid(gid).gr_mem if m != pwd.getpwuid(os.geteuid()).pw_name]
    if others or any(p.pw_gid == gid and p.pw_uid != os.geteuid() for p in pwd.getpwall()):
        pytest.skip("this user's primary group has other members")
    os.chown(queue, -1, gid)
    os.chmod(queue, 0o660)
    result = run(queue, "worker", "start", "--burst", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_wal_or_shm_file_others_can_write_is_refused(queue, suffix):
    side = Path(f"{queue}{suffix}")
    side.touch()
    os.chmod(side, 0o666)
    refused(queue, f"{side} is writable by every user (mode 0666)")


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_journals_folder_others_can_write_is_refused_sticky_or_not(queue, mode):
    """A worker's journal says which jobs finished: recovery records what it says."""
    journals = Path(f"{queue}-journals")
    journals.mkdir()
    os.chmod(journals, mode)
    refused(queue, f"its journals folder {journals} is writable by every user")


@needs_root
def test_a_file_of_another_user_is_refused_even_for_root(queue):
    # Root would run, as root, commands written by whoever owns the file.
    os.chown(queue, NOBODY, -1)
    message = refused(queue, "it belongs to nobody, not to root who runs the worker")
    assert f"Fix: chown root {queue};" in message


def test_a_folder_others_can_write_is_refused(queue):
    os.chmod(queue.parent, 0o777)
    message = refused(queue, f"its folder {queue.parent} is writable by every user (mode 0777), "
                             "who could swap the file")
    assert f"Fix: chmod go-w {queue.parent};" in message


def test_a_sticky_folder_like_tmp_is_accepted(queue):
    os.chmod(queue.parent, 0o1777)
    result = run(queue, "worker", "start", "--burst", "--quiet")
    assert result.returncode == 0, result.stderr


@needs_root
def test_a_folder_of_another_user_is_refused(queue):
    os.chown(queue.parent, NOBODY, -1)
    refused(queue, f"its folder {queue.parent} belongs to nobody")


def test_a_symlink_is_judged_by_the_file_it_points_to(queue, tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to(queue)
    os.chmod(queue, 0o666)
    result = run(link, "worker", "start", "--burst")
    assert_one_error_line(result, 2)
    assert f"{queue} is writable by every user" in result.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_override_runs_the_jobs_and_says_so(queue, how):
    os.chmod(queue, 0o666)
    args, env = (("--allow-shared-db",), None) if how == "flag" else \
        ((), {"QUEUECTL_ALLOW_SHARED_DB": "1"})
    result = run(queue, "worker", "start", "--burst", "--quiet", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"queuectl: warning: {queue}: it is writable by every user")
    assert "Traceback" not in result.stderr
    assert job_state(queue, "job") == "completed"


def test_enqueue_is_not_refused(queue):
    # Enqueueing runs nothing; only a worker crosses the boundary.
    os.chmod(queue, 0o666)
    assert run(queue, "enqueue", '{"command": "true"}').returncode == 0


def test_a_queue_made_under_umask_002_is_accepted_by_its_own_worker(tmp_path):
    db = tmp_path / "new" / "q.db"
    assert run(db, "enqueue", '{"id": "job", "command": "true"}', umask=0o002).returncode == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    result = run(db, "worker", "start", "--burst", "--quiet", umask=0o002)
    assert result.returncode == 0, result.stderr
    assert job_state(db, "job") == "completed"
    for side in db.parent.glob("q.db-*"):  # -wal, -shm, and the workers' -journals folder
        assert stat.S_IMODE(side.stat().st_mode) == (0o700 if side.is_dir() else 0o600), side


# -- what a job sees of its worker's environment -------------------------------------------------


def env_of_a_job(db: str, tmp_path: Path, worker_env: dict) -> dict[str, str]:
    out = tmp_path / "job-env.json"
    command = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {out}"
    spec = json.dumps({"id": "envjob", "command": command})
    assert run(db, "enqueue", spec).returncode == 0
    result = run(db, "worker", "start", "--burst", "--quiet", env=worker_env)
    assert result.returncode == 0, result.stderr
    assert job_state(db, "envjob") == "completed"
    return json.loads(out.read_text())


def test_a_job_never_sees_the_database_password_or_the_dashboard_token(pg_database, tmp_path):
    pytest.importorskip("psycopg")
    secret, token = "s3cret-db-password", "s3cret-dashboard-token"
    with_password = pg_database.replace("postgres@", f"postgres:{secret}@")  # trust auth
    env = env_of_a_job(with_password, tmp_path, {"QUEUECTL_DB": with_password,
                                                 "QUEUECTL_DASHBOARD_TOKEN": token})
    assert env["QUEUECTL_DB"] == pg_database  # the same queue, without the password
    assert (env["QUEUECTL_JOB_ID"], env["QUEUECTL_RUN"]) == ("envjob", "1")
    assert "QUEUECTL_DASHBOARD_TOKEN" not in env
    leaked = {k: v for k, v in env.items() if secret in v or token in v}
    assert not leaked, leaked


def test_a_password_in_the_url_query_is_kept_from_jobs_too(pg_database, tmp_path):
    pytest.importorskip("psycopg")
    secret = "s3cret-in-query"
    url = f"{pg_database}?password={secret}&connect_timeout=5"
    env = env_of_a_job(url, tmp_path, {})
    assert env["QUEUECTL_DB"] == f"{pg_database}?connect_timeout=5"
    assert not any(secret in v for v in env.values())


def test_a_sqlite_job_does_not_see_the_dashboard_token(queue, tmp_path):
    env = env_of_a_job(str(queue), tmp_path, {"QUEUECTL_DASHBOARD_TOKEN": "s3cret"})
    assert env["QUEUECTL_DB"] == str(queue)
    assert "QUEUECTL_DASHBOARD_TOKEN" not in env
