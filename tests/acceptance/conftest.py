"""Acceptance fixtures: `qc`, the real CLI on a fresh database (each backend in turn), which
kills at teardown any worker process or job process the test left behind."""

from __future__ import annotations

import pytest

from .helpers import QueueCLI


@pytest.fixture
def qc(cli, tmp_path):
    queue = QueueCLI(cli, tmp_path)
    yield queue
    queue.cleanup()
