#!/bin/sh
# Run once by the postgres image when its data folder is new: the role workers and the
# desk connect as. It owns nothing; `sharing-audit db grant sharing_app` (the migrate
# service) gives it exactly what it needs (deploy/README.md, "Least privilege").
set -eu
psql -v ON_ERROR_STOP=1 -v password="$SHARING_AUDIT_APP_DB_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE sharing_app LOGIN PASSWORD :'password';
SQL
