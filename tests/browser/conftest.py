"""Browser tests: the real `queuectl dashboard` in a subprocess, driven by Playwright in
Debian's headless Chromium (never a downloaded browser). Without chromium or Playwright they
skip on a developer machine; under CI=true they fail instead, like the PostgreSQL tests."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = os.environ.get("QUEUECTL_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "browser-test-token"
IN_CI = os.environ.get("CI") == "true"


def _missing(why: str):
    if IN_CI:
        pytest.fail(f"{why}, but CI must run the browser tests")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                              headless=True)
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dashboard:
    def __init__(self, cli, popen, port: int):
        self.cli = cli
        self.popen = popen
        self.url = f"http://127.0.0.1:{port}"

    def login_url(self, path: str = "/") -> str:
        return f"{self.url}{path}{'&' if '?' in path else '?'}token={TOKEN}"


@pytest.fixture
def dashboard(cli):
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        _missing("the web extra is not installed (pip install -e '.[web]')")
    assert cli("status").returncode == 0
    cli("config", "set", "max-retries", "0")  # also creates the queue before the server reads
    port = _free_port()
    popen = cli.popen("dashboard", "--port", str(port), "--token", TOKEN)
    board = Dashboard(cli, popen, port)
    deadline = time.monotonic() + 30
    while True:
        assert popen.poll() is None, popen.communicate()[1]
        try:
            urllib.request.urlopen(board.url + "/login", timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the dashboard did not answer within 30 s"
            time.sleep(0.1)
    yield board
    popen.terminate()
    try:
        popen.communicate(timeout=15)
    except Exception:
        popen.kill()
        popen.communicate()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
