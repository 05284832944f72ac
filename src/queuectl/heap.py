"""A worker process keeps the memory it frees instead of handing it back after every job.

glibc's malloc returns the top of the heap to the kernel (`brk`) as soon as more than
M_TRIM_THRESHOLD (128 KiB, adjusted as it goes) lies free there. A worker's job cycle
allocates a few hundred KiB and frees it again: the 64 KiB buffer of each read of the
command's output, SQLite's page cache refilled after another worker's commit. Whenever the
heap's top happened to sit near that threshold, which depends on nothing more than what was
imported and in which order, every job shrank the heap and grew it again, and every page
touched after the growth was a fresh page fault: about 100 faults per job, a fifth of the
time two workers took to run 2,000 `true` jobs (see DECISIONS.md, section 25). Fixing both
thresholds makes the cycle reuse the same memory, whatever the layout.

Only for processes that run jobs in a loop: a library user's process keeps its allocator as
it was. Other C libraries (musl, macOS) have no such trimming or no mallopt; there this does
nothing.
"""

from __future__ import annotations

# mallopt's parameter numbers (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Free memory the heap may keep at its top: well above one job's cycle (a few hundred KiB)
# and SQLite's default page cache (2 MiB), small beside a worker's ~13 MiB.
TRIM_THRESHOLD_BYTES = 4 << 20
# Blocks below this come from the heap and are reused; larger ones are mapped and unmapped
# on their own. Fixed because setting the trim threshold stops glibc from adjusting it.
MMAP_THRESHOLD_BYTES = 1 << 20


def keep_freed_memory() -> bool:
    """Set the thresholds for this process (and what it forks later). True if they were set."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success, 0 if it refused the value.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
