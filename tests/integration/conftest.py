"""Fixtures for the integration tier: an open JobStore on each backend."""

from __future__ import annotations

import pytest

from queuectl.store import JobStore, open_store


@pytest.fixture
def store(db) -> JobStore:
    s = open_store(db)
    yield s
    s.close()
