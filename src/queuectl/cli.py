"""The command line: parsing, and one small function per command. No SQL, no job rules.

Each call is a new process, so only argparse, json and the store are imported up front;
everything else is imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from queuectl import __version__
from queuectl.errors import InputError, QueueError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (plus where to look), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _command(sub, name: str, help_text: str, example: str, parents=(), **kw) -> Parser:
    return sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text}\n\nexample:\n  {example}",
        formatter_class=_formatter,
        parents=list(parents),
        **kw,
    )


def build_parser() -> Parser:
    db = Parser(add_help=False)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH|URL",
        help="queue database: a SQLite file or postgresql://... "
        "(default: $QUEUECTL_DB, else ~/.local/share/queuectl/queue.db)",
    )
    as_json = Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print only JSON on stdout")

    parser = Parser(
        prog="queuectl",
        description="Durable background jobs for shell commands.\n\n"
        "examples:\n"
        "  queuectl enqueue '{\"id\":\"job1\",\"command\":\"sleep 2\"}'\n"
        "  queuectl worker start --count 2\n"
        "  queuectl status",
        formatter_class=_formatter,
        parents=[db],
    )
    parser.add_argument("--version", action="version", version=f"queuectl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = _command(
        sub, "enqueue", "add jobs to the queue",
        "queuectl enqueue '{\"id\":\"job1\",\"command\":\"sleep 2\",\"max_retries\":2}'\n"
        "  queuectl enqueue --file jobs.jsonl      # a JSON array or JSON Lines, all or nothing\n"
        "  echo '{\"command\":\"make\"}' | queuectl enqueue -",
        parents=[db, as_json],
    )
    p.add_argument("job", nargs="?", metavar="JSON",
                   help="a job as a JSON object (or array); '-' reads standard input")
    p.add_argument("--file", "-f", metavar="FILE",
                   help="read jobs from FILE: a JSON object, a JSON array or JSON Lines")
    p.add_argument("--max-retries", type=int, metavar="N", help="retries after the first run")
    p.set_defaults(func=cmd_enqueue)

    worker = _command(sub, "worker", "start or stop workers", "queuectl worker start --count 4",
                      parents=[db])
    wsub = worker.add_subparsers(dest="worker_command", metavar="ACTION", parser_class=Parser)
    wsub.required = True
    p = _command(
        wsub, "start",
        "run workers in the foreground until stopped (Ctrl-C: finish running jobs and stop; "
        "twice: stop now, putting running jobs back)",
        "queuectl worker start --count 4", parents=[db],
    )
    p.add_argument("--count", "-n", type=_positive_int, default=1, metavar="N",
                   help="number of worker processes (default 1)")
    p.add_argument("--burst", action="store_true",
                   help="exit once no job is ready instead of waiting for more")
    p.add_argument("--quiet", "-q", action="store_true", help="log nothing but errors")
    p.set_defaults(func=cmd_worker_start)
    p = _command(
        wsub, "stop",
        "ask every worker on this database (any terminal, any host) to finish its running job "
        "and exit, then wait until they have",
        "queuectl worker stop --timeout 60", parents=[db],
    )
    p.add_argument("--timeout", type=_non_negative_float, default=300.0, metavar="SECONDS",
                   help="how long to wait for the workers to exit (default 300; 0: do not wait)")
    p.set_defaults(func=cmd_worker_stop)

    p = _command(sub, "status", "job counts per state and the active workers",
                 "queuectl status --json", parents=[db, as_json])
    p.set_defaults(func=cmd_status)

    p = _command(sub, "list", "list jobs, newest first",
                 "queuectl list --state pending --limit 20", parents=[db, as_json])
    p.add_argument("--state", metavar="STATE",
                   help="only jobs in STATE: pending, processing, completed, failed, dead, "
                   "cancelled")
    p.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                   help="at most N jobs (default 100)")
    p.set_defaults(func=cmd_list)

    p = _command(sub, "show", "one job: all its fields and its attempt history",
                 "queuectl show job1", parents=[db, as_json])
    p.add_argument("job_id", metavar="ID")
    p.set_defaults(func=cmd_show)

    dlq = _command(sub, "dlq", "the dead letter queue: jobs that exhausted their retries",
                   "queuectl dlq list", parents=[db])
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", parser_class=Parser)
    dsub.required = True
    p = _command(dsub, "list", "list dead jobs", "queuectl dlq list --json",
                 parents=[db, as_json])
    p.add_argument("--limit", type=_positive_int, default=1000, metavar="N")
    p.set_defaults(func=cmd_dlq_list)
    p = _command(dsub, "retry",
                 "make dead jobs pending again, with a fresh retry budget (attempts reset to 0; "
                 "history kept)",
                 "queuectl dlq retry job1   |   queuectl dlq retry --all", parents=[db, as_json])
    p.add_argument("job_ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="retry every dead job")
    p.set_defaults(func=cmd_dlq_retry)
    p = _command(dsub, "purge", "delete every dead job and its history", "queuectl dlq purge",
                 parents=[db, as_json])
    p.set_defaults(func=cmd_dlq_purge)

    config = _command(sub, "config", "queue settings shared by every worker and CLI call",
                      "queuectl config set max-retries 5", parents=[db])
    csub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    csub.required = True
    p = _command(csub, "list", "every key with its value and meaning", "queuectl config list",
                 parents=[db, as_json])
    p.set_defaults(func=cmd_config_list)
    p = _command(csub, "get", "print one value", "queuectl config get backoff-base",
                 parents=[db, as_json])
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_config_get)
    p = _command(csub, "set", "change one value", "queuectl config set backoff-base 1.5",
                 parents=[db, as_json])
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(func=cmd_config_set)
    p = _command(csub, "unset", "go back to the default value",
                 "queuectl config unset backoff-base", parents=[db])
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_config_unset)

    p = _command(
        sub, "smoke-test",
        "run the whole lifecycle in a temporary database: a job that succeeds, one that "
        "fails, retries with backoff and lands in the DLQ; exit 0 only if all behaved",
        "queuectl smoke-test",
    )
    p.set_defaults(func=cmd_smoke_test)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# -- commands -------------------------------------------------------------------------------


def _open(args, durable: bool = True):
    from queuectl.api import Queue

    return Queue(getattr(args, "db", None), durable=durable)


def _read_jobs(args) -> list[Any]:
    if args.file and args.job:
        raise InputError("give jobs either as an argument or with --file, not both")
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise InputError(f"cannot read {args.file}: {exc.strerror}") from None
    elif args.job == "-" or (args.job is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
    elif args.job is not None:
        text = args.job
    else:
        raise InputError("no job given: pass a JSON object like '{\"command\": \"echo hi\"}', "
                         "'-' for standard input, or --file FILE")
    return parse_jobs_text(text)


def parse_jobs_text(text: str) -> list[Any]:
    """A JSON object, a JSON array of objects, or JSON Lines (one object per line)."""
    stripped = text.strip()
    if not stripped:
        raise InputError("no job given: the input is empty")
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as first_error:
        lines = [line for line in stripped.splitlines() if line.strip()]
        if len(lines) < 2:
            raise InputError(f"invalid JSON: {first_error.msg} at line {first_error.lineno} "
                             f"column {first_error.colno}") from None
        jobs = []
        for number, line in enumerate(lines, 1):
            try:
                jobs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON on line {number}: {exc.msg} at column "
                                 f"{exc.colno}") from None
        return jobs
    if isinstance(value, list):
        if not value:
            raise InputError("the JSON array holds no jobs")
        return value
    return [value]


def cmd_enqueue(args) -> int:
    from queuectl.models import check_unique_ids, parse_job_spec

    specs = _read_jobs(args)
    if args.max_retries is not None:
        if args.max_retries < 0:
            raise InputError(f"--max-retries must be >= 0, got {args.max_retries}")
        specs = [{**s, "max_retries": args.max_retries} if isinstance(s, dict) else s
                 for s in specs]
    # Validate everything before opening the database: bad input writes nothing.
    check_unique_ids([parse_job_spec(spec, index if len(specs) > 1 else None)
                      for index, spec in enumerate(specs)])
    with _open(args) as queue:
        results = queue.enqueue_specs(specs)
    if args.json:
        from queuectl.output import print_json

        print_json([{"id": r.id, "duplicate": r.duplicate} for r in results])
    else:
        sys.stdout.write("".join(f"{r.id}\n" for r in results))
    return EXIT_OK


def cmd_worker_start(args) -> int:
    from queuectl.store import open_store, resolve_target
    from queuectl.supervisor import Supervisor

    target = resolve_target(getattr(args, "db", None))
    open_store(target, durable=False).close()  # fail here, once, before forking
    return Supervisor(target, args.count, burst=args.burst, verbose=not args.quiet).run()


def cmd_worker_stop(args) -> int:
    import time

    from queuectl.output import message

    with _open(args) as queue:
        lease = queue.store.settings()["lease-seconds"]
        asked = queue.store.request_stop(time.time() - lease)
        if asked == 0:
            message("no running workers on this database")
            return EXIT_OK
        message(f"asked {asked} worker(s) to stop after their current job")
        deadline = time.monotonic() + args.timeout
        while True:
            alive = len(queue.store.live_workers(time.time() - lease))
            if alive == 0:
                message("all workers stopped")
                return EXIT_OK
            if time.monotonic() >= deadline:
                message(f"{alive} worker(s) still finishing their jobs after {args.timeout:g}s; "
                        "they will stop when done")
                return EXIT_FAILURE
            time.sleep(0.1)


def cmd_status(args) -> int:
    from queuectl.output import print_json, table
    from queuectl.timeutil import ago, iso, now

    with _open(args) as queue:
        counts = queue.counts()
        workers = queue.workers()
        location = queue.location
    current = now()
    worker_rows = [
        {
            "id": w["id"],
            "host": w["host"],
            "pid": w["pid"],
            "current_job": w["current_job"],
            "job_running_for": None if w["job_started_at"] is None
            else round(current - w["job_started_at"], 1),
            "last_heartbeat": iso(w["heartbeat_at"]),
            "stopping": bool(w["stop_requested"]),
        }
        for w in workers
    ]
    if args.json:
        print_json({"database": location, "counts": counts, "workers": worker_rows})
        return EXIT_OK
    print(f"database: {location}")
    print()
    print(table([{"state": s, "jobs": n} for s, n in counts.items()],
                [("state", "STATE"), ("jobs", "JOBS")], right=("jobs",)))
    print()
    if not worker_rows:
        print("workers: none running (start some with: queuectl worker start --count 2)")
        return EXIT_OK
    for row, w in zip(worker_rows, workers, strict=True):
        row["for"] = None if w["job_started_at"] is None else ago(current - w["job_started_at"])
        row["beat"] = ago(current - w["heartbeat_at"]) + " ago"
        row["note"] = "stopping" if row["stopping"] else ""
    print(table(worker_rows, [("id", "WORKER"), ("host", "HOST"), ("pid", "PID"),
                              ("current_job", "JOB"), ("for", "RUNNING FOR"),
                              ("beat", "HEARTBEAT"), ("note", "")]))
    return EXIT_OK


def _job_rows(jobs) -> list[dict]:
    from queuectl.output import shorten
    from queuectl.timeutil import iso

    return [
        {"id": j.id, "state": j.state, "attempts": f"{j.attempts}/{j.max_retries + 1}",
         "updated": iso(j.updated_at), "command": shorten(j.command, 50),
         "error": shorten(j.last_error, 40)}
        for j in jobs
    ]


def cmd_list(args) -> int:
    from queuectl.output import message, print_json, table

    if args.state is not None:
        from queuectl.models import validate_state

        validate_state(args.state)
    with _open(args) as queue:
        jobs = queue.list(args.state, args.limit)
    if args.json:
        print_json([j.to_dict() for j in jobs])
        return EXIT_OK
    if not jobs:
        message("no jobs" + (f" in state {args.state}" if args.state else ""))
        return EXIT_OK
    print(table(_job_rows(jobs), [("id", "ID"), ("state", "STATE"), ("attempts", "ATTEMPTS"),
                                  ("updated", "UPDATED"), ("command", "COMMAND"),
                                  ("error", "LAST ERROR")]))
    return EXIT_OK


def cmd_show(args) -> int:
    from queuectl.output import print_json, table
    from queuectl.timeutil import iso

    with _open(args) as queue:
        job = queue.get(args.job_id)
        attempts = queue.attempts(args.job_id)
    history = [
        {"run": a["run"], "outcome": a["outcome"], "exit_code": a["exit_code"],
         "started_at": iso(a["started_at"]), "finished_at": iso(a["finished_at"]),
         "seconds": round(a["finished_at"] - a["started_at"], 3), "worker": a["worker_id"],
         "error": a["error"]}
        for a in attempts
    ]
    if args.json:
        print_json({**job.to_dict(), "history": history})
        return EXIT_OK
    for key, value in job.to_dict().items():
        if value not in (None, {}, ""):
            print(f"{key + ':':<18}{json.dumps(value) if isinstance(value, dict) else value}")
    if history:
        print()
        print(table(history, [("run", "RUN"), ("outcome", "OUTCOME"), ("exit_code", "EXIT"),
                              ("started_at", "STARTED"), ("seconds", "SECONDS"),
                              ("worker", "WORKER"), ("error", "ERROR")], right=("seconds",)))
    return EXIT_OK


def cmd_dlq_list(args) -> int:
    from queuectl.output import message, print_json, shorten, table
    from queuectl.timeutil import iso

    with _open(args) as queue:
        dead = queue.dlq_list(args.limit)
    rows = [
        {"id": d["id"], "command": d["command"], "attempts": d["attempts"],
         "max_retries": d["max_retries"], "exit_code": d["exit_code"],
         "last_error": d["last_error"], "crashes": d["crashes"], "queue": d["queue"],
         "created_at": iso(d["created_at"]), "died_at": iso(d["died_at"])}
        for d in dead
    ]
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        message("the dead letter queue is empty")
        return EXIT_OK
    for row in rows:
        row["short_command"] = shorten(row["command"], 40)
        row["short_error"] = shorten(row["last_error"], 50)
    print(table(rows, [("id", "ID"), ("attempts", "ATTEMPTS"), ("died_at", "DIED"),
                       ("short_command", "COMMAND"), ("short_error", "LAST ERROR")]))
    return EXIT_OK


def cmd_dlq_retry(args) -> int:
    from queuectl.output import message, print_json

    if args.all == bool(args.job_ids):
        raise InputError("give the ids of dead jobs to retry, or --all (not both)")
    with _open(args) as queue:
        if args.all:
            count = queue.dlq_retry_all()
            ids = None
        else:
            ids = queue.dlq_retry(*args.job_ids)
            count = len(ids)
    if args.json:
        print_json({"retried": count, "ids": ids})
    else:
        message(f"{count} job(s) moved from the DLQ back to pending")
    return EXIT_OK


def cmd_dlq_purge(args) -> int:
    from queuectl.output import message, print_json

    with _open(args) as queue:
        count = queue.dlq_purge()
    if args.json:
        print_json({"purged": count})
    else:
        message(f"deleted {count} dead job(s)")
    return EXIT_OK


def cmd_config_list(args) -> int:
    from queuectl.config import KEYS
    from queuectl.output import print_json, table

    with _open(args) as queue:
        values = queue.config()
    if args.json:
        print_json(values)
        return EXIT_OK
    print(table([{"key": k, "value": f"{v:g}" if isinstance(v, float) else v,
                  "help": KEYS[k].help} for k, v in values.items()],
                [("key", "KEY"), ("value", "VALUE"), ("help", "MEANING")]))
    return EXIT_OK


def cmd_config_get(args) -> int:
    from queuectl.config import get_key

    get_key(args.key)
    with _open(args) as queue:
        value = queue.config()[args.key]
    print(json.dumps(value) if args.json else (f"{value:g}" if isinstance(value, float)
                                                else value))
    return EXIT_OK


def cmd_config_set(args) -> int:
    from queuectl.config import Settings, parse_value
    from queuectl.store import queue_exists, resolve_target

    value = parse_value(args.key, args.value)  # validate before opening anything
    if not queue_exists(resolve_target(getattr(args, "db", None))):
        # A new queue would hold the defaults: check against them before creating it.
        Settings({args.key: str(value)}).check_timing()
    with _open(args) as queue:
        value = queue.config_set(args.key, args.value)
    print(json.dumps({args.key: value}) if args.json else f"{args.key} = {value:g}"
          if isinstance(value, float) else f"{args.key} = {value}")
    return EXIT_OK


def cmd_config_unset(args) -> int:
    from queuectl.config import get_key

    get_key(args.key)
    with _open(args) as queue:
        queue.config_unset(args.key)
    return EXIT_OK


def cmd_smoke_test(args) -> int:
    from queuectl.smoke import run_smoke_test

    return run_smoke_test()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QueueError as exc:
        sys.stderr.write(f"queuectl: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("queuectl: interrupted\n")
        return 130
    except BrokenPipeError:
        # `queuectl list | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
