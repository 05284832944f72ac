#!/usr/bin/env bash
# The test command: every tier, both backends. Expects the venv from .ci/run (or your own).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" -m pytest -q tests "$@"
