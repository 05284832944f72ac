"""Take docs/dashboard.png: a demo queue with half an hour of history, the real dashboard,
Debian's headless chromium through Playwright (the same setup as tests/browser).

    .venv/bin/python scripts/dashboard_screenshot.py [docs/dashboard.png]
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from queuectl.models import NewJob  # noqa: E402
from queuectl.store import WorkerIdentity, open_store  # noqa: E402

TOKEN = "screenshot-token"


def demo_queue(path: str) -> None:
    """30 minutes of runs in three queues, some failures, a few jobs still waiting."""
    rng = random.Random(7)
    store = open_store(path)
    worker = WorkerIdentity(id="build-1:4242:demo", host="build-1", pid=4242)
    now = time.time()
    commands = {"builds": ["make -j8 all", "make test"], "reports": ["./report.sh daily"],
                "mail": ["send-digest --batch 500"]}
    n = 0
    for minute in range(30, 0, -1):
        for _ in range(rng.randint(2, 9)):
            n += 1
            queue = rng.choice(list(commands))
            start = now - minute * 60 + rng.uniform(0, 50)
            store.enqueue([NewJob(id=f"job-{n:04d}", command=rng.choice(commands[queue]),
                                  queue=queue, max_retries=0)], start - rng.uniform(0, 4))
            job = store.claim(worker, start, 15.0)
            if rng.random() < 0.08:
                store.fail(job, start + rng.uniform(1, 8), store.settings(), 2, "exit code 2")
            else:
                store.complete(job, start + rng.uniform(0.5, 9))
    store.enqueue([NewJob(id=f"wait-{i}", command="make test", queue="builds")
                   for i in range(6)], now - 20)
    store.register_worker(worker, now)
    store.close()


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "dashboard.png")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "demo.db")
        demo_queue(db)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
        server = subprocess.Popen([sys.executable, "-m", "queuectl", "--db", db, "dashboard",
                                   "--port", str(port), "--token", TOKEN], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url + "/login", timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"{url}/?token={TOKEN}")
                page.wait_for_selector("#chart rect")
                page.wait_for_selector("#refreshed:has-text('updated')")
                page.screenshot(path=out, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
