#!/usr/bin/env bash
# careloop's LLM engine vs llama.cpp on the same GGUF file, same questions, side by side.
#
#   scripts/bench_llm.sh [--rounds N] [--write]
#
# 1. a throwaway virtualenv under ~/.cache/careloop-bench/ with llama-cpp-python built from its
#    SOURCE package for this CPU (GGML_NATIVE; built once, reused while the version is the same);
# 2. careloop's side: `cargo run -p careloop-llm --example bench_llm` (the dev profile of the
#    tests; dependencies are optimized at opt-level 3) through MistralEngine's LlmService;
# 3. llama.cpp's side: scripts/bench_llm.py on the same file, questions and limits, 2 threads.
# Each round runs careloop, then llama.cpp; the report takes the medians over the rounds.
# With --write the table replaces the bench_llm section of BENCHMARKS.md.
#
# Take measurements on a quiet machine: rounds during which cargo, rustc or a C compiler ran are
# measured again (BENCH_ALLOW_BUSY=1 turns that off). Environment: BENCH_MODEL (default the prepared Q8_0 file),
# BENCH_LLAMA_INSTANCES (default 1, see scripts/bench_llm.py), CARELOOP_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/careloop-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
BENCH_DIR="${CARELOOP_BENCH_DIR:-$HOME/.cache/careloop-bench}"
VENV="$BENCH_DIR/venv-llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION"
MODEL="${BENCH_MODEL:-models/SmolLM2-135M-Instruct.Q8_0.gguf}"
# The default model is made from the set-up's Q4_1 file when missing, by the same library call
# as `careloop model prepare` (Q4_1 -> Q8_0; see the first section of BENCHMARKS.md).
PREPARE=()
[ -z "${BENCH_MODEL:-}" ] && PREPARE=(--prepare-from models/SmolLM2-135M-Instruct.Q4_1.gguf)
QUESTIONS=scripts/bench_llm.questions.json
INSTANCES="${BENCH_LLAMA_INSTANCES:-1}"
ROUNDS=3
WRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --write) WRITE=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--write]" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- 1. llama.cpp from source, in a cached virtualenv -------------------------------------
# Native build (all the SIMD this CPU has, AVX-512 included) except AMX: ggml's AMX matmul
# crashes with SIGSEGV in this VM (ggml_backend_amx_mul_mat, first decode), and candle has no
# AMX path either. GCC gives the explicit -mno-amx-* priority over -march=native.
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=ON -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'}"
if [ "$(cat "$VENV/.built" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ]; then
  log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source into $VENV (once; minutes)"
  rm -rf "$VENV"
  mkdir -p "$BENCH_DIR"
  python3 -m venv "$VENV"
  # --no-binary: PyPI's source package, compiled here for this CPU (no prebuilt wheel).
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" FORCE_CMAKE=1 \
    "$VENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  printf '%s' "$LLAMA_CMAKE_ARGS" >"$VENV/.built"
fi

# --- 2. careloop's side, built ------------------------------------------------------------
log "building the bench_llm example (dev profile)"
# --workspace, not -p: the same feature set as every other build, so mistral.rs is not rebuilt.
cargo build --locked --workspace --example bench_llm

# A build on the same cores spoils a measurement: wait for a quiet machine, watch during each
# round, and run a round again when cargo/rustc/cc ran during it (BENCH_ALLOW_BUSY=1: don't).
busy() {
  [ "${BENCH_ALLOW_BUSY:-0}" != 1 ] &&
    { pgrep -x cargo || pgrep -x rustc || pgrep -x cc1plus || pgrep -x cc1; } >/dev/null
}
OUT="$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
run_round() {
  local round=$1
  log "round $round/$ROUNDS: careloop"
  "$CARGO_TARGET_DIR/debug/examples/bench_llm" --model "$MODEL" --questions "$QUESTIONS" \
    "${PREPARE[@]}" >"$OUT/ours-$round.json"
  log "round $round/$ROUNDS: llama.cpp"
  "$VENV/bin/python" scripts/bench_llm.py llama --model "$MODEL" --questions "$QUESTIONS" \
    --threads 2 --instances "$INSTANCES" >"$OUT/llama-$round.json"
}
for round in $(seq 1 "$ROUNDS"); do
  for attempt in 1 2 3 4 5; do
    if busy; then
      log "cargo/rustc is running: waiting for a quiet machine"
      while busy; do sleep 5; done
    fi
    rm -f "$OUT/.busy" "$OUT/.stop"
    ( while [ ! -f "$OUT/.stop" ]; do busy && touch "$OUT/.busy"; sleep 0.5; done ) &
    watcher=$!
    run_round "$round"
    touch "$OUT/.stop"
    wait "$watcher"
    [ -f "$OUT/.busy" ] || break
    log "a build ran during round $round: measuring it again"
  done
done

args=(report --questions "$QUESTIONS" --model "$MODEL"
  --ours "$OUT"/ours-*.json --llama "$OUT"/llama-*.json
  --command "scripts/bench_llm.sh --rounds $ROUNDS")
[ "$WRITE" = 1 ] && args+=(--write BENCHMARKS.md)
python3 scripts/bench_llm.py "${args[@]}"
log "raw results: $OUT"
