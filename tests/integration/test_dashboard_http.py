"""The dashboard's HTTP surface on each backend, through Starlette's test client: pages,
JSON, escaping, and the security rules (token, cookie, CSRF, Origin)."""

from __future__ import annotations

import os
import re
import warnings

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from queuectl.api import Queue  # noqa: E402
from queuectl.web.app import create_app  # noqa: E402

TOKEN = "test-token-123"
XSS = "echo '<script>alert(1)</script>'"


def _client(db) -> TestClient:
    return TestClient(create_app(db, TOKEN), follow_redirects=False)


def _logged_in(db) -> tuple[TestClient, str]:
    client = _client(db)
    assert client.get(f"/?token={TOKEN}").status_code == 303
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/").text).group(1)
    return client, csrf


def _dead_job(db, job_id="d1", command="false"):
    """A job that failed its only run, through the real store verbs."""
    from queuectl.store import WorkerIdentity

    with Queue(db) as queue:
        queue.enqueue(command=command, id=job_id, max_retries=0)
        job = queue.store.claim(WorkerIdentity(id="w", host="h", pid=1), 1e9 * 3, 15.0)
        assert queue.store.fail(job, 1e9 * 3 + 1, queue.store.settings(), 1, "no") == "dead"


def test_everything_needs_the_token(db):
    client = _client(db)
    assert client.get("/").headers["location"] == "/login"
    assert client.get("/api/overview").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/?token=wrong").status_code == 303  # to the login page, not in
    assert client.get("/api/overview").status_code == 401
    assert client.get("/login").status_code == 200
    assert client.get("/api/overview",
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_token_url_sets_a_strict_httponly_cookie_and_drops_the_token(db):
    response = _client(db).get(f"/jobs?state=dead&token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?state=dead"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie


def test_login_form(db):
    client = _client(db)
    assert client.post("/login", content=b"token=nope",
                       headers={"content-type": "application/x-www-form-urlencoded"}
                       ).status_code == 403
    done = client.post("/login", content=f"token={TOKEN}".encode(),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert done.status_code == 303
    assert client.get("/").status_code == 200


def test_pages_render_and_commands_are_escaped(db):
    with Queue(db) as queue:
        queue.enqueue(command=XSS, id="xss", queue="web")
    client, _ = _logged_in(db)
    for path in ["/", "/jobs", "/jobs?state=pending&queue=web&q=script", "/jobs/xss", "/dlq",
                 "/workers"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/jobs/xss").text
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/jobs?state=bogus").status_code == 400


def test_job_list_filters_and_pages(db):
    with Queue(db) as queue:
        queue.enqueue_specs([{"id": f"j{i:03d}", "command": f"echo {i}",
                              "queue": "even" if i % 2 == 0 else "odd"} for i in range(120)])
    client, _ = _logged_in(db)
    first = client.get("/api/jobs").json()
    assert [r["id"] for r in first["rows"]][:2] == ["j119", "j118"]
    assert len(first["rows"]) == 50
    second = client.get(f"/api/jobs?before={first['next']}").json()
    assert second["rows"][0]["id"] == "j069"
    third = client.get(f"/api/jobs?before={second['next']}").json()
    assert [r["id"] for r in third["rows"]][-1] == "j000" and third["next"] is None
    odd = client.get("/api/jobs?queue=odd&state=pending").json()["rows"]
    assert {r["queue"] for r in odd} == {"odd"} and len(odd) == 50
    assert [r["id"] for r in client.get("/api/jobs?q=echo 7").json()["rows"]] == [
        "j079", "j078", "j077", "j076", "j075", "j074", "j073", "j072", "j071", "j070", "j007"]
    assert client.get("/api/jobs?state=dead").json() == {"rows": [], "next": None}


def test_overview_json_has_live_numbers(db):
    with Queue(db) as queue:
        queue.enqueue(command="true", id="p1", queue="q1")
    client, _ = _logged_in(db)
    data = client.get("/api/overview").json()
    assert data["counts"]["pending"] == 1
    assert data["queue_rows"] == [{"queue": "q1", "pending": 1, "processing": 0,
                                   "completed": 0, "failed": 0, "dead": 0, "cancelled": 0}]
    assert len(data["series"]) == 30
    with Queue(db) as queue:
        queue.enqueue(command="true", id="p2", queue="q1")
    assert client.get("/api/overview").json()["counts"]["pending"] == 2


def test_dlq_retry_with_cookie_needs_csrf_and_same_origin(db):
    _dead_job(db)
    client, csrf = _logged_in(db)
    assert client.post("/api/dlq/retry", json={"ids": ["d1"]}).status_code == 403
    assert client.post("/api/dlq/retry", json={"ids": ["d1"]},
                       headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    refused = client.post("/api/dlq/retry", json={"ids": ["d1"]},
                          headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
    with Queue(db) as queue:
        assert queue.get("d1").state == "dead"  # nothing above changed anything
    done = client.post("/api/dlq/retry", json={"ids": ["d1"]},
                       headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert done.json() == {"retried": 1}
    with Queue(db) as queue:
        assert queue.get("d1").state == "pending"
    again = client.post("/api/dlq/retry", json={"ids": ["d1"]}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 400 and "not dead" in again.json()["error"]


def test_actions_are_post_only_and_bearer_works_for_scripts(db):
    _dead_job(db)
    client = _client(db)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/dlq/purge", headers=auth).status_code == 405
    assert client.post("/api/dlq/purge").status_code == 401
    assert client.post("/api/dlq/purge", headers={"Authorization": "Bearer nope"}
                       ).status_code == 401
    assert client.post("/api/dlq/purge", headers=auth).json() == {"purged": 1}
    assert client.post("/api/dlq/retry", headers=auth, json={"ids": "d1"}).status_code == 400
    _dead_job(db, "d2")
    assert client.post("/api/dlq/retry", headers=auth, json={"all": True}).json() == {
        "retried": 1, "held": []}


def test_the_workers_page_says_which_worker_is_stopping_and_which_is_paused(db):
    import time

    from queuectl.store import WorkerIdentity

    with Queue(db) as queue:
        for name in ("w-working", "w-stopping", "w-paused"):
            queue.store.register_worker(WorkerIdentity(id=name, host="h", pid=1), time.time())
        queue.store.mark_stopping("w-stopping")
        queue.store.mark_paused("w-paused", True)
    client, _ = _logged_in(db)
    rows = {re.search(r"w-\w+", row).group(0): row
            for row in client.get("/workers").text.split("<tr")[1:] if "w-" in row}
    assert ["stopping" in rows[n] for n in ("w-working", "w-stopping", "w-paused")] == [
        False, True, False]
    assert ["paused" in rows[n] for n in ("w-working", "w-stopping", "w-paused")] == [
        False, False, True]
