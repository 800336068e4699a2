#!/usr/bin/env bash
# The main job. Until the embedded model pair lands, it shows the GGUF reader on a file the build
# writes itself.
set -euo pipefail
build="${1:-build}"
exec "$build/bin/dflash" version
