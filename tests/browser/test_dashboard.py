"""The dashboard in a real browser: live numbers, a DLQ retry by click, escaping, and the
refusal of a POST that carries no token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

WAIT_MS = 15_000  # the page refreshes every 2 s: several refreshes fit in this


def _enqueue(dashboard, *specs):
    done = dashboard.cli("enqueue", json.dumps(list(specs)))
    assert done.returncode == 0, done.stderr


def _state(dashboard, job_id) -> str:
    return json.loads(dashboard.cli("show", job_id, "--json").stdout)["state"]


def test_overview_shows_live_numbers(dashboard, page):
    from playwright.sync_api import expect

    _enqueue(dashboard, {"id": "a", "command": "true", "queue": "builds"},
             {"id": "b", "command": "true", "queue": "builds"})
    page.goto(dashboard.login_url("/"))
    assert page.url == dashboard.url + "/"  # logged in, token gone from the address bar
    pending = page.locator('[data-field="counts.pending"]')
    expect(pending).to_have_text("2")
    expect(page.locator("#queues tbody")).to_contain_text("builds")
    # A job enqueued now appears without a reload: the page polls its JSON.
    _enqueue(dashboard, {"id": "c", "command": "true", "queue": "reports"})
    expect(pending).to_have_text("3", timeout=WAIT_MS)
    expect(page.locator("#queues tbody")).to_contain_text("reports", timeout=WAIT_MS)
    assert page.locator("#chart rect").count() == 0  # nothing has run yet
    expect(page.locator("#refreshed")).to_contain_text("updated")


def test_a_dead_job_is_retried_from_the_dlq_page(dashboard, page):
    from playwright.sync_api import expect

    _enqueue(dashboard, {"id": "doomed", "command": "exit 3", "max_retries": 0})
    done = dashboard.cli("worker", "start", "--burst", "--quiet", timeout=60)
    assert done.returncode == 0, done.stderr
    assert _state(dashboard, "doomed") == "dead"
    page.goto(dashboard.login_url("/dlq"))
    row = page.locator("#rows tbody tr", has_text="doomed")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#notice")).to_have_text("1 job(s) retried", timeout=WAIT_MS)
    expect(page.locator("#rows tbody")).not_to_contain_text("doomed", timeout=WAIT_MS)
    assert _state(dashboard, "doomed") == "pending"
    page.goto(dashboard.url + "/jobs/doomed")
    expect(page.locator('[data-field="job.state"]')).to_have_text("pending")


@pytest.mark.parametrize("path", ["/jobs", "/jobs/xss", "/dlq", "/"])
def test_a_script_in_a_command_is_shown_as_text(dashboard, browser, path):
    from playwright.sync_api import expect

    # Without the Content-Security-Policy, which would block the script anyway: this test is
    # about the escaping, and must fail if the escaping does.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()

    command = ("echo '<script>window.__owned = 1</script><img src=x onerror=window.__owned=2>';"
               " exit 1")
    _enqueue(dashboard, {"id": "xss", "command": command, "max_retries": 0})
    dashboard.cli("worker", "start", "--burst", "--quiet", timeout=60)  # dead: also in the DLQ
    page.goto(dashboard.login_url(path))
    # at least one JSON refresh has redrawn the page by now
    expect(page.locator("#refreshed")).to_contain_text("updated", timeout=WAIT_MS)
    if path != "/":
        expect(page.locator("main")).to_contain_text("<script>window.__owned = 1</script>")
    assert page.evaluate("window.__owned") is None
    assert page.locator("main script, main img").count() == 0
    context.close()


def test_a_post_without_the_token_is_refused(dashboard):
    _enqueue(dashboard, {"id": "d", "command": "exit 1", "max_retries": 0})
    dashboard.cli("worker", "start", "--burst", "--quiet", timeout=60)
    for headers in ({}, {"Authorization": "Bearer wrong-token-xyz"},
                    {"Cookie": "queuectl_session=forged", "Origin": dashboard.url}):
        request = urllib.request.Request(
            dashboard.url + "/api/dlq/retry", data=b'{"all": true}', method="POST",
            headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    assert _state(dashboard, "d") == "dead"
