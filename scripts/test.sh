#!/usr/bin/env bash
# Run the whole test suite. Creates .venv and installs the project on first use.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k ingest).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e . -r requirements-dev.txt
exec .venv/bin/pytest "$@"
