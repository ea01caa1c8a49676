#!/usr/bin/env bash
# careloop's one entry point for people and CI.
#
#   ./careloop.sh run     set everything up and run careloop on the embedded default
#   ./careloop.sh test    set everything up and run the whole test suite (what CI runs)
#   ./careloop.sh setup   only the set-up: model, build prerequisites, local services for tests
#
# Builds go to $CARGO_TARGET_DIR (default: ~/.cache/careloop-target, outside the clone, so repeated
# runs and CI reuse them). Tests and `run` use the same profile, so nothing is built twice.
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/careloop-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup_model() {
  log "model"
  python3 scripts/fetch_model.py --dest models
}

# PostgreSQL and Redis run on this kind of machine already; start them when they do not.
ensure_services() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/careloop-redis.log
  fi
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && return 0
    sleep 0.2
  done
  echo "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) did not come up" >&2
  return 1
}

# The web chat's browser test drives Debian's chromium through playwright-core (which downloads
# no browser of its own); its node packages are pinned in tests/browser/package-lock.json.
setup_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  fi
  if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.careloop-lock; then
    log "installing the browser test's node packages"
    npm ci --prefix tests/browser --no-audit --no-fund
    cp tests/browser/package-lock.json tests/browser/node_modules/.careloop-lock
  fi
}

# The email channel's tests start real mail servers: aiosmtpd (in a cached venv) and dovecot.
setup_mail_tools() {
  log "mail servers for tests"
  bash scripts/test-services/mail.sh
}

cmd_setup() {
  setup_model
}

cmd_run() {
  setup_model
  log "building careloop"
  cargo build -p careloop --locked
  log "preparing the model for the CPU engine (Q8_0; once)"
  "$CARGO_TARGET_DIR/debug/careloop" model prepare
  log "starting careloop on http://127.0.0.1:${CARELOOP_SERVER__PORT:-8080} (Ctrl-C stops it)"
  exec "$CARGO_TARGET_DIR/debug/careloop" serve "$@"
}

cmd_test() {
  setup_model
  ensure_services
  setup_mail_tools
  setup_browser
  log "building and running the tests"
  cargo test --workspace --locked --no-fail-fast "$@"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  setup) shift; cmd_setup "$@" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
