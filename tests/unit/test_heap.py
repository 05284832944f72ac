"""queuectl.heap: a worker's job cycle reuses freed memory instead of faulting it in again."""

import platform
import subprocess
import sys

import pytest

# Mimics a worker's job: a few hundred KiB in blocks below the mmap threshold (so from the
# heap's top), touched, then all freed. Prints the page faults of the last 20 cycles.
CYCLES = """
import sys
from queuectl.heap import keep_freed_memory

def faults():
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # minflt

if sys.argv[1] == "keep" and not keep_freed_memory():
    sys.exit("mallopt refused")
for cycle in range(30):
    if cycle == 10:
        start = faults()
    blocks = [bytearray(64 * 1024) for _ in range(6)]  # zero-filled: every page touched
    del blocks
print(faults() - start)
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the trimming and mallopt are glibc's")


def faults_over_20_cycles(mode: str, folder) -> int:
    # A fresh interpreter, so this process's allocator is left as it was; run from an empty
    # folder so the checkout's root (and its queuectl.py shim) is not on the import path.
    done = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True,
                          check=True, cwd=folder)
    return int(done.stdout)


@glibc_only
def test_without_it_every_cycle_faults_its_memory_in_again(tmp_path):
    # 384 KiB freed at the top exceeds glibc's default trim threshold: given back each cycle,
    # faulted in again (96 pages) the next. This is what the setting is for.
    assert faults_over_20_cycles("default", tmp_path) > 20 * 50


@glibc_only
def test_with_it_the_cycle_reuses_the_same_memory(tmp_path):
    assert faults_over_20_cycles("keep", tmp_path) < 20 * 5

