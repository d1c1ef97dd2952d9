#!/usr/bin/env bash
# Set up this checkout (virtualenv, package, ffmpeg, Chromium and the browser players) and run
# every check: ruff, mypy, then the unit, integration and end-to-end tests. Extra arguments go to
# pytest.
#
#   bash scripts/test.sh [PYTEST ARGS ...]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Chromium (and Node.js with npm where missing) for the browser players of tests/e2e/players;
# GStreamer's RTMP publishers (rtmpsink = librtmp, rtmp2sink) and openssl for the RTMPS test.
bash "$repo/scripts/setup.sh" ffmpeg:ffmpeg ffprobe:ffmpeg chromium:chromium node:nodejs npm:npm \
    openssl:openssl gst-launch-1.0:gstreamer1.0-tools gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
cd "$repo"

# The players' npm packages (playwright-core without a browser download, hls.js, dashjs,
# shaka-player), installed again whenever package.json or package-lock.json changes.
players="$repo/tests/e2e/players"
(
    cd "$players"
    if command -v flock >/dev/null 2>&1; then
        exec 8<package.json
        flock 8
    fi
    stamp=node_modules/.headwater-install.sha256
    wanted() {
        if [ -f package-lock.json ]; then
            cat package.json package-lock.json | sha256sum | cut -d' ' -f1
        else
            sha256sum package.json | cut -d' ' -f1
        fi
    }
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(wanted)" ]; then
        printf 'test: installing the browser players (npm) into %s\n' "$players/node_modules" >&2
        if [ -f package-lock.json ]; then
            npm_cmd=ci
        else
            npm_cmd=install
        fi
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm "$npm_cmd" --no-audit --no-fund --loglevel=error >&2
        wanted >"$stamp"
    fi
)

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collects no test: that fails this script, as it should.
exec .venv/bin/python -m pytest "$@"
