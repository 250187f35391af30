#!/usr/bin/env bash
# The local stack in one command. See README.md.
#   ./dev.sh up     emulators + every function on 127.0.0.1; writes .local/stack.json; Ctrl-C stops
#   ./dev.sh demo   the paid-booking flow end to end; last line is a JSON summary
#   ./dev.sh test   the whole suite, plus ruff check, ruff format --check and mypy --strict
#   ./dev.sh bench  the benchmarks under bench/
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "dev.sh: $*" >&2; exit 1; }

check_prerequisites() {
  local py
  py=$(command -v python3.11 || command -v python3 || true)
  [ -n "$py" ] || die "Python 3.11+ is missing: install python3 (3.11 or newer) with venv."
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11+ is required (found $("$py" --version 2>&1)): install a newer python3."
  command -v java >/dev/null || die "Java is missing: install a JRE 11+ (e.g. openjdk-17-jre-headless); the Firestore emulator needs it."
  command -v gcloud >/dev/null || die "gcloud is missing: install the Google Cloud CLI and its Firestore emulator (gcloud components install cloud-firestore-emulator)."
  local sdk
  sdk=$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")
  ls "$sdk"/platform/cloud-firestore-emulator/cloud_firestore_emulator >/dev/null 2>&1 \
    || die "the Firestore emulator is missing: gcloud components install cloud-firestore-emulator (or the Debian package google-cloud-cli-firestore-emulator)."
  PYTHON=$py
}

ensure_venv() {
  local stamp=.venv/.requirements.sha
  local want
  want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
}

# checkov (the Terraform audit) pins packages that clash with the app's: a venv of its own.
ensure_audit_venv() {
  local stamp=.venv-audit/.requirements.sha
  local want
  want=$(sha256sum requirements-audit.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    [ -x .venv-audit/bin/python ] || "$PYTHON" -m venv .venv-audit
    .venv-audit/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-audit.txt
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  up|demo)
    check_prerequisites; ensure_venv
    exec .venv/bin/python -m devstack "$cmd" "$@" ;;
  test)
    check_prerequisites; ensure_venv; ensure_audit_venv
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@" ;;
  bench)
    check_prerequisites; ensure_venv
    for b in bench/*.py; do echo "== $b"; .venv/bin/python "$b" "$@"; done ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
