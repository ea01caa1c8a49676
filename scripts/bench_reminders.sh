#!/usr/bin/env bash
# Reminders due at once, careloop against BullMQ on the same Redis and PostgreSQL, side by side.
#
#   scripts/bench_reminders.sh [--count N] [--rounds R] [--concurrency C] [--jobs J] [--scenarios LIST] [--write]
#
# Each round runs, for each scenario, careloop and then BullMQ on a fresh PostgreSQL database
# seeded identically by `bench_due seed` (N occurrences over 1,000 consented Telegram patients):
#   minute  N reminders due spread evenly over one minute;
#   burst   N reminders due at the same instant (the worst case of "due within the same minute").
# careloop: the real reminder worker (`careloop_reminders::run`: due sweeper + apalis-redis
# worker running J jobs at once, a job being up to 64 reminders due together) in `bench_due run`.
# BullMQ: delayed jobs added ahead of their due time, one per reminder, run by
# `scripts/bench/bullmq/bench.mjs` in 2 Node processes with C/2 concurrency each. Both do
# careloop's dispatch work per reminder against PostgreSQL (see bench.mjs for the definition).
# Lateness (the occurrence's `sent` time − its due time) and throughput come from the same SQL
# on both sides (`bench_due report`). Redis: db 7 under a key prefix per run, removed afterwards;
# PostgreSQL: a database per run, dropped afterwards.
# With --write the table replaces the bench_reminders section of BENCHMARKS.md. BENCH_NO_BUILD=1
# uses the bench_due already built in $CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/careloop-target}"
COUNT=100000; ROUNDS=1; CONCURRENCY=32; JOBS=4; SCENARIOS="minute burst"; WRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --write) WRITE=1; shift ;;
    *) echo "usage: $0 [--count N] [--rounds R] [--concurrency C] [--jobs J] [--scenarios 'minute burst'] [--write]" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
PG_ADMIN="${CARELOOP_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_BASE="${PG_ADMIN%/*}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}"
REDIS_DB="${REDIS_URL##*/}"

BENCH="$CARGO_TARGET_DIR/debug/examples/bench_due"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building the careloop side (bench_due)"
  cargo build --locked --workspace --example bench_due
fi
BULL=scripts/bench/bullmq
if ! cmp -s "$BULL/package-lock.json" "$BULL/node_modules/.careloop-lock"; then
  log "installing BullMQ (npm ci)"
  npm ci --prefix "$BULL" --no-audit --no-fund >/dev/null
  cp "$BULL/package-lock.json" "$BULL/node_modules/.careloop-lock"
fi

OUT="$(mktemp -d)"
DBS=(); PREFIXES=()
cleanup() {
  for db in "${DBS[@]}"; do psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  for p in "${PREFIXES[@]}"; do
    redis_clean "$p"
  done
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_clean() { # every key of one run, and its queue in apalis's list of queues
  redis-cli -n "$REDIS_DB" --scan --pattern "*$1*" | xargs -r -n 500 redis-cli -n "$REDIS_DB" del >/dev/null || true
  redis-cli -n "$REDIS_DB" zrange core:apalis:queues:list 0 -1 | grep -F "$1" \
    | xargs -r redis-cli -n "$REDIS_DB" zrem core:apalis:queues:list >/dev/null || true
}

fresh_db() { # name -> url, seeded
  local name="$1" spread="$2"
  psql "$PG_ADMIN" -qc "CREATE DATABASE $name" >/dev/null
  DBS+=("$name")
  "$BENCH" seed --database-url "$PG_BASE/$name" --count "$COUNT" --patients 1000 --spread-ms "$spread" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    case "$scenario" in minute) spread=60000 ;; burst) spread=0 ;; *) echo "unknown scenario $scenario" >&2; exit 2 ;; esac
    for side in careloop bullmq; do
      tag="bench_$(date +%s)_$RANDOM"
      PREFIXES+=("$tag")
      log "round $round, $scenario, $side: seeding $COUNT reminders"
      fresh_db "$tag" "$spread"
      url="$PG_BASE/$tag"
      log "round $round, $scenario, $side: running"
      if [ "$side" = careloop ]; then
        "$BENCH" run --database-url "$url" --redis-url "$REDIS_URL" --namespace "$tag" \
          --count "$COUNT" --concurrency "$JOBS" --lead-ms 3000
      else
        node "$BULL/bench.mjs" --db "$url" --redis "$REDIS_URL" --prefix "$tag" \
          --count "$COUNT" --concurrency "$CONCURRENCY" --processes 2 --lead-ms 30000
      fi
      "$BENCH" report --database-url "$url" >"$OUT/$scenario-$side-$round.json"
      cat "$OUT/$scenario-$side-$round.json" >&2
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $tag WITH (FORCE)" >/dev/null
      redis_clean "$tag"
    done
  done
done

python3 - "$OUT" "$ROUNDS" "$COUNT" "$CONCURRENCY" "$SCENARIOS" "$WRITE" "$JOBS" <<'PY'
import datetime, json, os, pathlib, statistics, subprocess, sys
sys.path.insert(0, "scripts")
from benchmarks_md import write_section
out, rounds, count, conc, scenarios, write, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5].split(), sys.argv[6] == "1", sys.argv[7]
def load(s, side):
    return [json.load(open(f"{out}/{s}-{side}-{r}.json")) for r in range(1, rounds + 1)]
def med(rows, key):
    return statistics.median(r[key] for r in rows)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    f"<!-- bench_reminders:start -->",
    f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC (commit {commit}) with `scripts/bench_reminders.sh --count {count} --rounds {rounds} --jobs {jobs} --concurrency {conc}`: {cpu}, {os.cpu_count()} cores shared by PostgreSQL 15, Redis 7, the worker(s) and the bench; median of {rounds} round(s); careloop: one worker process running {jobs} jobs (of up to 64 reminders) at once; BullMQ: 2 worker processes, concurrency {conc} in all.",
    "",
    "| scenario | metric | careloop | BullMQ | careloop / BullMQ |",
    "| --- | --- | --- | --- | --- |",
]
for s in scenarios:
    c, b = load(s, "careloop"), load(s, "bullmq")
    label = {"minute": f"{count:,} due over one minute", "burst": f"{count:,} due at one instant"}[s]
    for key, name, better in [("per_second", "dispatched per second", "higher"),
                              ("lateness_p50_s", "lateness p50 (s)", "lower"),
                              ("lateness_p99_s", "lateness p99 (s)", "lower"),
                              ("lateness_max_s", "lateness max (s)", "lower")]:
        cv, bv = med(c, key), med(b, key)
        ratio = f"{cv / bv:.2f} ({better} is better)" if bv else "-"
        lines.append(f"| {label} | {name} | {cv:.2f} | {bv:.2f} | {ratio} |")
    sent = [(r["sent"], r["messages"]) for r in c + b]
    lines.append(f"| {label} | sent / messages stored (every run) | {c[0]['sent']} / {c[0]['messages']} | {b[0]['sent']} / {b[0]['messages']} | - |")
    if any(x != (count, count) for x in sent):
        print(f"WARNING: a run did not send every reminder exactly once: {sent}", file=sys.stderr)
lines.append("")
per_round = []
for s in scenarios:
    for r in range(rounds):
        c, b = load(s, "careloop")[r], load(s, "bullmq")[r]
        per_round.append(f"{s} round {r + 1}: {c['per_second']:.0f} vs {b['per_second']:.0f}/s, p99 {c['lateness_p99_s']:.2f} vs {b['lateness_p99_s']:.2f} s")
lines.append("Per round (careloop vs BullMQ): " + "; ".join(per_round) + ".")
lines.append("<!-- bench_reminders:end -->")
table = "\n".join(lines)
print(table)
if write:
    write_section("bench_reminders", "## Reminders due at once: careloop vs BullMQ (issue 6)", table)
PY
