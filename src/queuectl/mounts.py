"""Which filesystem a path lives on, from the kernel's mount table (/proc/self/mountinfo).

For one warning: SQLite's WAL keeps its index in shared memory (the -shm file, mapped by
every process that opens the queue), which works only between processes of one machine. A
queue file on a network filesystem looks shared between machines and is not: workers on two
hosts would each see their own index, claim the same jobs and corrupt the file. One machine
using a file on NFS (a home directory on NFS, say) is fine, so `worker start` warns rather
than refuses.
"""

from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"
# Filesystems whose files other machines can open too: network and cluster filesystems.
SHARED_BETWEEN_MACHINES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "lustre", "gpfs", "ocfs2",
    "gfs2", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone",
    "fuse.davfs2", "davfs",
})


def filesystem_of(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (which need not exist yet: the deepest
    mount point above it decides), or None where the mount table cannot be read (not Linux).
    `mountinfo` is the table's text, for tests; by default the kernel's."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO) as f:
                mountinfo = f.read()
        except OSError:
            return None
    where = os.path.realpath(path)
    best, best_type = -1, None
    for line in mountinfo.splitlines():
        # "36 35 98:0 /root /mnt/point rw,noatime master:1 - ext3 /dev/root rw": the mount
        # point is the fifth field, the type the first after the lone "-".
        fields = line.split(" ")
        try:
            mount_point = _unescape(fields[4])
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        inside = where == mount_point or where.startswith(mount_point.rstrip("/") + "/")
        # The longest mount point wins; of equal ones the later, mounted over the other.
        if inside and len(mount_point) >= best:
            best, best_type = len(mount_point), fstype
    return best_type


def shared_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The filesystem type if `path` is on one that other machines can reach, else None."""
    fstype = filesystem_of(path, mountinfo)
    return fstype if fstype in SHARED_BETWEEN_MACHINES else None


def _unescape(field: str) -> str:
    """Mount points escape space, tab, newline and backslash as octal (\\040 and so on)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode(
        "utf-8", "surrogateescape")
