#!/usr/bin/env bash
# Fuzzes careloop's channel parsers (Telegram updates and text, inbound email, webhook and
# unsubscribe signatures, web chat tokens) with cargo-fuzz / libFuzzer. A separate command, not
# part of CI: it needs minutes per target and a sanitizer build of the channels crate.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]   (default: every target)
#   scripts/fuzz.sh --list                                          (the targets)
#
# For each target it runs
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <work corpus> fuzz/corpus/<target> \
#       -- -max_total_time=<seconds> -rss_limit_mb=2048 ...
# from fuzz/, prints one summary line per target (runs executed, crashes found) and exits non-zero
# when any target found a crash (or failed to build), with the reproducer's path in the output.
#
# Stable Rust: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module
# with -Zunstable-options ...). RUSTC_BOOTSTRAP=1 lets the stable compiler accept them; with rustc
# 1.95 the AddressSanitizer build works that way. Should a toolchain ever refuse the sanitizer
# build, the script falls back to `cargo fuzz run --sanitizer none` (coverage-guided fuzzing
# still works; only memory errors in unsafe code go undetected) and says so in its output.
# CARELOOP_FUZZ_SANITIZER=none|address forces one.
#
# Where things go (all outside the clone, so runs never dirty the work tree):
#   CARELOOP_TOOLS_DIR        cargo-fuzz is installed under $CARELOOP_TOOLS_DIR/cargo-fuzz
#                             (default ~/.cache/careloop-tools)
#   CARELOOP_FUZZ_TARGET_DIR  the build (default ~/.cache/careloop-fuzz-target; the first build
#                             takes ~15 minutes on two cores, later ones seconds)
#   CARELOOP_FUZZ_CORPUS_DIR  the corpus libFuzzer grows, one folder per target (default
#                             ~/.cache/careloop-fuzz-corpus); the committed seeds in
#                             fuzz/corpus/<target>/ are read, never written
#   CARELOOP_FUZZ_LOG_DIR     one log per target (default ~/.cache/careloop-fuzz-logs)
#   CARELOOP_FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   CARELOOP_FUZZ_SPLIT_SPACES_ONLY=1  telegram_split checks its word invariant only on texts
#                             whose whitespace is ' ' and '\n' (see the known finding in
#                             fuzz/fuzz_targets/telegram_split.rs)
# Crash reproducers land in fuzz/artifacts/<target>/ (git-ignored). Minimize one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=~/.cache/careloop-fuzz-target \
#       cargo fuzz tmin <target> artifacts/<target>/crash-...
# and keep it in fuzz/regressions/<target>/: the inputs there are replayed with the seeds on
# every run, so a target with an unfixed finding fails at once until the parser is fixed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
tools="${CARELOOP_TOOLS_DIR:-$HOME/.cache/careloop-tools}/cargo-fuzz"
target_dir="${CARELOOP_FUZZ_TARGET_DIR:-$HOME/.cache/careloop-fuzz-target}"
corpus_root="${CARELOOP_FUZZ_CORPUS_DIR:-$HOME/.cache/careloop-fuzz-corpus}"
log_dir="${CARELOOP_FUZZ_LOG_DIR:-$HOME/.cache/careloop-fuzz-logs}"
timeout="${CARELOOP_FUZZ_TIMEOUT:-10}"

all_targets() {
    find "$fuzz_dir/fuzz_targets" -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort
}

if [[ "${1:-}" == "--list" ]]; then
    all_targets
    exit 0
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

seconds=60
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
    seconds="$1"
    shift
fi
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(all_targets)
fi
for t in "${targets[@]}"; do
    if [[ ! -f "$fuzz_dir/fuzz_targets/$t.rs" ]]; then
        echo "fuzz: no target '$t' (have: $(all_targets | tr '\n' ' '))" >&2
        exit 2
    fi
done

# cargo-fuzz, installed once into the cache.
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "fuzz: installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$target_dir"
mkdir -p "$log_dir"
cd "$fuzz_dir"

# Build every target once (the first build is long); fall back to no sanitizer if the
# AddressSanitizer build is refused.
sanitizer="${CARELOOP_FUZZ_SANITIZER:-address}"
build_log="$log_dir/build.log"
# `cargo fuzz build` takes one target or none (= all).
build() {
    if [[ "${targets[*]}" == "$(all_targets | tr '\n' ' ' | sed 's/ $//')" ]]; then
        cargo fuzz build --sanitizer "$1"
    else
        for t in "${targets[@]}"; do
            cargo fuzz build --sanitizer "$1" "$t" || return 1
        done
    fi
}
echo "fuzz: building ${#targets[@]} target(s) with sanitizer '$sanitizer' in $target_dir"
if ! build "$sanitizer" >"$build_log" 2>&1; then
    if [[ "$sanitizer" != "none" && -z "${CARELOOP_FUZZ_SANITIZER:-}" ]]; then
        echo "fuzz: the $sanitizer-sanitizer build failed on this toolchain (tail of $build_log below);"
        echo "fuzz: falling back to --sanitizer none (coverage-guided, no AddressSanitizer)"
        tail -n 15 "$build_log"
        sanitizer=none
        if ! build none >"$build_log" 2>&1; then
            tail -n 40 "$build_log"
            echo "fuzz: build failed (log: $build_log)" >&2
            exit 1
        fi
    else
        tail -n 40 "$build_log"
        echo "fuzz: build failed (log: $build_log)" >&2
        exit 1
    fi
fi

crashes_total=0
summary=()
for t in "${targets[@]}"; do
    work="$corpus_root/$t"
    seeds=("$fuzz_dir/corpus/$t")
    [[ -d "$fuzz_dir/regressions/$t" ]] && seeds+=("$fuzz_dir/regressions/$t")
    mkdir -p "$work" "${seeds[@]}" "$fuzz_dir/artifacts/$t"
    args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout="$timeout" -print_final_stats=1)
    [[ -f "$fuzz_dir/dict/$t.dict" ]] && args+=(-dict="$fuzz_dir/dict/$t.dict")
    log="$log_dir/$t.log"
    echo "fuzz: $t for ${seconds}s (log: $log)"
    start=$(date +%s)
    set +e
    cargo fuzz run --sanitizer "$sanitizer" "$t" "$work" "${seeds[@]}" -- "${args[@]}" >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(($(date +%s) - start))
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)"
    if [[ -z "$runs" ]]; then
        # No final stats (a crash): the last status line's count.
        runs="$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#' || true)"
    fi
    runs="${runs:-0}"
    per_second="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)"
    corpus_size="$(find "$work" -type f | wc -l)"
    # libFuzzer names every input it saves for a crash, leak, timeout or out-of-memory.
    artifacts="$(grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' || true)"
    crashes="$(echo -n "$artifacts" | grep -c . || true)"
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
        # Failed without saving an input (the run itself broke): still a failure.
        crashes=1
        artifacts="(no input saved; see $log)"
    fi
    line="fuzz: $t: $runs runs in ${elapsed}s (${per_second:-?}/s, sanitizer $sanitizer), $corpus_size files in the work corpus, $crashes crash(es)"
    summary+=("$line")
    echo "$line"
    if [[ $crashes -gt 0 ]]; then
        crashes_total=$((crashes_total + crashes))
        # The panic (or sanitizer report) and the reproducer.
        grep -m 1 -A 3 -E "^thread '.*panicked at|ERROR: (AddressSanitizer|LeakSanitizer)|ERROR: libFuzzer: (timeout|out-of-memory)" "$log" \
            | sed 's/^/    /' || true
        while read -r artifact; do
            [[ -n "$artifact" ]] || continue
            echo "    reproducer: $artifact"
            echo "    replay:     (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$target_dir cargo fuzz run --sanitizer $sanitizer $t $artifact)"
        done <<<"$artifacts"
    fi
done

echo
echo "fuzz: summary (seconds per target: $seconds)"
printf '%s\n' "${summary[@]}"
if [[ $crashes_total -gt 0 ]]; then
    echo "fuzz: $crashes_total crash(es) found; reproducers above, logs in $log_dir" >&2
    exit 1
fi
echo "fuzz: no crashes"
