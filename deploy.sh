#!/usr/bin/env bash
# Stage every function into build/<name>/ and deploy it to Cloud Functions gen2. See docs/deploy.md.
#   ./deploy.sh --stage-only          stage only: build/<name>/ = main.py + shared/ + requirements.txt
#   ./deploy.sh --dry-run             check prerequisites, print every command, change nothing
#   ./deploy.sh [NAME...]             stage and deploy (all functions, or the ones named)
# Options: --project ID (or GOOGLE_CLOUD_PROJECT), --region R (or REGION; southamerica-east1).
# Settings: CALENDAR_ID, ADMIN_EMAILS (comma-separated), ID_TOKEN_AUDIENCE, CALENDAR_AUTH,
# CALENDAR_IMPERSONATE_SUBJECT, PUBLIC_EVENTS_ENABLED; per-function settings: infra/functions.json.
# Service accounts and secrets come from Terraform (infra/, with -var manage_functions=false).
set -euo pipefail
cd "$(dirname "$0")"

GCLOUD=${GCLOUD:-gcloud}
BUILD_DIR=${BUILD_DIR:-build}
RUNTIME=${RUNTIME:-python313}
PROJECT=${GOOGLE_CLOUD_PROJECT:-}
REGION=${REGION:-southamerica-east1}
TIME_ZONE=America/Argentina/Buenos_Aires
SETTINGS=infra/functions.json
SECRET_IDS=(google-oauth-client google-calendar-refresh-token mercadopago-access-token
  mercadopago-webhook-secret admin-api-key oauth-state-key google-public-api-key)

die() { echo "deploy.sh: $*" >&2; exit 1; }
warn() { echo "deploy.sh: warning: $*" >&2; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

dry_run=0
stage_only=0
requested=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --stage-only) stage_only=1 ;;
    --project) PROJECT=${2:?--project needs a value}; shift ;;
    --project=*) PROJECT=${1#*=} ;;
    --region) REGION=${2:?--region needs a value}; shift ;;
    --region=*) REGION=${1#*=} ;;
    -h|--help) usage ;;
    -*) echo "deploy.sh: unknown option $1" >&2; usage ;;
    *) requested+=("$1") ;;
  esac
  shift
done

# Print a command the way a shell would read it back; run it unless this is a dry run.
run() {
  local arg out=+
  for arg in "$@"; do
    case $arg in
      *[!A-Za-z0-9_./:=@,+%-]*|'') out+=" '${arg//\'/\'\\\'\'}'" ;;
      *) out+=" $arg" ;;
    esac
  done
  echo "$out"
  [ "$dry_run" = 1 ] || "$@"
}

# -- what to deploy ----------------------------------------------------------------------

command -v python3 >/dev/null || die "python3 is missing: install Python 3 (it reads $SETTINGS)."
[ -f "$SETTINGS" ] || die "$SETTINGS is missing: it holds each function's deploy settings."

all_functions=()
for main in functions/*/main.py; do
  [ -f "$main" ] && all_functions+=("$(basename "$(dirname "$main")")")
done
[ ${#all_functions[@]} -gt 0 ] || die "no functions/<name>/main.py found."
if [ ${#requested[@]} -eq 0 ]; then
  functions=("${all_functions[@]}")
else
  for name in "${requested[@]}"; do
    [ -f "functions/$name/main.py" ] || die "no function named $name (functions/$name/main.py)."
  done
  functions=("${requested[@]}")
fi

# One line per function from infra/functions.json, the same entry Terraform reads.
declare -A INVOKER MEMORY CPU CONCURRENCY TIMEOUT MAX_INSTANCES SCHEDULE DESCRIPTION
while IFS=$'\t' read -r name invoker memory cpu concurrency timeout max schedule description; do
  INVOKER[$name]=$invoker MEMORY[$name]=$memory CPU[$name]=$cpu CONCURRENCY[$name]=$concurrency
  TIMEOUT[$name]=$timeout MAX_INSTANCES[$name]=$max SCHEDULE[$name]=$schedule
  DESCRIPTION[$name]=$description
done < <(python3 - "$SETTINGS" <<'PY'
import json, sys
for name, fn in json.load(open(sys.argv[1])).items():
    fields = [fn["invoker"], fn["memory"], fn["cpu"], fn["concurrency"], fn["timeout_seconds"],
              fn["max_instances"], fn.get("schedule", ""), fn["description"]]
    print("\t".join([name, *(str(f) for f in fields)]))
PY
)
for name in "${functions[@]}"; do
  [ -n "${INVOKER[$name]:-}" ] || die "functions/$name has no entry in $SETTINGS: add one (see docs/deploy.md)."
done

# -- staging -----------------------------------------------------------------------------

# build/<name>/ must deploy alone: only --source is uploaded, and a symlink or a ../ path
# does not survive the upload, so shared/ is copied in (symlinks resolved).
stage() {
  local name=$1 dest=$BUILD_DIR/$1 tmp
  mkdir -p "$BUILD_DIR"
  tmp=$(mktemp -d "$BUILD_DIR/.stage-$name.XXXXXX")
  cp -RL "functions/$name/." "$tmp/"
  cp -RL shared "$tmp/shared"
  cp -L requirements.txt "$tmp/requirements.txt"  # the lock: every package pinned, with hashes
  find "$tmp" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
  rm -rf "$dest"
  mv "$tmp" "$dest"
  chmod 755 "$dest"
}

for name in "${functions[@]}"; do
  if [ "$dry_run" = 1 ]; then
    echo "+ stage functions/$name -> $BUILD_DIR/$name (main.py, shared/, requirements.txt)"
  else
    stage "$name"
    echo "staged $BUILD_DIR/$name"
  fi
done
[ "$stage_only" = 1 ] && exit 0

# -- prerequisites -----------------------------------------------------------------------

command -v "$GCLOUD" >/dev/null \
  || die "gcloud is missing: install the Google Cloud CLI (docs/deploy.md, Prerequisites)."
account=$("$GCLOUD" config get-value account 2>/dev/null || true)
[ -n "$account" ] || die "gcloud has no active account: run gcloud auth login."
[ -n "$PROJECT" ] || PROJECT=$("$GCLOUD" config get-value project 2>/dev/null || true)
[ -n "$PROJECT" ] || die "no project: pass --project ID, set GOOGLE_CLOUD_PROJECT, or gcloud config set project ID."
[ -n "${CALENDAR_ID:-}" ] || die "CALENDAR_ID is not set: the calendar that holds the classes."

sa_email() { echo "$1@$PROJECT.iam.gserviceaccount.com"; }
fn_account() { sa_email "fn-${1//_/-}"; }
BUILDER=$(sa_email fn-builder)
SCHEDULER=$(sa_email scheduler-invoker)
TASKS=$(sa_email tasks-invoker)
QUEUE="projects/$PROJECT/locations/$REGION/queues/schedule-class"
SYNC_QUEUE="projects/$PROJECT/locations/$REGION/queues/calendar-sync"

missing=()
accounts=("$BUILDER")
for name in "${functions[@]}"; do
  accounts+=("$(fn_account "$name")")
  [ "${INVOKER[$name]}" = scheduler ] && accounts+=("$SCHEDULER")
  [ "${INVOKER[$name]}" = tasks ] && accounts+=("$TASKS")
done
for email in $(printf '%s\n' "${accounts[@]}" | sort -u); do
  "$GCLOUD" iam service-accounts describe "$email" --project="$PROJECT" --format='value(email)' \
    >/dev/null 2>&1 || missing+=("$email")
done
if [ ${#missing[@]} -gt 0 ]; then
  message="missing service accounts: ${missing[*]}; create them (and the secrets, Firestore, IAM) with: terraform -chdir=infra apply -var manage_functions=false (docs/deploy.md)."
  if [ "$dry_run" = 1 ]; then warn "$message"; else die "$message"; fi
fi
for secret in "${SECRET_IDS[@]}"; do
  version=$("$GCLOUD" secrets versions list "$secret" --project="$PROJECT" \
    --filter='state:ENABLED' --limit=1 --format='value(name)' 2>/dev/null || true)
  [ -n "$version" ] || warn "secret $secret has no enabled version yet: add one (docs/deploy.md, Secrets)."
done

# -- deploy ------------------------------------------------------------------------------

base_url="https://$REGION-$PROJECT.cloudfunctions.net"
# The values are not secret; secrets are read at run time from Secret Manager, so a rotated
# refresh token reaches running instances without a redeploy (hence no --set-secrets).
# "^;^" makes ";" the separator: ADMIN_EMAILS itself holds commas.
env_vars="^;^GOOGLE_CLOUD_PROJECT=$PROJECT"
env_vars+=";CALENDAR_ID=$CALENDAR_ID"
env_vars+=";CALENDAR_AUTH=${CALENDAR_AUTH:-oauth}"
env_vars+=";CALENDAR_IMPERSONATE_SUBJECT=${CALENDAR_IMPERSONATE_SUBJECT:-}"
env_vars+=";ADMIN_EMAILS=${ADMIN_EMAILS:-}"
env_vars+=";ID_TOKEN_AUDIENCE=${ID_TOKEN_AUDIENCE:-$base_url/list_events}"
env_vars+=";OAUTH_REDIRECT_URI=$base_url/oauth_callback"
env_vars+=";NOTIFICATIONS_URL=$base_url/calendar_notifications"
env_vars+=";PUBLIC_EVENTS_ENABLED=${PUBLIC_EVENTS_ENABLED:-false}"
env_vars+=";PUBLIC_CALENDAR_ID=${PUBLIC_CALENDAR_ID:-}"
# The queue between payments and Calendar, and the one holding the sync's deferred rounds
# (both created by Terraform, infra/main.tf).
env_vars+=";SCHEDULING_QUEUE=$QUEUE"
env_vars+=";SYNC_QUEUE=$SYNC_QUEUE"
env_vars+=";SCHEDULE_CLASS_URL=$base_url/schedule_class"
env_vars+=";TASKS_INVOKER_EMAIL=$TASKS"

# Scheduled functions check the scheduler's OIDC token themselves too (shared/services/channels.py).
scheduler_env() {
  [ "${INVOKER[$1]}" = scheduler ] || return 0
  echo ";SCHEDULER_AUDIENCE=$base_url/$1;SCHEDULER_INVOKER_EMAILS=$SCHEDULER"
}

# Refuse what the functions would refuse: the very check they run at first read
# (shared/config.py), over exactly the variables each function gets.
check_settings() {
  local IFS=';' pairs
  read -ra pairs <<< "${1#^;^}"
  env -i PATH="$PATH" PYTHONPATH="$PWD" "${pairs[@]}" python3 -c '
import os, sys
from shared.config import read_settings
from shared.errors import InvalidSettings
try:
    read_settings(os.environ)
except InvalidSettings as exc:
    sys.exit(f"deploy.sh: invalid setting: {exc.message}. Nothing was deployed.")
'
}
for name in "${functions[@]}"; do
  check_settings "$env_vars$(scheduler_env "$name")" || exit 1
done

for name in "${functions[@]}"; do
  case "${INVOKER[$name]}" in
    scheduler|tasks) access=--no-allow-unauthenticated ;;
    *) access=--allow-unauthenticated ;;
  esac
  run "$GCLOUD" functions deploy "$name" --gen2 --quiet \
    --project="$PROJECT" --region="$REGION" \
    --runtime="$RUNTIME" --entry-point="$name" --source="$BUILD_DIR/$name" --trigger-http \
    --service-account="$(fn_account "$name")" \
    --build-service-account="projects/$PROJECT/serviceAccounts/$BUILDER" \
    --memory="${MEMORY[$name]}" --cpu="${CPU[$name]}" --concurrency="${CONCURRENCY[$name]}" \
    --timeout="${TIMEOUT[$name]}s" --min-instances=0 --max-instances="${MAX_INSTANCES[$name]}" \
    --ingress-settings=all --set-env-vars="$env_vars$(scheduler_env "$name")" "$access"

  if [ "${INVOKER[$name]}" = tasks ]; then
    run "$GCLOUD" functions add-invoker-policy-binding "$name" \
      --project="$PROJECT" --region="$REGION" --member="serviceAccount:$TASKS"
  fi
  [ "${INVOKER[$name]}" = scheduler ] || continue
  run "$GCLOUD" functions add-invoker-policy-binding "$name" \
    --project="$PROJECT" --region="$REGION" --member="serviceAccount:$SCHEDULER"
  uri=$base_url/$name
  job=${name//_/-}
  if "$GCLOUD" scheduler jobs describe "$job" --project="$PROJECT" --location="$REGION" \
    --format='value(name)' >/dev/null 2>&1; then verb=update; else verb=create; fi
  run "$GCLOUD" scheduler jobs "$verb" http "$job" \
    --project="$PROJECT" --location="$REGION" \
    --schedule="${SCHEDULE[$name]}" --time-zone="$TIME_ZONE" \
    --uri="$uri" --http-method=POST \
    --oidc-service-account-email="$SCHEDULER" --oidc-token-audience="$uri" \
    --attempt-deadline="$((TIMEOUT[$name] + 20))s" --max-retry-attempts=1 --min-backoff=60s \
    --description="${DESCRIPTION[$name]}"
done

if [ "$dry_run" = 1 ]; then
  echo "dry run: nothing was staged or deployed."
else
  echo "deployed: ${functions[*]}"
  echo "OAuth redirect URI to register: $base_url/oauth_callback"
  echo "Mercado Pago webhook URL: $base_url/payment_webhook?source_news=webhooks"
fi
