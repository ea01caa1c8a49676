#!/usr/bin/env bash
# Web chat memory with N open sessions in the real careloop process (see bench_webchat_memory.py).
#   scripts/bench_webchat_memory.sh [--sessions N] [--write]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/careloop-target}"
cargo build --locked -p careloop >&2
exec python3 scripts/bench_webchat_memory.py --bin "$CARGO_TARGET_DIR/debug/careloop" \
  --model "${BENCH_MODEL:-$PWD/models/SmolLM2-135M-Instruct.Q8_0.gguf}" --content "$PWD/content" "$@"
