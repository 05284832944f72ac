"""One racing process for test_races.py: wait for the start file, then claim and complete
jobs until none is left, and report what it did as JSON. Not a test module."""

from __future__ import annotations

import json
import os
import sys
import time

from queuectl.errors import QueueError
from queuectl.store import WorkerIdentity, open_store


def main(db: str, start_file: str, report: str, name: str) -> int:
    store = open_store(db, durable=False)
    me = WorkerIdentity(id=name, host="race", pid=os.getpid())
    deadline = time.monotonic() + 60
    while not os.path.exists(start_file):
        if time.monotonic() > deadline:
            print("the start file never appeared", file=sys.stderr)
            return 3
        time.sleep(0.002)
    claimed, refused, errors = [], [], []
    while True:
        try:
            job = store.claim(me, time.time(), 60)
            if job is None:
                break
            claimed.append(job.id)
            if not store.complete(job, time.time()):
                refused.append(job.id)
        except QueueError as exc:  # "database is locked" would land here
            errors.append(str(exc))
            if len(errors) > 20:
                break
    store.close()
    with open(report, "w") as f:
        json.dump({"claimed": claimed, "refused": refused, "errors": errors}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
