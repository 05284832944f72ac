"""The trust boundary of `worker start`: whoever can write the queue runs commands as the
worker's user, so a worker refuses a SQLite queue that anyone else could write.

Checked once, before the workers start (DECISIONS §21):
- the database file, and its -wal and -shm files and -journals folder if present, must
  belong to the worker's user and not be writable by group or others;
- every folder above it must belong to that user or to root and not be writable by group or
  others, unless its sticky bit is set (as on /tmp): otherwise someone could swap the file.
A group no one but the owner can be in (a user private group, as `umask 002` systems use)
counts as the owner. PostgreSQL is not checked: the server's own authentication decides who
may write the queue. `--allow-shared-db` or QUEUECTL_ALLOW_SHARED_DB=1 overrides the refusal.
"""

from __future__ import annotations

import os
import stat
import sys

from queuectl.errors import QueueError

ALLOW_ENV = "QUEUECTL_ALLOW_SHARED_DB"
# queuectl's own secrets, which a job must never inherit from its worker's environment (the
# worker hands jobs a QUEUECTL_DB without password itself).
PRIVATE_ENV = ("QUEUECTL_DASHBOARD_TOKEN",)


class SharedDatabase(QueueError):
    """Others can write the queue a worker would run commands from. Exit 2, like bad usage:
    retrying cannot help; the user must fix the mode or say it is intended."""

    exit_code = 2


def allowed_by_env() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_is_private(gid: int, owner: int) -> bool:
    """True when no user but `owner` can be in group `gid` (named in it, or by primary gid)."""
    import grp
    import pwd

    try:
        members = grp.getgrgid(gid).gr_mem
    except KeyError:
        members = []
    name = _user(owner)
    if any(member != name for member in members):
        return False
    return all(entry.pw_uid == owner for entry in pwd.getpwall() if entry.pw_gid == gid)


def _problem(path: str, info: os.stat_result, euid: int, folder: bool) -> tuple[str, str] | None:
    """What lets someone other than the worker's user change `path`, and the fix; or None."""
    owners = (euid, 0) if folder else (euid,)
    if info.st_uid not in owners:
        return (f"belongs to {_user(info.st_uid)}, not to {_user(euid)} who runs the worker",
                f"chown {_user(euid)} {path}")
    mode = stat.S_IMODE(info.st_mode)
    if folder and mode & stat.S_ISVTX:
        return None  # sticky: only a file's owner may rename or delete it
    writers = []
    if mode & stat.S_IWGRP and not _group_is_private(info.st_gid, info.st_uid):
        writers.append("its group")
    if mode & stat.S_IWOTH:
        writers.append("every user")
    if not writers:
        return None
    return (f"is writable by {' and '.join(writers)} (mode {mode:04o})"
            + (", who could swap the file" if folder else ""), f"chmod go-w {path}")


def _folders(path: str) -> list[str]:
    found: list[str] = []
    for start in (os.path.abspath(path), os.path.realpath(path)):
        folder = os.path.dirname(start)
        while True:
            if folder not in found:
                found.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return found


def shared_database_problem(path: str, euid: int | None = None) -> tuple[str, str] | None:
    """Why others could write the SQLite queue at `path` (a resolved file path), and the fix;
    or None."""
    euid = os.geteuid() if euid is None else euid
    real = os.path.realpath(path)
    for name in (real, real + "-wal", real + "-shm"):
        try:
            info = os.stat(name)
        except OSError:
            continue  # missing (created 0600 by us), or unreadable: opening it will say so
        problem = _problem(name, info, euid, folder=False)
        if problem:
            what = "it" if name == path else name
            return f"{what} {problem[0]}", problem[1]
    # The workers' journals (journal.py): what they say is recorded as a job's result. Judged
    # as a file is (a sticky bit still lets others add a journal).
    from queuectl.journal import journals_folder  # a worker's start imports it anyway

    journals = journals_folder(real)
    try:
        problem = _problem(journals, os.stat(journals), euid, folder=False)
    except OSError:
        problem = None  # missing: the first worker creates it 0700
    if problem:
        return f"its journals folder {journals} {problem[0]}", problem[1]
    for folder in _folders(path):
        try:
            info = os.stat(folder)
        except OSError:
            continue  # missing folders are created 0700
        problem = _problem(folder, info, euid, folder=True)
        if problem:
            return f"its folder {folder} {problem[0]}", problem[1]
    return None


def check_worker_database(target: str, allow: bool = False) -> None:
    """Refuse (SharedDatabase) to run workers on a SQLite queue others could write; with
    `allow` (or QUEUECTL_ALLOW_SHARED_DB=1) say so on stderr and go on."""
    from queuectl.store import is_postgres

    if is_postgres(target):
        return
    found = shared_database_problem(target)
    if found is None:
        return
    problem, fix = found
    if allow or allowed_by_env():
        sys.stderr.write(f"queuectl: warning: {target}: {problem}; running its jobs anyway, "
                         "as allowed (--allow-shared-db)\n")
        return
    raise SharedDatabase(
        f"refusing to run jobs from {target}: {problem}, and whoever can write the queue runs "
        f"commands as {_user(os.geteuid())}. Fix: {fix}; or, if that is intended, "
        f"worker start --allow-shared-db (or {ALLOW_ENV}=1)")


def drop_private_env() -> None:
    """A worker needs none of queuectl's other secrets; removed here, its jobs never see them."""
    for name in PRIVATE_ENV:
        os.environ.pop(name, None)
