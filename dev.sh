#!/usr/bin/env bash
# The local stack in one command. See README.md.
#   ./dev.sh up     emulators + every function on 127.0.0.1; writes .local/stack.json; prints the
#                   admin console's URL; Ctrl-C stops
#   ./dev.sh demo   the paid-booking flow end to end, then the admin console's URL; last line is a
#                   JSON summary (consoleUrl too)
#   ./dev.sh test   the whole suite (Chromium needed), plus ruff check, ruff format --check and mypy
#   ./dev.sh bench  the benchmarks under bench/
#   ./dev.sh proof  measures every promise on a stack of its own; writes docs/proof.md
#                   (one part: ./dev.sh proof chaos|fuzz|secrets|load|bench; --short: the CI one)
#   ./dev.sh lock   requirements.in -> requirements.txt, requirements-dev.in -> requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")"

# The Python that Cloud Functions runs (deploy.sh: python313) is the one dev and CI run.
PYTHON_MINOR=13
INSTALL_PYTHON="install Python 3.$PYTHON_MINOR with venv (Debian/Ubuntu: python3.$PYTHON_MINOR python3.$PYTHON_MINOR-venv; or pyenv install 3.$PYTHON_MINOR)"

die() { echo "dev.sh: $*" >&2; exit 1; }

# Under faketime (e.g. `faketime '+400 days' ./dev.sh test`, to prove nothing depends on the
# date) only the calendar moves: a faked monotonic clock makes Python's timed waits sleep until
# a deadline days away, so it stays real, and devstack/faketime/ mends time.sleep for that.
case "${LD_PRELOAD:-}" in
  *faketime*)
    export FAKETIME_DONT_FAKE_MONOTONIC=1
    export PYTHONPATH="$PWD/devstack/faketime${PYTHONPATH:+:$PYTHONPATH}" ;;
esac

# python3.13 on the PATH, else the newest 3.13.x that pyenv installed (whose python3.13 shim
# runs only where 3.13 is pyenv's selected version). Sets PYTHON, or stops saying what to install.
check_python() {
  local candidate patch best="" best_patch=-1 found=""
  for candidate in "$(command -v "python3.$PYTHON_MINOR" || true)" \
    "${PYENV_ROOT:-${HOME:-}/.pyenv}"/versions/3."$PYTHON_MINOR".*/bin/python3."$PYTHON_MINOR"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    patch=$("$candidate" -c "import sys; v = sys.version_info; print(v[2]) if v[:2] == (3, $PYTHON_MINOR) else sys.exit(1)" 2>/dev/null) || continue
    found=$candidate
    "$candidate" -c 'import ensurepip, venv' >/dev/null 2>&1 || continue
    if [ "$patch" -gt "$best_patch" ]; then best=$candidate best_patch=$patch; fi
  done
  if [ -n "$best" ]; then PYTHON=$best; return; fi
  [ -z "$found" ] || die "Python 3.$PYTHON_MINOR at $found has no venv module: $INSTALL_PYTHON."
  die "Python 3.$PYTHON_MINOR is missing (the runtime deployed, python3$PYTHON_MINOR): $INSTALL_PYTHON."
}

check_prerequisites() {
  check_python
  command -v java >/dev/null || die "Java is missing: install a JRE 11+ (e.g. openjdk-17-jre-headless); the Firestore emulator needs it."
  command -v gcloud >/dev/null || die "gcloud is missing: install the Google Cloud CLI and its Firestore emulator (gcloud components install cloud-firestore-emulator)."
  local sdk
  sdk=$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")
  ls "$sdk"/platform/cloud-firestore-emulator/cloud_firestore_emulator >/dev/null 2>&1 \
    || die "the Firestore emulator is missing: gcloud components install cloud-firestore-emulator (or the Debian package google-cloud-cli-firestore-emulator)."
}

# The admin console's browser tests drive Debian's Chromium through Playwright's
# executable_path; Playwright's own browser download is never used (it cannot work here).
check_chromium() {
  command -v chromium >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "dev.sh: installing Debian's chromium for the admin console's browser tests." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || die "could not install chromium with apt-get; run: apt-get update && apt-get install -y chromium"
    return
  fi
  die "Chromium is missing: run 'sudo apt-get install chromium' (Debian's package; the admin console's browser tests need it)."
}

# A venv in $1 running exactly $PYTHON: one made by another interpreter (Python 3.11 before the
# move to 3.13, another patch release) is made again from scratch, its stamp with it.
make_venv() {
  local dir=$1 want have
  want=$("$PYTHON" -c 'import sys; print(sys.version)')
  have=$("$dir/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)
  if [ "$have" = "$want" ]; then return; fi
  [ -z "$have" ] || echo "dev.sh: $dir runs Python ${have%% *}, not ${want%% *}: making it again." >&2
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
}

# requirements-dev.txt is a lock with hashes (the runtime lock's pins plus the dev tools), so
# pip installs exactly those files or stops.
ensure_venv() {
  local stamp=.venv/.requirements.sha
  local want
  make_venv .venv
  want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
      -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
}

# checkov (the Terraform audit) pins packages that clash with the app's: a venv of its own.
ensure_audit_venv() {
  local stamp=.venv-audit/.requirements.sha
  local want
  make_venv .venv-audit
  want=$(sha256sum requirements-audit.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv-audit/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-audit.txt
    echo "$want" > "$stamp"
  fi
}

# Resolve both locks for CPython 3.13 on Linux x86_64 (Cloud Functions' python313 build, and CI),
# keeping every pin that still fits; extra arguments go to uv, e.g. --upgrade-package NAME.
lock() {
  local target=(--python-version "3.$PYTHON_MINOR" --python-platform x86_64-manylinux_2_28
    --generate-hashes --custom-compile-command "./dev.sh lock")
  .venv/bin/uv pip compile --quiet "${target[@]}" "$@" requirements.in -o requirements.txt
  .venv/bin/uv pip compile --quiet "${target[@]}" "$@" requirements-dev.in -c requirements.txt \
    -o requirements-dev.txt
}

cmd=${1:-help}
shift || true
case "$cmd" in
  up|demo)
    check_prerequisites; ensure_venv
    exec .venv/bin/python -m devstack "$cmd" "$@" ;;
  test)
    check_prerequisites; check_chromium; ensure_venv; ensure_audit_venv
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@" ;;
  bench)
    check_prerequisites; ensure_venv
    for b in bench/*.py; do echo "== $b"; .venv/bin/python "$b" "$@"; done ;;
  proof)
    check_prerequisites; ensure_venv
    exec .venv/bin/python -m proof "$@" ;;
  lock)
    check_python; ensure_venv
    lock "$@" ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
