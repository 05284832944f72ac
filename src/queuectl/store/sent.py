"""A statement's outcome that arrives later (Connector.queue). A module of its own, with no
imports: connector.py imports typing, which costs a CLI call about 3 ms."""

from __future__ import annotations


class Sent:
    """A statement handed to Connector.queue: its row count, known once it was sent (with the
    next statement of its transaction, or the COMMIT). Not a truth value: reading it too early
    would be a bug, so bool() refuses."""

    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int = -1):
        self.rowcount = rowcount

    def __bool__(self) -> bool:
        raise TypeError("a queued statement's outcome is known only after its transaction")
