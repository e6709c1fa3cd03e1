#!/usr/bin/env bash
# The test command: creates/uses .venv, installs seqkit with its test extra, runs pytest.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ".[test]"
exec .venv/bin/python -m pytest "$@"
