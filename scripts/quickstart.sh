#!/usr/bin/env bash
# From nothing to a running admin on SQLite: install, migrate, import the sample data, print
# the receipts, create an admin login, and serve. Needs only Python 3.11+.
#   bash scripts/quickstart.sh            # … and serve on http://127.0.0.1:8000/admin/
#   bash scripts/quickstart.sh --no-serve # stop after the import (used by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export OPENCHARGEBACK_CONFIG=${OPENCHARGEBACK_CONFIG:-config.example.yaml}
# This instance's own secret key, made once (production sets DJANGO_SECRET_KEY; docs/security.md).
home=${OPENCHARGEBACK_HOME:-instance}
if [ -z "${DJANGO_SECRET_KEY:-}${DJANGO_SECRET_KEY_FILE:-}" ]; then
  mkdir -p "$home"
  [ -s "$home/secret_key" ] || (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$home/secret_key")
  export DJANGO_SECRET_KEY_FILE="$home/secret_key"
fi
ocb=.venv/bin/openchargeback

$ocb migrate -v0
for month in 2026-09 2026-10; do
  for source in aws azure hpc storage; do
    $ocb ingest "sample_data/${source}_${month}.csv" -s "$source" -p "$month"
  done
done
$ocb periods list

password=${ADMIN_PASSWORD:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')}
if ! $ocb shell -c "from accounts.models import User; raise SystemExit(0 if User.objects.filter(username='admin').exists() else 1)" 2>/dev/null; then
  DJANGO_SUPERUSER_PASSWORD=$password $ocb createsuperuser --noinput --username admin --email admin@example.edu
  echo "Admin login: admin / $password"
else
  echo "Admin login: admin (already exists; reset with: $ocb changepassword admin)"
fi

if [ "${1:-}" != "--no-serve" ]; then
  echo "Serving on http://127.0.0.1:8000/admin/ (Ctrl-C to stop)"
  DJANGO_DEBUG=1 exec $ocb serve 127.0.0.1:8000
fi
