#!/usr/bin/env bash
# Mail servers the email channel's tests run against, installed once and reused:
#   - aiosmtpd (SMTP) in a Python venv at ${CARELOOP_TOOLS_DIR:-~/.cache/careloop-tools}/mail-venv
#   - Debian's dovecot (IMAP) at /usr/sbin/dovecot
# The tests start and stop their own instances on free ports; this only installs. Silent and
# quick when everything is there; on failure it shows the installer's output.
set -euo pipefail

AIOSMTPD_VERSION="1.4.6"
tools_dir="${CARELOOP_TOOLS_DIR:-$HOME/.cache/careloop-tools}"
venv="$tools_dir/mail-venv"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Runs a command quietly, printing its output only when it fails.
quiet() {
  local out
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "failed: $*" >&2
    return 1
  fi
}

apt_install() {
  echo "installing $* (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  quiet $sudo apt-get update -qq
  quiet $sudo apt-get install -y -qq --no-install-recommends "$@"
}

packages=()
[ -x /usr/sbin/dovecot ] || packages+=(dovecot-imapd)
# Debian's python3 creates venvs only with python3-venv (ensurepip) installed.
if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null \
  && ! python3 -c 'import ensurepip' 2>/dev/null; then
  packages+=(python3-venv)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  apt_install "${packages[@]}"
  # Where an init system runs, the package starts a system-wide dovecot; the tests need none.
  $sudo systemctl disable --now dovecot >/dev/null 2>&1 || true
fi

if ! "$venv/bin/python" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
  echo "installing aiosmtpd $AIOSMTPD_VERSION into $venv" >&2
  mkdir -p "$tools_dir"
  rm -rf "$venv"
  quiet python3 -m venv "$venv"
  quiet "$venv/bin/python" -m pip install --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
