"""The command line: parsing, and one small function per command. No SQL, no job rules.

Each call is a new process, so only json is imported up front; everything else is imported
by the command that needs it. Even argparse (with the gettext and locale it pulls in) waits
until a call needs it: a plain `enqueue` is read by _plain_enqueue without it.
"""

from __future__ import annotations

import json
import os
import sys

from queuectl import __version__
from queuectl.errors import InputError, QueueError

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    import argparse
    from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BIG_BATCH = 500  # jobs in one enqueue from which a terminal shows progress


def _parser_class():
    """argparse, but a usage error is one line on stderr (plus where to look), exit 2.
    Defined on first use, so that argparse is imported only by calls that parse with it."""
    global Parser
    if Parser is None:
        import argparse

        class Parser(argparse.ArgumentParser):  # type: ignore[no-redef]
            def error(self, message: str) -> None:  # type: ignore[override]
                sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
                sys.exit(EXIT_USAGE)

    return Parser


Parser = None


def _formatter(prog: str) -> argparse.HelpFormatter:
    import argparse

    # The width is passed in: left to itself, argparse imports shutil (and locale) for it,
    # about 4 ms of every call, even calls that never print help.
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = 100
    width = int(os.environ.get("COLUMNS", "0") or 0) or columns
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=width - 2)


# Every top-level command; build_parser() builds only the one being run (tests check the list).
COMMANDS = ("enqueue", "worker", "status", "stats", "list", "show", "dlq", "config", "logs",
            "cancel", "wait", "purge", "migrate", "metrics", "dashboard", "smoke-test")


class _Skipped:
    """Stands in for the parser of a command this call does not run. Building every
    subparser costs about 40 ms, more than all the rest of an enqueue, and each CLI call
    is a new process; so only the command being run gets a parser. (A call without a known
    command, like --help or a typo, gets them all, for the listing and the error.)"""

    required = False

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


_wanted: str | None = None  # the top-level command of this call; None builds all


def _top(sub, name: str, help_text: str, example: str, parents=(), **kw):
    if _wanted is not None and name != _wanted:
        return _Skipped()
    return _command(sub, name, help_text, example, parents, **kw)


def _command(sub, name: str, help_text: str, example: str, parents=(), **kw):
    if isinstance(sub, _Skipped):
        return sub
    return sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text}\n\nexample:\n  {example}",
        formatter_class=_formatter,
        parents=list(parents),
        **kw,
    )


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `wanted`, other commands get only a name and a help line."""
    import argparse

    global _wanted
    Parser = _parser_class()  # noqa: N806 - the class, under its usual name
    _wanted = wanted if wanted in COMMANDS else None
    db = Parser(add_help=False, formatter_class=_formatter)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH|URL",
        help="queue database: a SQLite file or postgresql://... "
        "(default: $QUEUECTL_DB, else ~/.local/share/queuectl/queue.db)",
    )
    as_json = Parser(add_help=False, formatter_class=_formatter)
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

    p = _top(
        sub, "enqueue", "add jobs to the queue",
        "queuectl enqueue '{\"id\":\"job1\",\"command\":\"sleep 2\",\"max_retries\":2}'\n"
        "  queuectl enqueue --file jobs.jsonl      # a JSON array or JSON Lines, all or nothing\n"
        "  echo '{\"command\":\"make\"}' | queuectl enqueue -",
        parents=[db, as_json],
    )
    p.add_argument("job", nargs="?", metavar="JSON",
                   help="a job as a JSON object (or array); '-' reads standard input")
    p.add_argument("--file", "-f", metavar="FILE",
                   help="read jobs from FILE ('-': standard input): a JSON object, a JSON array "
                        "or JSON Lines")
    p.add_argument("--max-retries", type=int, metavar="N", help="retries after the first run")
    p.add_argument("--priority", type=int, metavar="N", help="higher runs first (default 0)")
    p.add_argument("--queue", metavar="NAME", help="queue name (default 'default')")
    p.add_argument("--delay", metavar="DURATION", help="do not run before 30s / 5m / 2h from now")
    p.add_argument("--run-at", metavar="TIME", help="do not run before this ISO 8601 time")
    p.add_argument("--timeout", metavar="DURATION",
                   help="kill the job's processes after this long (30s, 5m); counts as a failure")
    p.add_argument("--cwd", metavar="DIR", help="run in DIR (default: the current directory)")
    p.add_argument("--env", action="append", metavar="NAME=VALUE", default=[],
                   help="extra environment variable for the command (repeatable)")
    p.add_argument("--unique-key", metavar="KEY",
                   help="skip the enqueue if a job with this key is pending, failed or running")
    p.set_defaults(func=cmd_enqueue)

    worker = _top(sub, "worker", "start or stop workers", "queuectl worker start --count 4",
                      parents=[db])
    wsub = worker.add_subparsers(dest="worker_command", metavar="ACTION", parser_class=Parser)
    wsub.required = True
    p = _command(
        wsub, "start",
        "run workers in the foreground until stopped (Ctrl-C, SIGTERM or the terminal's "
        "hang-up: finish running jobs and stop; Ctrl-C twice: stop now, putting running jobs "
        "back; under nohup a hang-up is ignored). Ctrl-Z pauses: running jobs go on, no new "
        "one starts until fg or bg",
        "queuectl worker start --count 4", parents=[db],
    )
    p.add_argument("--count", "-n", type=_positive_int, default=1, metavar="N",
                   help="number of worker processes (default 1)")
    p.add_argument("--burst", action="store_true",
                   help="exit once no job is ready instead of waiting for more")
    p.add_argument("--queue", metavar="A,B",
                   help="serve only these queues (comma-separated; default: all)")
    p.add_argument("--quiet", "-q", action="store_true", help="log nothing but errors")
    p.add_argument("--allow-shared-db", action="store_true",
                   help="run even though other users can write the SQLite queue (and so run "
                   "commands as you); also $QUEUECTL_ALLOW_SHARED_DB=1")
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

    p = _top(sub, "status",
             "job counts per queue and state, recent throughput, latency and failure rate, "
             "and the active workers",
             "queuectl status   |   queuectl status --watch   |   queuectl status --json",
             parents=[db, as_json])
    p.add_argument("--watch", "-w", action="store_true",
                   help="redraw every second until Ctrl-C (with --json: one document a line)")
    p.add_argument("--interval", type=_positive_float, default=1.0, metavar="SECONDS",
                   help=argparse.SUPPRESS)
    p.add_argument("--recount", action="store_true",
                   help="first rebuild the kept counts from the jobs and their run history "
                        "(a repair, for counts that drifted; writers wait while it runs)")
    p.set_defaults(func=_later("overview", "cmd_status"))

    p = _top(sub, "stats",
             "throughput, queue wait and run time (p50/p95) and failure rate, per queue and "
             "per command, from the run history",
             "queuectl stats --since 1h --json", parents=[db, as_json])
    p.add_argument("--since", default="1h", metavar="DURATION",
                   help="look back this far (30m, 6h, 7d; default 1h)")
    p.set_defaults(func=_later("overview", "cmd_stats"))

    p = _top(sub, "list", "list jobs, newest first",
                 "queuectl list --state pending --limit 20", parents=[db, as_json])
    p.add_argument("--state", metavar="STATE",
                   help="only jobs in STATE: pending, processing, completed, failed, dead, "
                   "cancelled")
    p.add_argument("--queue", metavar="NAME", help="only jobs in this queue")
    p.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                   help="at most N jobs (default 100)")
    p.set_defaults(func=cmd_list)

    p = _top(sub, "show", "one job: all its fields and its attempt history",
                 "queuectl show job1", parents=[db, as_json])
    p.add_argument("job_id", metavar="ID")
    p.set_defaults(func=cmd_show)

    dlq = _top(sub, "dlq", "the dead letter queue: jobs that exhausted their retries",
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
    p.add_argument("--all", action="store_true",
                   help="retry every dead job, except those whose unique_key a live job "
                        "holds (they are named)")
    p.set_defaults(func=cmd_dlq_retry)
    p = _command(dsub, "purge", "delete every dead job and its history", "queuectl dlq purge",
                 parents=[db, as_json])
    p.set_defaults(func=cmd_dlq_purge)

    config = _top(sub, "config", "queue settings shared by every worker and CLI call",
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
    p = _command(csub, "set", "change one value, or several at once (checked together)",
                 "queuectl config set backoff-base 1.5\n"
                 "  queuectl config set lease-seconds 4 heartbeat-seconds 1",
                 parents=[db, as_json])
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.add_argument("more", nargs="*", metavar="KEY VALUE", help="more pairs")
    p.set_defaults(func=cmd_config_set)
    p = _command(csub, "unset", "go back to the default value",
                 "queuectl config unset backoff-base", parents=[db])
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_config_unset)

    p = _top(sub, "logs", "print what a job's latest run (or --attempt N) printed",
                 "queuectl logs job1   |   queuectl logs -f job1", parents=[db, as_json])
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--attempt", type=_positive_int, metavar="N", help="that run instead")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing as the job runs, across retries, until it finishes "
                   "(exit 0 if it completed, 1 if not)")
    p.set_defaults(func=_later("control", "cmd_logs"))

    p = _top(sub, "cancel",
                 "cancel jobs: a waiting job never runs; a running job's processes are killed",
                 "queuectl cancel job1 job2", parents=[db, as_json])
    p.add_argument("job_ids", nargs="+", metavar="ID")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for running jobs to be killed")
    p.set_defaults(func=_later("control", "cmd_cancel"))

    p = _top(sub, "wait",
                 "block until the jobs are finished: exit 0 if all completed, 1 if any is dead "
                 "or cancelled, 124 on timeout",
                 "queuectl wait job1 job2 --timeout 600", parents=[db, as_json])
    p.add_argument("job_ids", nargs="+", metavar="ID")
    p.add_argument("--timeout", type=_non_negative_float, metavar="SECONDS",
                   help="give up after this many seconds (default: wait forever)")
    p.set_defaults(func=_later("control", "cmd_wait"))

    p = _top(sub, "purge", "delete finished jobs with their history and output",
                 "queuectl purge --state completed --older-than 7d", parents=[db, as_json])
    p.add_argument("--state", metavar="S[,S]",
                   help="completed, dead and/or cancelled (default: completed,cancelled)")
    p.add_argument("--older-than", metavar="DURATION",
                   help="only jobs finished longer ago than this (7d, 12h; default: all)")
    p.set_defaults(func=_later("control", "cmd_purge"))

    p = _top(
        sub, "migrate",
        "copy a whole queue (jobs in their order, attempt history, config) to another "
        "database, SQLite or PostgreSQL; refuses a target that already holds jobs",
        "queuectl migrate --from ~/.local/share/queuectl/queue.db "
        "--to postgresql://queue@dbhost/queue",
        parents=[as_json],
    )
    p.add_argument("--from", dest="source", required=True, metavar="PATH|URL",
                   help="the queue to copy (left unchanged)")
    p.add_argument("--to", dest="target", required=True, metavar="PATH|URL",
                   help="where to copy it: a new file, or an empty queue or database")
    p.set_defaults(func=cmd_migrate)

    p = _top(sub, "metrics",
             "the queue's Prometheus metrics: print them once, or serve them on /metrics "
             "(needs: pip install 'queuectl[metrics]')",
             "queuectl metrics   |   queuectl metrics --port 9108", parents=[db])
    p.add_argument("--port", type=int, metavar="PORT",
                   help="serve on http://HOST:PORT/metrics until Ctrl-C instead of printing")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.set_defaults(func=_later("metrics", "cmd_metrics"))

    p = _top(sub, "dashboard",
             "a web dashboard: counts, throughput, jobs, the DLQ (retry, purge) and workers "
             "(needs: pip install 'queuectl[web]')",
             "queuectl dashboard --port 8000\n"
             "  queuectl dashboard --host 0.0.0.0 --token \"$(openssl rand -hex 16)\"",
             parents=[db])
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=8000, metavar="PORT", help="default 8000")
    p.add_argument("--token", metavar="T",
                   help="the login token (default: $QUEUECTL_DASHBOARD_TOKEN, else a random "
                   "one, printed in the URL)")
    p.set_defaults(func=_later("web.server", "cmd_dashboard"))

    p = _top(
        sub, "smoke-test",
        "run the whole lifecycle in a temporary database: a job that succeeds, one that "
        "fails, retries with backoff and lands in the DLQ; exit 0 only if all behaved",
        "queuectl smoke-test",
    )
    p.set_defaults(func=cmd_smoke_test)
    return parser


# Optional packages a command may need, and the extra that installs each.
_EXTRAS = {"prometheus_client": "metrics", "starlette": "web", "uvicorn": "web",
           "jinja2": "web"}


def _later(module: str, function: str):
    """A command function from another module, imported only when that command runs."""

    def run(args):
        import importlib

        try:
            loaded = importlib.import_module(f"queuectl.{module}")
        except ModuleNotFoundError as exc:
            extra = _EXTRAS.get((exc.name or "").partition(".")[0])
            if extra is None:
                raise
            raise QueueError(f"this command needs {exc.name}, which is not installed: "
                             f"pip install 'queuectl[{extra}]'") from None
        return getattr(loaded, function)(args)

    return run


def _command_word(argv: list[str]) -> str | None:
    """The top-level command in argv, skipping the global --db option and its value."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--db":
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    import argparse

    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _non_negative_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# -- commands -------------------------------------------------------------------------------


def open_queue(args, create: bool = False):
    """The queue of --db. Only commands that add to a queue create one; the others see a
    missing queue as an empty one and leave no file behind."""
    from queuectl.api import Queue

    return Queue(getattr(args, "db", None), create=create)


def _read_jobs(args) -> list[Any]:
    if args.file and args.job:
        raise InputError("give jobs either as an argument or with --file, not both")
    if args.file and args.file != "-":  # `--file -` is standard input, as the argument '-'
        try:
            with open(args.file, "rb") as f:
                text = _utf8_text(f.read(), args.file)
        except OSError as exc:
            raise InputError(f"cannot read {args.file}: {exc.strerror}") from None
    elif "-" in (args.job, args.file):  # only when asked: never block on a stdin nobody writes to
        if sys.stdin is None:  # started with it closed (`<&-`)
            raise InputError("'-' reads jobs from standard input, which is closed")
        try:
            data = sys.stdin.buffer.read()
        except OSError as exc:  # a terminal that hung up, say
            raise InputError(f"cannot read standard input: {exc.strerror}") from None
        text = _utf8_text(data, "standard input")
    elif args.job is not None:
        # Python decoded the argument leniently (undecodable bytes as lone surrogates, which
        # the job's checks then misnamed): take its bytes back and decode them strictly.
        text = _utf8_text(os.fsencode(args.job), "the job argument")
    else:
        raise InputError("no job given: pass a JSON object like '{\"command\": \"echo hi\"}', "
                         "'-' for standard input, or --file FILE")
    return parse_jobs_text(text)


def _utf8_text(data: bytes, what: str) -> str:
    """Jobs as text: UTF-8, with a leading byte order mark allowed (Windows editors and
    PowerShell write one), else a one-line error that says where the first bad byte is."""
    try:
        # Not the "utf-8-sig" codec: the same text, but one more module for every call to load.
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{what} is not UTF-8 text: byte {data[exc.start]:#04x} on line "
                         f"{line} cannot be decoded (jobs are read as UTF-8)") from None


def parse_jobs_text(text: str) -> list[Any]:
    """A JSON object, a JSON array of objects, or JSON Lines (one object per line)."""
    stripped = text.strip()
    if not stripped:
        raise InputError("no job given: the input is empty")
    try:
        value = json.loads(text)  # not `stripped`: error line numbers must match the input
    except json.JSONDecodeError as first_error:
        document_error = InputError(f"invalid JSON: {first_error.msg} at line "
                                    f"{first_error.lineno} column {first_error.colno}")
        lines = text.splitlines()
        if sum(1 for line in lines if line.strip()) < 2:
            raise document_error from None
        jobs = _json_lines_fast(lines)
        if jobs is not None:
            return jobs
        jobs = []  # some line is not one JSON value: find which, and say so
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                jobs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if not jobs:  # not JSON Lines at all (pretty-printed JSON with a typo, say)
                    raise document_error from None
                raise InputError(f"invalid JSON on line {number}: {exc.msg} at column "
                                 f"{exc.colno}") from None
        return jobs
    if isinstance(value, list):
        if not value:
            raise InputError("the JSON array holds no jobs")
        return value
    return [value]


def _json_lines_fast(lines: list[str]) -> list[Any] | None:
    """Every non-blank line decoded, or None if any line is not exactly one JSON value (the
    caller then decodes line by line, to name the line). raw_decode, without json.loads's
    wrapping, decodes a 100,000-line file in half the time; the check that the value ends
    where the line does (JSON whitespace aside) keeps it as strict as json.loads."""
    decode = json.JSONDecoder().raw_decode
    values = []
    for line in lines:
        body = line.strip(" \t\r")  # JSON's whitespace; a line break ended the line already
        if not body:
            continue
        try:
            value, end = decode(body)
        except json.JSONDecodeError:
            return None
        if end != len(body):
            return None
        values.append(value)
    return values


def _flag_fields(args) -> dict[str, Any]:
    """Enqueue flags as job-spec fields; they override the same fields in the JSON."""
    fields: dict[str, Any] = {}
    for flag in ("max_retries", "priority", "queue", "delay", "run_at", "timeout", "cwd",
                 "unique_key"):
        value = getattr(args, flag)
        if value is not None:
            fields[flag] = value
    if "cwd" in fields:
        if not fields["cwd"]:  # `--cwd "$DIR"` with DIR unset: not "here"
            raise InputError("--cwd is empty; give a directory")
        fields["cwd"] = os.path.abspath(fields["cwd"])
    if args.env:
        env = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise InputError(f"--env {item!r} must look like NAME=VALUE")
            env[name] = value
        fields["env"] = env
    if "delay" in fields and "run_at" in fields:
        raise InputError("give --delay or --run-at, not both")
    return fields


def _apply_flags(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Flags win over the JSON, except --env, which adds to the job's own env."""
    merged = {**spec, **overrides}
    if "env" in overrides and isinstance(spec.get("env"), dict):
        merged["env"] = {**spec["env"], **overrides["env"]}
    return merged


def cmd_enqueue(args) -> int:
    import gc

    from queuectl.models import check_unique_ids, parse_job_spec

    # An `enqueue --file` of 100,000 jobs makes hundreds of thousands of dicts and objects that
    # all live until this short process ends: the cyclic collector would walk them again and
    # again (a seventh of the whole call), and there is no cycle among them for it to find.
    gc.disable()
    specs = _read_jobs(args)
    overrides = _flag_fields(args)
    if overrides:
        specs = [_apply_flags(s, overrides) if isinstance(s, dict) else s for s in specs]
    # Validate everything before opening the database: bad input writes nothing.
    jobs = [parse_job_spec(spec, index if len(specs) > 1 else None)
            for index, spec in enumerate(specs)]
    check_unique_ids(jobs)
    progress = None
    if len(specs) >= BIG_BATCH:  # a handful of jobs is instant: no progress line for them
        from queuectl.progress import Progress

        progress = Progress("enqueued", total=len(specs))
    with open_queue(args, create=True) as queue:
        results = queue.enqueue_jobs(jobs, progress=progress and progress.update)
    if progress is not None:
        progress.close()
    for spec, result in zip(specs, results, strict=True):
        if result.duplicate:
            sys.stderr.write(f"queuectl: duplicate: job {result.id} holds unique_key "
                             f"{spec.get('unique_key')!r} and is not finished; not added again\n")
    if args.json:
        from queuectl.output import print_json

        print_json([{"id": r.id, "duplicate": r.duplicate} for r in results])
    else:
        sys.stdout.write("".join(f"{r.id}\n" for r in results))
    return EXIT_OK


def cmd_worker_start(args) -> int:
    from queuectl.store import is_postgres, open_store, resolve_target
    from queuectl.supervisor import Supervisor

    queues = None
    if args.queue is not None:
        from queuectl.models import parse_job_spec

        queues = [q.strip() for q in args.queue.split(",") if q.strip()]
        if not queues:
            raise InputError("--queue needs at least one queue name")
        for name in queues:
            parse_job_spec({"command": "true", "queue": name})  # same rule as for jobs
    target = resolve_target(getattr(args, "db", None))
    from queuectl.trust import check_worker_database, drop_private_env

    check_worker_database(target, allow=args.allow_shared_db)  # before the file is touched
    if not is_postgres(target):
        from queuectl.mounts import shared_filesystem

        fstype = shared_filesystem(target)
        if fstype is not None:
            sys.stderr.write(
                f"queuectl: warning: {target} is on a network filesystem ({fstype}): SQLite "
                "needs every worker and CLI call that uses it on this one machine; to share a "
                "queue between machines use PostgreSQL (--db postgresql://...)\n")
    drop_private_env()
    open_store(target, durable=False).close()  # fail here, once, before forking
    return Supervisor(target, args.count, burst=args.burst, queues=queues,
                      verbose=not args.quiet).run()


def cmd_worker_stop(args) -> int:
    import time

    from queuectl.output import message

    with open_queue(args) as queue:
        lease = queue.store.settings()["lease-seconds"]
        # Counted by the request itself: an idle worker hears it at once and may be gone
        # before a count that followed it, which then said there had been none.
        asked = queue.store.request_stop(time.time() - lease)
        if asked == 0:
            message("no running workers on this database")
            return EXIT_OK
        message(f"asked {asked} worker(s) to stop after their current job")
        deadline = time.monotonic() + args.timeout
        while True:
            alive = len(queue.workers())
            if alive == 0:
                message("all workers stopped")
                return EXIT_OK
            if time.monotonic() >= deadline:
                message(f"{alive} worker(s) still finishing their jobs after {args.timeout:g}s; "
                        "they will stop when done")
                return EXIT_FAILURE
            time.sleep(0.1)


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
    with open_queue(args) as queue:
        jobs = queue.list(args.state, args.limit, args.queue)
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
    from queuectl.timeutil import iso_ms

    with open_queue(args) as queue:
        job = queue.get(args.job_id)
        attempts = queue.attempts(args.job_id)
    history = [
        {"run": a["run"], "outcome": a["outcome"], "exit_code": a["exit_code"],
         "started_at": iso_ms(a["started_at"]), "finished_at": iso_ms(a["finished_at"]),
         "seconds": round(a["finished_at"] - a["started_at"], 3), "worker": a["worker_id"],
         "error": a["error"]}
        for a in attempts
    ]
    if args.json:
        print_json({**job.to_dict(), "history": history})
        return EXIT_OK
    for key, value in job.to_dict().items():
        if value not in (None, {}, "", False):
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

    with open_queue(args) as queue:
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
    held: list[str] = []
    with open_queue(args) as queue:
        if args.all:
            count = queue.dlq_retry_all()
            ids = None
            held = queue.dlq_held()
        else:
            ids = queue.dlq_retry(*args.job_ids)
            count = len(ids)
    if args.json:
        print_json({"retried": count, "ids": ids} | ({"held": held} if args.all else {}))
    else:
        message(f"{count} job(s) moved from the DLQ back to pending")
        if held:
            shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10
                                             else "")
            message(f"{len(held)} job(s) stay dead because a live job holds their unique_key: "
                    f"{shown}; retry them once it has finished, or cancel it")
    return EXIT_OK


def cmd_dlq_purge(args) -> int:
    from queuectl.output import message, print_json

    with open_queue(args) as queue:
        count = queue.dlq_purge()
    if args.json:
        print_json({"purged": count})
    else:
        message(f"deleted {count} dead job(s)")
    return EXIT_OK


def cmd_config_list(args) -> int:
    from queuectl.config import KEYS
    from queuectl.output import print_json, table

    with open_queue(args) as queue:
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
    with open_queue(args) as queue:
        value = queue.config()[args.key]
    print(json.dumps(value) if args.json else (f"{value:g}" if isinstance(value, float)
                                                else value))
    return EXIT_OK


def cmd_config_set(args) -> int:
    from queuectl.config import Settings, parse_value
    from queuectl.store import queue_exists, resolve_target

    words = [args.key, args.value, *args.more]
    if len(words) % 2:
        raise InputError(f"config set takes KEY VALUE pairs; {words[-1]!r} has no value")
    pairs = dict(zip(words[::2], words[1::2], strict=True))
    values = {key: parse_value(key, text) for key, text in pairs.items()}  # before opening
    if not queue_exists(resolve_target(getattr(args, "db", None))):
        # A new queue would hold the defaults: check against them before creating it.
        Settings({key: str(value) for key, value in values.items()}).check_timing()
    with open_queue(args, create=True) as queue:
        values = queue.config_set_many(pairs)
    if args.json:
        print(json.dumps(values))
    else:
        for key, value in values.items():
            print(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}")
    return EXIT_OK


def cmd_config_unset(args) -> int:
    from queuectl.config import get_key

    get_key(args.key)
    with open_queue(args) as queue:
        queue.config_unset(args.key)
    return EXIT_OK


def cmd_migrate(args) -> int:
    from queuectl.output import message, print_json
    from queuectl.progress import Progress
    from queuectl.transfer import transfer

    progress = Progress("copied rows")  # jobs + history + output chunks; draws on a TTY only
    try:
        copied = transfer(args.source, args.target, progress=progress.update)
    finally:
        progress.close()
    if args.json:
        print_json(copied.as_dict())
        return EXIT_OK
    message(f"copied {copied.jobs} job(s), {copied.attempts} attempt(s) and {copied.config} "
            "config value(s)")
    if copied.running:
        message(f"{copied.running} job(s) were running on the source; the target's workers "
                "will recover them when their leases expire")
    return EXIT_OK


def cmd_smoke_test(args) -> int:
    from queuectl.smoke import run_smoke_test

    return run_smoke_test()


class _Args:
    """What argparse would have returned for a plain enqueue."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


# The options of `enqueue` that take a value, as argparse names them in the namespace.
_ENQUEUE_OPTIONS = {"--db": "db", "--file": "file", "-f": "file", "--max-retries": "max_retries",
                    "--priority": "priority", "--queue": "queue", "--delay": "delay",
                    "--run-at": "run_at", "--timeout": "timeout", "--cwd": "cwd",
                    "--env": "env", "--unique-key": "unique_key"}


def _plain_enqueue(argv: list[str]) -> _Args | None:
    """The arguments of an `enqueue` call written the plain way (whole option names, each
    value as the next word, at most one JSON), read without argparse: building argparse's
    parser costs more than the rest of the call. None for anything else (help, a typo, an
    abbreviation, --opt=value, a bad number...), which argparse then reads, or refuses with
    its own message."""
    fields: dict[str, Any] = {
        "command": "enqueue", "func": cmd_enqueue, "job": None, "json": False, "env": [],
        "file": None, "max_retries": None, "priority": None, "queue": None, "delay": None,
        "run_at": None, "timeout": None, "cwd": None, "unique_key": None,
    }
    seen_command = False
    words = iter(argv)
    for word in words:
        name = _ENQUEUE_OPTIONS.get(word)
        if name is not None and (seen_command or name == "db"):
            value = next(words, None)
            if value is None or value.startswith("-"):
                return None
            if name in ("max_retries", "priority"):
                try:
                    fields[name] = int(value)
                except ValueError:
                    return None
            elif name == "env":
                fields["env"].append(value)
            else:
                fields[name] = value
        elif word == "--json" and seen_command:
            fields["json"] = True
        elif word == "enqueue" and not seen_command:
            seen_command = True
        elif seen_command and fields["job"] is None and (word == "-" or word[:1] != "-"):
            fields["job"] = word
        else:
            return None
    return _Args(**fields) if seen_command else None


def run() -> None:
    """The `queuectl` command: main(), then out without tearing the interpreter down. By then
    main's `with` blocks have closed every store, file and connection, and nothing of ours
    waits for exit handlers; what a normal exit adds is freeing each module and object in
    turn, and the C libraries' exit handlers: 5 ms of a 31 ms `enqueue` on SQLite, 22 ms of
    164 on PostgreSQL (DECISIONS.md §39). Only what is still buffered must go out first.
    Tests call main() in-process, so only the command exits this way."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (BrokenPipeError, ValueError):  # the reader left; or the stream was closed
            pass
    os._exit(code or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args: Any = _plain_enqueue(argv)  # an _Args, or argparse's Namespace
    if args is None:
        args = build_parser(_command_word(argv)).parse_args(argv)
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
