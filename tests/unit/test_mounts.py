"""Reading the kernel's mount table for the filesystem a queue file lives on."""

from __future__ import annotations

from queuectl.mounts import filesystem_of, shared_filesystem

# Lines in the kernel's own format (proc(5)), one of each shape that matters.
MOUNTINFO = "\n".join([
    "22 27 0:21 / /proc rw,relatime - proc proc rw",
    "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "40 27 0:35 / /home rw,relatime shared:20 master:3 - nfs4 srv:/export/home rw,vers=4.2",
    "41 40 8:2 / /home/local rw,relatime - xfs /dev/sdb1 rw",
    "42 27 0:36 / /mnt/my\\040share rw,relatime - cifs //nas/share rw",
    "43 27 0:37 / /srv rw,relatime - tmpfs tmpfs rw",
    "44 27 0:38 / /srv rw,relatime - fuse.sshfs me@host:/srv rw",  # mounted over the tmpfs
    "45 27 0:39 / /home2 rw,relatime - ext4 /dev/sdc1 rw",
])


def test_the_longest_mount_point_holding_the_path_decides():
    assert filesystem_of("/var/lib/q.db", MOUNTINFO) == "ext4"
    assert filesystem_of("/home/ann/q.db", MOUNTINFO) == "nfs4"
    assert filesystem_of("/home/local/q.db", MOUNTINFO) == "xfs"
    assert filesystem_of("/home2/q.db", MOUNTINFO) == "ext4"  # not inside /home
    assert filesystem_of("/home", MOUNTINFO) == "nfs4"


def test_escaped_mount_points_and_mounts_over_mounts():
    assert filesystem_of("/mnt/my share/q.db", MOUNTINFO) == "cifs"
    assert filesystem_of("/srv/q.db", MOUNTINFO) == "fuse.sshfs"


def test_only_filesystems_other_machines_reach_are_flagged():
    assert shared_filesystem("/home/ann/q.db", MOUNTINFO) == "nfs4"
    assert shared_filesystem("/srv/q.db", MOUNTINFO) == "fuse.sshfs"
    assert shared_filesystem("/home/local/q.db", MOUNTINFO) is None
    assert shared_filesystem("/var/q.db", MOUNTINFO) is None


def test_this_machines_own_table_is_read(tmp_path):
    fstype = filesystem_of(str(tmp_path))
    assert fstype is not None and " " not in fstype
    assert shared_filesystem(str(tmp_path)) is None  # the test folder is local here
