#!/usr/bin/env bash
# `make demo`: from a fresh clone to a running server with demo data, nothing else to type.
#   - the virtualenv (scripts/venv.sh), the SQLite store in var/ (or DATABASE_URL if set);
#   - fixtures/demo.json loaded (loading it again is harmless: it updates in place);
#   - a Django admin login `admin` (password: DEMO_ADMIN_PASSWORD, default "admin");
#   - the server on 127.0.0.1:PORT (default 8000).
#
# fixtures/demo.json is generated. To make it again (same bytes):
#   .venv/bin/python manage.py generate_dataset --customers 30 --depth 4 --legs 3000 \
#       --days 60 --seed 1 --out fixtures/demo.json
# Its calls fall in the 60 days before 2026-11-01 00:00 UTC (DEMO_END below); every demo
# user's password is "secret".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

PORT="${PORT:-8000}"
ADMIN_PASSWORD="${DEMO_ADMIN_PASSWORD:-admin}"
DEMO_END=1793491200
DEMO_START=$((DEMO_END - 60 * 86400))
# runserver serves the admin's CSS and JavaScript only with DEBUG on; the development
# SECRET_KEY is fine for a server that only listens on 127.0.0.1.
export DEBUG="${DEBUG:-1}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:SECRET_KEY is not set}"
py=.venv/bin/python

$py manage.py migrate --noinput -v 0
echo "Loading fixtures/demo.json (hashing the demo users' passwords takes a few seconds)..."
$py manage.py import_dataset fixtures/demo.json
DEMO_ADMIN_PASSWORD="$ADMIN_PASSWORD" $py manage.py shell --no-imports -c '
import os
from django.contrib.auth import get_user_model

admin, _ = get_user_model().objects.get_or_create(username="admin")
admin.is_active = admin.is_staff = admin.is_superuser = True
admin.set_password(os.environ["DEMO_ADMIN_PASSWORD"])
admin.save()
'
users=$($py -c '
import json
users = json.load(open("fixtures/demo.json"))["users"]
print(", ".join(u["username"] for u in users))
')

base="http://127.0.0.1:$PORT"
cat <<EOF

  Admin:     $base/admin/   login: admin / $ADMIN_PASSWORD
  API user:  owner / secret (the system owner: sees every call)
  Others:    $users
             (all with password "secret"; c<id>-<kind> belongs to customer <id>)
  Try:
    curl '$base/api/json/cdrs/list/?auth_username=owner;auth_password=secret;start=$DEMO_START;end=$DEMO_END;limit=5'

EOF
exec $py manage.py runserver "127.0.0.1:$PORT"
