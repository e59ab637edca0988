#!/usr/bin/env bash
# From nothing to a running admin on SQLite: install, migrate, import the sample data, print
# the receipts, create an admin login, and serve. Needs only Python 3.11+.
#   bash scripts/quickstart.sh                        # … and serve on http://127.0.0.1:8000/admin/
#   bash scripts/quickstart.sh --no-serve             # stop after the import (used by CI)
#   bash scripts/quickstart.sh --reset-admin-password # give the existing admin a new password
#
# Safe to run again at any time, on the same instance (OPENCHARGEBACK_HOME, default ./instance):
# it installs only when pyproject.toml changed, imports the sample files only into months that
# are still open (a closed or finalized month is left as it is; an open month's re-import of the
# same files changes nothing), keeps the admin's password unless asked, and serves the instance.
set -euo pipefail
cd "$(dirname "$0")/.."

serve=1
reset_password=0
for arg in "$@"; do
  case "$arg" in
    --no-serve) serve=0 ;;
    --reset-admin-password) reset_password=1 ;;
    *) echo "unknown option: $arg (known: --no-serve, --reset-admin-password)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Install once, and again only when the project's requirements changed.
stamp=.venv/.openchargeback-installed
wanted=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/openchargeback ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
  echo "$wanted" > "$stamp"
fi

export OPENCHARGEBACK_CONFIG=${OPENCHARGEBACK_CONFIG:-config.example.yaml}
export OPENCHARGEBACK_BASE_URL=${OPENCHARGEBACK_BASE_URL:-http://127.0.0.1:8000}
# This instance's own secret key, made once (production sets DJANGO_SECRET_KEY; docs/security.md).
home=${OPENCHARGEBACK_HOME:-instance}
if [ -z "${DJANGO_SECRET_KEY:-}${DJANGO_SECRET_KEY_FILE:-}" ]; then
  mkdir -p "$home"
  [ -s "$home/secret_key" ] || (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$home/secret_key")
  export DJANGO_SECRET_KEY_FILE="$home/secret_key"
fi
ocb=.venv/bin/openchargeback

$ocb migrate -v0

period_status() {  # open, closed, finalized, or new (no such month yet)
  $ocb periods list --json | .venv/bin/python -c '
import json, sys
statuses = {p["period"]: p["status"] for p in json.load(sys.stdin)}
print(statuses.get(sys.argv[1], "new"))' "$1"
}
# Only a month this instance doesn't have yet gets the sample files: a month that exists keeps
# whatever was done to it since (a restated delivery, reviews, a close), never overwritten.
for month in 2026-09 2026-10; do
  status=$(period_status "$month")
  if [ "$status" != "new" ]; then
    echo "== $month exists ($status): its charges stay as they are (no import)"
    continue
  fi
  for source in aws azure hpc storage; do
    $ocb ingest "sample_data/${source}_${month}.csv" -s "$source" -p "$month"
  done
done
$ocb periods list

admin_exists() {
  $ocb shell -v0 -c "from accounts.models import User; raise SystemExit(0 if User.objects.filter(username='admin').exists() else 1)" 2>/dev/null
}
if ! admin_exists; then
  password=${ADMIN_PASSWORD:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')}
  DJANGO_SUPERUSER_PASSWORD=$password $ocb createsuperuser --noinput --username admin --email admin@example.edu
  echo "Admin login: admin / $password"
elif [ "$reset_password" = 1 ]; then
  password=${ADMIN_PASSWORD:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')}
  OC_NEW_PASSWORD=$password $ocb shell -v0 -c "import os; from accounts.models import User; u = User.objects.get(username='admin'); u.set_password(os.environ['OC_NEW_PASSWORD']); u.save()"
  echo "Admin login: admin / $password (reset as asked)"
else
  echo "Admin login: admin (exists; its password is unchanged: --reset-admin-password gives a new one)"
fi

again="bash scripts/quickstart.sh"
[ -n "${OPENCHARGEBACK_HOME:-}" ] && again="OPENCHARGEBACK_HOME=$home $again"
echo "Serve this instance again later with:  $again"
echo "  (or: OPENCHARGEBACK_HOME=$home DJANGO_SECRET_KEY_FILE=${DJANGO_SECRET_KEY_FILE:-\$DJANGO_SECRET_KEY_FILE} OPENCHARGEBACK_CONFIG=$OPENCHARGEBACK_CONFIG OPENCHARGEBACK_BASE_URL=$OPENCHARGEBACK_BASE_URL $ocb serve)"
if [ "$serve" = 1 ]; then
  echo "Serving $home on $OPENCHARGEBACK_BASE_URL/admin/ (development server; Ctrl-C to stop)"
  exec $ocb serve 127.0.0.1:8000
fi
