#!/usr/bin/env python3
"""The fault-injection suite (issue #6): every scenario on SQLite and PostgreSQL, one table.

    python chaos/run.py              # the full run (the issue's sizes), under 30 minutes
    python chaos/run.py --quick      # the CI-sized run, a few minutes
    python chaos/run.py --only 1,3 --backend sqlite

Exit status 1 if any scenario lost a job, finished one twice, ran jobs more often than its
faults allow, left a process behind, or recovered slower than its bound; 0 otherwise.
The table goes to stdout and to chaos/results/latest.md (full run) or quick.md (--quick).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python chaos/run.py` from anywhere: import chaos.*

from chaos.common import PG_ADMIN_URL, Row  # noqa: E402

BOTH = ("sqlite", "postgres")
# (number, module in chaos/scenarios, backends it applies to)
SCENARIOS = [
    (1, "storm", BOTH),
    (2, "fencing", BOTH),
    (3, "poison", BOTH),
    (4, "kill_everything", BOTH),
    (5, "stops", BOTH),
    (6, "db_restart", ("postgres",)),  # SQLite has no server to restart
    (7, "bad_files", ("sqlite",)),  # a file that is not a queue only exists for SQLite
    (8, "pauses", BOTH),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few minutes)")
    parser.add_argument("--only", help="scenario numbers, comma-separated (e.g. 1,3)")
    parser.add_argument("--backend", choices=BOTH, help="one backend only")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL,
                        help="PostgreSQL admin URL; each scenario creates and drops a database "
                             "there (scenario 6 starts a private server instead)")
    parser.add_argument("--no-write", action="store_true", help="do not write chaos/results/")
    args = parser.parse_args(argv)
    args.only = {int(n) for n in args.only.split(",")} if args.only else None
    return args


def run_one(number: int, module_name: str, backend: str, args: argparse.Namespace) -> Row:
    module = importlib.import_module(f"chaos.scenarios.{module_name}")
    started = time.monotonic()
    try:
        row = module.run(backend, args.quick, args.pg_url)
    except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
        row = Row(f"{number} {module_name}", backend)
        row.problems.append(f"scenario failed: {exc}")
        traceback.print_exc()
    row.seconds = time.monotonic() - started
    row.check()
    return row


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def table(rows: list[Row]) -> str:
    head = ["scenario", "backend", "jobs", "faults", "lost", "2 terminal",
            "extra runs (max)", "worst recovery (max)", "leftover procs", "time", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        recovery = fmt_seconds(r.recovery)
        if r.recovery_bound is not None:
            recovery += f" ({r.recovery_bound:g}s)"
        cells = [r.scenario, r.backend, str(r.jobs), str(r.faults), str(r.lost),
                 str(r.double_terminal), f"{r.extra} ({r.extra_bound})", recovery,
                 str(r.leftovers), f"{r.seconds:.0f}s", "pass" if r.passed else "FAIL"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    out = []
    for r in rows:
        for problem in r.problems:
            out.append(f"- **{r.scenario} / {r.backend}: {problem}**")
        for note in r.notes:
            out.append(f"- {r.scenario} / {r.backend}: {note}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A SIGTERM (CI's timeout, `kill`) unwinds like Ctrl-C, so every scenario's clean-up runs:
    # its processes killed, its database dropped, the private PostgreSQL server stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    rows: list[Row] = []
    for number, module_name, backends in SCENARIOS:
        if args.only and number not in args.only:
            continue
        for backend in backends:
            if args.backend and backend != args.backend:
                continue
            print(f"chaos: scenario {number} ({module_name}) on {backend}...",
                  file=sys.stderr, flush=True)
            row = run_one(number, module_name, backend, args)
            rows.append(row)
            print(f"chaos:   {'pass' if row.passed else 'FAIL'} in {row.seconds:.0f}s"
                  + "".join(f"; {p}" for p in row.problems), file=sys.stderr, flush=True)
    wall = time.monotonic() - started
    mode = "quick" if args.quick else "full"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = (f"chaos run ({mode}), {when}, {os.cpu_count()} cores, wall time {wall:.0f}s\n\n"
              f"{table(rows)}\n\n{details(rows)}\n")
    print(report)
    if not args.no_write and not args.only and not args.backend:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / ("quick.md" if args.quick else "latest.md")).write_text(report)
    return 0 if rows and all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
