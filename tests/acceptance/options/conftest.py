"""Fixtures for the job-options acceptance tests: `q`, the real CLI on a fresh database (each
backend in turn) with fast timings, and a teardown that kills every process the test started,
jobs included, found by a per-test tag in their environment."""

from __future__ import annotations

import uuid

import pytest

from .helpers import FAST_CONFIG, TAG_VAR, Queue, kill_all, processes_tagged


@pytest.fixture(autouse=True)
def _reap_tagged_processes(monkeypatch):
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VAR, tag)
    yield
    kill_all(processes_tagged(tag))


@pytest.fixture
def q(cli, tmp_path):
    queue = Queue(cli, tmp_path)
    queue.configure(*FAST_CONFIG)
    yield queue
    queue.cleanup()
