"""Run the benchmark suite and print a markdown table; also write it to bench/results/.

    python bench/run.py            # the full suite (about 15 minutes on 2 cores)
    python bench/run.py --quick    # smaller sizes, under two minutes
    python bench/run.py --only 1,5 # some figures

Every figure is measured next to its baseline in the same run: medians of interleaved rounds.
These are figures, not tests: nothing fails when a target is missed, and CI does not run them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bulk  # noqa: E402
import cli_latency  # noqa: E402
import memory  # noqa: E402
import overhead  # noqa: E402
import pickup  # noqa: E402
import scale  # noqa: E402
import throughput  # noqa: E402
from common import BENCH_DIR, FULL, PG_ADMIN_URL, QUICK, ROOT, Bench, Row  # noqa: E402

FIGURES = {
    "1": ("throughput", throughput.run),
    "2": ("queue overhead", overhead.run),
    "3": ("CLI call latency", cli_latency.run),
    "4": ("bulk enqueue", bulk.run),
    "5": ("idle pickup latency and idle CPU", pickup.run),
    "6": ("scale", scale.run),
    "7": ("memory", memory.run),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument("--only", metavar="N,N", help="only these figures (1-7)")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--src", default=os.path.join(ROOT, "src"),
                        help="the queuectl source tree to measure (default: this checkout)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the timed processes (default: this one)")
    parser.add_argument("--pg", default=PG_ADMIN_URL,
        help="PostgreSQL server URL; scratch databases are created and dropped there")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes.rounds = sizes.bulk_rounds = sizes.scale_rounds = args.rounds
    wanted = args.only.split(",") if args.only else list(FIGURES)
    tmp = tempfile.mkdtemp(prefix="queuectl-bench-", dir=os.environ.get("BENCH_TMP"))
    bench = Bench(src=os.path.abspath(args.src), python=args.python, tmp=tmp, sizes=sizes,
                  pg_admin_url=args.pg)
    # A TERM (a timeout, a kill) unwinds like Ctrl-C, so the scratch folder and the peers'
    # servers are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    started = time.time()
    rows: list[Row] = []
    loads: list[str] = []
    # `python -c` puts the current directory first on sys.path, and the checkout's root holds
    # queuectl.py, which would shadow the package: every process runs from the scratch folder.
    os.chdir(tmp)
    try:
        bench.warm()
        for key in wanted:
            name, run = FIGURES[key]
            t0, load_before = time.monotonic(), os.getloadavg()[0]
            bench.log(f"--- figure {key}: {name}")
            try:
                rows += run(bench)
            except Exception as exc:  # one broken figure must not lose the others
                traceback.print_exc()
                rows.append(Row(f"{key} {name}", "error", f"could not measure: {exc!r}"[:300]))
            took = time.monotonic() - t0
            loads.append(f"{key}: {load_before:.1f} → {os.getloadavg()[0]:.1f} ({took:.0f} s)")
            bench.log(f"--- figure {key} took {took:.0f} s")
    finally:
        os.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    bench.notes.append("1-minute load average before → after each figure (anything above "
                       "the figure's own processes is other work sharing the machine): "
                       + "; ".join(loads))
    report = render(rows, bench, args, time.time() - started)
    print(report)
    if not args.no_save:
        save(report, started)
    return 0


def _run(argv: list[str], cwd: str | None = None) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd).stdout.strip()
    except OSError:
        return ""


def header(bench: Bench, args, seconds: float) -> list[str]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    python = _run([bench.python, "-c", "import sys, sqlite3; print(sys.version.split()[0], "
                   "sqlite3.sqlite_version)"]).split()
    huey = _run([bench.python, "-c", "import huey; print(huey.__version__)"]) or "absent"
    rq = _run([bench.python, "-c", "import rq; print(rq.__version__)"]) or "absent"
    commit = _run(["git", "log", "-1", "--format=%h %s"], cwd=bench.src)
    mode = "quick" if args.quick else "full"
    return [
        f"# queuectl benchmarks ({mode})",
        "",
        f"- started: {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(time.time() - seconds))}"
        f", took {seconds / 60:.1f} min",
        f"- code: `{commit}` ({bench.src})",
        f"- machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}",
        f"- Python {python[0] if python else '?'}, SQLite {python[1] if len(python) > 1 else '?'}"
        f" (library linked by that Python), Huey {huey}, RQ {rq}, "
        f"task-spooler {'present' if shutil.which('tsp') else 'absent'}",
        f"- rounds: {bench.sizes.rounds} (figures 1-2), {bench.sizes.bulk_rounds} (4), "
        f"{bench.sizes.scale_rounds} (6); values are medians over rounds; each figure "
        "runs back to back with its baseline in every round, and ratios are medians of the "
        "per-round ratios",
        *([f"- quick sizes: {bench.sizes.throughput_jobs} jobs where the targets are set for "
           f"{FULL.throughput_jobs:,} (figures 1 and 6), fewer rounds and samples: `worker "
           "start`'s own start-up weighs more in a short drain, so `met` here is indicative; "
           "the full run decides"] if args.quick else []),
        "",
    ]


def render(rows: list[Row], bench: Bench, args, seconds: float) -> str:
    lines = header(bench, args, seconds)
    lines += [
        "| figure | what | value | baseline, same run | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "**no**", None: "—"}[row.met]
        if args.quick and row.met is not None:
            met += " (quick sizes)"
        cells = [row.figure, row.metric, row.value + (f" ({row.note})" if row.note else ""),
                 row.baseline or "—", row.target or "—", met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if bench.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in bench.notes]
    return "\n".join(lines) + "\n"


def save(report: str, started: float) -> None:
    folder = os.path.join(BENCH_DIR, "results")
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    for name in (f"{stamp}.md", "latest.md"):
        path = os.path.join(folder, name)
        with open(path + ".tmp", "w") as f:
            f.write(report)
        os.replace(path + ".tmp", path)
    sys.stderr.write(f"bench: wrote bench/results/{stamp}.md and bench/results/latest.md\n")


if __name__ == "__main__":
    sys.exit(main())
