#!/usr/bin/env bash
# Prepare this checkout to run Headwater: a virtualenv in .venv with the package installed in
# editable mode, plus its test tools. Safe to run again: it only does what is missing.
#
#   bash scripts/setup.sh [EXTRA ...]
#
# Each EXTRA is a Debian package to ensure is installed, written either as COMMAND:PACKAGE
# (installed when COMMAND is not on PATH, e.g. ffmpeg:ffmpeg) or as PACKAGE (installed when
# `dpkg -s PACKAGE` says it is not). Installing Debian packages needs root; Debian 12 expected.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv="$repo/.venv"
stamp="$venv/.headwater-pyproject.sha256"

log() { printf 'setup: %s\n' "$*" >&2; }

# Serialise concurrent runs (serve.sh and test.sh started together): lock pyproject.toml.
if command -v flock >/dev/null 2>&1; then
    exec 9<pyproject.toml
    flock 9
fi

apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to install Debian packages: $*"
        exit 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    log "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# 1. Python 3.11+ with venv support (Debian ships ensurepip separately, in python3-venv).
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "Python 3.11 or newer is required; python3 is $(python3 -V 2>&1)"
    exit 1
fi
if [ ! -x "$venv/bin/pip" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv
fi

# 2. The virtualenv (re-created when a previous attempt left it without pip).
if [ ! -x "$venv/bin/python" ] || [ ! -x "$venv/bin/pip" ]; then
    log "creating $venv"
    python3 -m venv --clear "$venv"
    rm -f "$stamp"
fi

# 3. The package and its test tools, whenever pyproject.toml changed since the last install.
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$venv/bin/headwater" ]; then
    log "installing headwater and its test dependencies into .venv"
    "$venv/bin/pip" install -q -e '.[test]'
    printf '%s\n' "$want" >"$stamp"
fi

# 4. Extra Debian packages asked for on the command line.
missing=()
for item in "$@"; do
    case "$item" in
        *:*)
            cmd="${item%%:*}"
            pkg="${item#*:}"
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
            ;;
        *)
            dpkg -s "$item" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$item")
            ;;
    esac
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
