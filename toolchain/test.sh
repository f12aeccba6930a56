#!/usr/bin/env bash
# The test command: set up (idempotent), then run the default test suite (not slow, not gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash toolchain/setup.sh
exec .venv/bin/python -m pytest -q "$@"
