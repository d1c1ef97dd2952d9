#!/usr/bin/env bash
# Set up this checkout (scripts/setup.sh), then run the origin in the foreground:
#
#   bash scripts/serve.sh [headwater serve options ...]
#
# With no options (and neither HEADWATER_ROOT nor HEADWATER_CONFIG set) the content root is the
# content/ folder of this checkout. Stop it with Ctrl-C or SIGTERM.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$repo/scripts/setup.sh"

if [ "$#" -eq 0 ] && [ -z "${HEADWATER_ROOT:-}" ] && [ -z "${HEADWATER_CONFIG:-}" ]; then
    set -- --root "$repo/content"
fi
exec "$repo/.venv/bin/headwater" serve "$@"
