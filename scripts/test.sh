#!/usr/bin/env bash
# The test command: lint, then the whole test suite (real data from ../shared/data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
