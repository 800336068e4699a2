#!/usr/bin/env bash
# The main job. Until the embedded model pair lands, it shows the GGUF reader on a file the build
# writes itself (build/demo.gguf: random weights, Qwen3.5-style names).
set -euo pipefail
build="${1:-build}"
if [ ! -f "$build/demo.gguf" ]; then
  cmake --build "$build" --target demo_gguf
fi
exec "$build/bin/dflash" info "$build/demo.gguf"
