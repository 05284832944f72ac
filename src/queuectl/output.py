"""Rendering for people (aligned tables that hide empty columns) and for scripts (--json).

Rule: with --json, stdout carries exactly one JSON document and nothing else; every message
for people goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def message(text: str) -> None:
    sys.stderr.write(text + "\n")


def shorten(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
          right: Sequence[str] = ()) -> str:
    """Columns are (key, HEADER). A column that is empty in every row is left out."""
    shown = [(k, h) for k, h in columns if any(r.get(k) not in (None, "") for r in rows)]
    if not shown:
        return ""
    cells = [[("" if r.get(k) is None else str(r.get(k))) for k, _ in shown] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(shown)]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, value in enumerate(values):
            key = shown[i][0]
            parts.append(value.rjust(widths[i]) if key in right else value.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return "\n".join([line([h for _, h in shown])] + [line(c) for c in cells])
