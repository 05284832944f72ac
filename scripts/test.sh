#!/usr/bin/env bash
# The test command: every tier, both backends, then the quick fault-injection run (chaos/).
# Expects the venv from .ci/run (or your own). Both always run; either failing fails this.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
"$PY" -m pytest -q tests "$@" || status=1
"$PY" chaos/run.py --quick || status=1
exit $status
