#!/usr/bin/env bash
# Set up this checkout (virtualenv, package, ffmpeg) and run every check: ruff, mypy, then the
# unit, integration and end-to-end tests. Extra arguments go to pytest.
#
#   bash scripts/test.sh [PYTEST ARGS ...]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh" ffmpeg:ffmpeg ffprobe:ffmpeg
cd "$repo"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collects no test: that fails this script, as it should.
exec .venv/bin/python -m pytest "$@"
