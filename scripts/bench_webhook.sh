#!/usr/bin/env bash
# Inbound Telegram webhook throughput: careloop's route (secret check, JSON parse, update stored
# in inbound_events on SQLite, 200) against a bare actix-web handler (secret check, JSON parse,
# 200) on the same machine, side by side, with wrk.
#
#   scripts/bench_webhook.sh [--rounds N] [--duration SECONDS] [--connections N] [--write]
#
# Each round runs the bare handler, then careloop, each for DURATION seconds with CONNECTIONS
# connections on 1 wrk thread (the machine has 2 cores: wrk takes one). Every request is a new
# update (scripts/bench_webhook.lua), so careloop persists every one. The report takes medians.
# With --write the table replaces the bench_webhook section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/careloop-target}"
ROUNDS=3; DURATION=15; CONNECTIONS=32; WRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --write) WRITE=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--duration S] [--connections N] [--write]" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian)"
  apt-get install -y --no-install-recommends wrk >/dev/null
fi
log "building careloop and the bare handler"
cargo build --locked -p careloop -p careloop-gateway --example bare_webhook
BIN="$CARGO_TARGET_DIR/debug/careloop"
BARE="$CARGO_TARGET_DIR/debug/examples/bare_webhook"
MODEL="${BENCH_MODEL:-$PWD/models/SmolLM2-135M-Instruct.Q8_0.gguf}"
CONTENT="$PWD/content"
OUT="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done; echo "$1 did not come up" >&2; return 1; }

run_wrk() { # url name round
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s scripts/bench_webhook.lua "$1" >"$OUT/$2-$3.txt"
}

for round in $(seq 1 "$ROUNDS"); do
  port=$(free_port)
  "$BARE" "$port" >/dev/null 2>&1 & bare=$!
  sleep 1
  log "round $round/$ROUNDS: bare actix-web handler"
  run_wrk "http://127.0.0.1:$port" bare "$round"
  kill "$bare"; wait "$bare" 2>/dev/null || true

  dir="$OUT/careloop-$round"; mkdir -p "$dir"
  port=$(free_port)
  ( cd "$dir" && env -i PATH="$PATH" HOME="$dir" \
      CARELOOP_SERVER__PORT="$port" CARELOOP_LLM__MODEL_PATH="$MODEL" \
      CARELOOP_CONTENT__DIR="$CONTENT" CARELOOP_LOG__FILTER=warn \
      CARELOOP_CHANNELS__TELEGRAM__ENABLED=true \
      CARELOOP_CHANNELS__TELEGRAM__TOKEN=123456:bench \
      CARELOOP_CHANNELS__TELEGRAM__API_URL=http://127.0.0.1:9/ \
      CARELOOP_CHANNELS__TELEGRAM__WEBHOOK_SECRET=bench-secret-0123456789 \
      "$BIN" serve >"$dir/log" 2>&1 ) & app=$!
  wait_http "http://127.0.0.1:$port/readyz"
  log "round $round/$ROUNDS: careloop"
  run_wrk "http://127.0.0.1:$port" careloop "$round"
  stored=$(python3 - "$dir/data/careloop.sqlite" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select count(*) from inbound_events").fetchone()[0])
PY
)
  echo "$stored" >"$OUT/stored-$round.txt"
  kill "$app"; wait "$app" 2>/dev/null || true
done

python3 - "$OUT" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$WRITE" <<'PY'
import re, statistics, sys, datetime, pathlib
out, rounds, duration, conns, write = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(path):
    t = pathlib.Path(path).read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = {m.group(1): ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", t, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    total = int(re.search(r"(\d+) requests in", t).group(1))
    return rps, lat.get("50"), lat.get("99"), int(non2xx.group(1)) if non2xx else 0, total
res = {k: [parse(f"{out}/{k}-{r}.txt") for r in range(1, rounds + 1)] for k in ("bare", "careloop")}
stored = [int(pathlib.Path(f"{out}/stored-{r}.txt").read_text()) for r in range(1, rounds + 1)]
med = lambda k, i: statistics.median(x[i] for x in res[k])
rows = [
    ("updates/s accepted (200)", med("careloop", 0), med("bare", 0), "higher is better"),
    ("latency p50 (ms)", med("careloop", 1), med("bare", 1), "lower is better"),
    ("latency p99 (ms)", med("careloop", 2), med("bare", 2), "lower is better"),
]
lines = [
    "<!-- bench_webhook:start -->",
    f"Measured {datetime.date.today()} with `scripts/bench_webhook.sh --rounds {rounds} --duration {duration} --connections {conns}` "
    f"(wrk, 1 thread, {conns} connections, {duration} s per side per round, medians of {rounds} rounds; careloop on the embedded "
    "default: SQLite, every update a new `update_id`, stored in `inbound_events` before the 200).",
    "",
    "| metric | careloop | bare actix-web | careloop / bare |",
    "| --- | --- | --- | --- |",
]
for name, c, b, note in rows:
    lines.append(f"| {name} | {c:.1f} | {b:.1f} | {c / b:.2f} ({note}) |")
errors = [x[3] for x in res["careloop"]]
lines.append("")
lines.append(f"Per round careloop/bare updates/s: " + ", ".join(f"{c[0]:.0f}/{b[0]:.0f}" for c, b in zip(res["careloop"], res["bare"])) +
             f". careloop non-2xx responses per round: {errors}; updates stored per round: {stored} "
             f"(requests answered 200 per round: {[x[4] - x[3] for x in res['careloop']]}).")
lines.append("<!-- bench_webhook:end -->")
table = "\n".join(lines)
print(table)
if write:
    sys.path.insert(0, "scripts")
    from benchmarks_md import write_section
    write_section("bench_webhook", "## Inbound Telegram webhook (issue 5)", table)
PY
