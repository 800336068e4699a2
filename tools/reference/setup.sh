#!/usr/bin/env bash
# Creates the pinned reference virtualenv at tools/reference/.venv (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${DFLASH_REF_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/pip" freeze > "$here/requirements.lock.txt"
echo "reference environment ready: $venv"
