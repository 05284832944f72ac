#!/usr/bin/env python3
"""Seed-compatible entry point: `python queuectl.py ...` from a bare checkout, no install needed."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from queuectl.cli import run  # noqa: E402

if __name__ == "__main__":
    run()
