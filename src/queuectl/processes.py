"""Process-group facts and kills that do not fall for pid reuse.

A job runs as the leader of its own session, so its pid is also its process-group id. To kill
what is left of a job later (from another worker, after a crash), we record the leader's start
time with the boot id; a pid that was reused by an unrelated process has another start time.
Linux never hands out a pid that is still in use as a group id, so while any member of the
job's group lives, the group id cannot name anybody else's group.
"""

from __future__ import annotations

import os
import signal
import time

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def _boot_id() -> str:
    try:
        with open(_BOOT_ID_PATH) as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


BOOT_ID = _boot_id()


def start_stamp(pid: int) -> str | None:
    """boot id + the process's start time in clock ticks, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return f"{BOOT_ID}:{int(fields[19])}"


def process_alive(pid: int, recorded_stamp: str | None) -> bool:
    """Whether the process that had `recorded_stamp` still runs (a reused pid does not)."""
    stamp = start_stamp(pid)
    if stamp is None:
        return False
    return recorded_stamp is None or stamp == recorded_stamp


def worker_alive(row: dict, this_host: str) -> bool:
    """A worker row from the database: on this host we can ask the kernel; elsewhere its
    recent heartbeat is all we know."""
    return row["host"] != this_host or process_alive(row["pid"], row.get("pid_started"))


def group_alive(pgid: int) -> bool:
    """Cheap: whether any process (a zombie counts) is still in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_running(pgid: int) -> bool:
    """Whether a live (non-zombie) process is still in the group. A killed background child
    stays a zombie until its new parent (init) reaps it, which some inits do late; waiting for
    zombies to vanish would cost the whole kill grace for nothing."""
    if not group_alive(pgid):
        return False
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is the state, fields[2] the process group
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def is_same_group(pgid: int, recorded_stamp: str | None) -> bool:
    """Whether the group `pgid` is still the one whose leader had `recorded_stamp`."""
    if not recorded_stamp or not recorded_stamp.startswith(BOOT_ID + ":"):
        return False  # recorded on another boot (or never): the pid means nothing now
    stamp = start_stamp(pgid)
    if stamp is not None:
        return stamp == recorded_stamp  # leader alive: it must be the same process
    # Leader gone: surviving members keep the group id reserved, so it is still ours.
    return group_alive(pgid)


def groups_of_run(job_id: str, run: int) -> set[int]:
    """The process groups of every live process that carries a run's environment
    (QUEUECTL_JOB_ID and QUEUECTL_RUN, which the worker gives each job and its children
    inherit). For a run whose group id never reached the database: found this way, it can still
    be stopped. A process that scrubbed its environment is not found."""
    wanted = {f"QUEUECTL_JOB_ID={job_id}".encode(), f"QUEUECTL_RUN={run}".encode()}
    me = os.getpid()
    groups = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if not wanted.issubset(f.read().split(b"\0")):
                    continue
            groups.add(os.getpgid(int(name)))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return groups


def kill_group(pgid: int, grace: float = 2.0, is_reaped=None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if is_reaped is not None:
            is_reaped()
        if not group_running(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
