"""What each dashboard page shows, as plain JSON-ready dicts: the same data renders the page
and answers its 2-second refresh, so the two can never disagree."""

from __future__ import annotations

from queuectl import stats
from queuectl.api import Queue
from queuectl.errors import InputError, QueueError
from queuectl.models import STATES, validate_state
from queuectl.overview import status_data
from queuectl.store.jobstore import WORKER_PAUSED, WORKER_STOPPING
from queuectl.timeutil import iso, iso_ms, now

PAGE = 50
CHART_MINUTES = 30
OUTPUT_LIMIT = 64 * 1024  # of the latest run's output, shown on the job page

__all__ = ["STATES", "open_queue"]


def open_queue(db: str | None) -> Queue:
    return Queue(db, create=False)


def overview(queue: Queue) -> dict:
    current = now()
    data = status_data(queue, current)
    data.pop("_raw_workers")
    data["queue_rows"] = [{"queue": name, **counts} for name, counts in data["queues"].items()]
    data["series"] = stats.series(
        queue.store.finished_by_minute(stats.chart_start(current, CHART_MINUTES)), current,
        CHART_MINUTES)
    data["now"] = iso(current)
    return data


def job_filters(params) -> dict:
    state = params.get("state") or None
    if state is not None:
        validate_state(state)
    before = params.get("before") or None
    if before is not None:
        try:
            before = int(before)
        except ValueError:
            raise InputError("before must be a whole number") from None
    return {"state": state, "queue": params.get("queue") or None,
            "q": params.get("q") or None, "before": before}


def _job_row(job) -> dict:
    return {"id": job.id, "state": job.state, "queue": job.queue, "command": job.command,
            "attempts": f"{job.attempts}/{job.max_retries + 1}", "updated": iso(job.updated_at),
            "error": job.last_error or ""}


def jobs(queue: Queue, filters: dict) -> dict:
    found, after = queue.store.page(filters["state"], filters["queue"], filters["q"],
                                    filters["before"], PAGE)
    return {"rows": [_job_row(j) for j in found], "next": after}


def job(queue: Queue, job_id: str) -> dict:
    found = queue.get(job_id)
    attempts = [
        {"run": a["run"], "outcome": a["outcome"], "exit_code": a["exit_code"],
         "started_at": iso_ms(a["started_at"]), "finished_at": iso_ms(a["finished_at"]),
         "seconds": round(a["finished_at"] - a["started_at"], 3), "worker": a["worker_id"],
         "error": a["error"] or ""}
        for a in queue.attempts(job_id)
    ]
    output = None
    if found.runs:
        try:
            _, data = queue.output(job_id)
        except QueueError:
            data = b""
        output = data[-OUTPUT_LIMIT:].decode("utf-8", "replace")
    fields = {k: v for k, v in found.to_dict().items() if v not in (None, {}, "")}
    return {"job": fields, "attempts": attempts, "output": output}


def dlq(queue: Queue) -> dict:
    return {"rows": [
        {"id": d["id"], "queue": d["queue"], "command": d["command"],
         "attempts": d["attempts"], "died_at": iso(d["died_at"]), "error": d["last_error"] or ""}
        for d in queue.dlq_list(PAGE * 4)
    ]}


def workers(queue: Queue) -> dict:
    current = now()
    return {"rows": [
        {"id": w["id"], "host": w["host"], "pid": w["pid"], "job": w["current_job"] or "",
         "running_for": "" if w["job_started_at"] is None
         else f"{current - w['job_started_at']:.0f}s",
         "heartbeat": f"{current - w['heartbeat_at']:.0f}s ago",
         "stopping": {WORKER_STOPPING: "stopping", WORKER_PAUSED: "paused"}.get(
             w["stop_requested"], "")}
        for w in queue.workers()
    ]}


def dlq_retry(queue: Queue, body: dict) -> dict:
    if body.get("all") is True:
        return {"retried": queue.dlq_retry_all(), "held": queue.dlq_held()}
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InputError('give {"ids": ["job1", ...]} or {"all": true}')
    return {"retried": len(queue.dlq_retry(*ids))}


def dlq_purge(queue: Queue) -> dict:
    return {"purged": queue.dlq_purge()}
