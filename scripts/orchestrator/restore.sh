#!/usr/bin/env bash
# Restores a backup made by backup.sh.
#   FILE.dump into ORCH_DATABASE_URL, which must be an empty database (no orch
#     schema): restoring over a live ledger would mix two histories. Restored as
#     ORCH_MIGRATION_DATABASE_URL (the schema owner) when set.
#   FILE.tar.gz into ORCH_DATA_DIR (default ./.orch), which must not exist or be empty.
# The .sha256 beside FILE is checked first when present. Start `orch serve` afterwards:
# leases held at backup time expire and their jobs retry; nothing is lost.
# Usage: restore.sh FILE
set -euo pipefail
file="${1:?usage: restore.sh FILE}"
if [ ! -f "$file" ]; then echo "restore: no such file: $file" >&2; exit 1; fi
if [ -f "$file.sha256" ]; then
  (cd "$(dirname "$file")" && sha256sum --check --status "$(basename "$file").sha256") || { echo "restore: $file does not match its .sha256" >&2; exit 1; }
fi

case "$file" in
  *.dump)
    : "${ORCH_DATABASE_URL:?restore: set ORCH_DATABASE_URL to the (empty) database to restore into}"
    ORCH_DATABASE_URL="${ORCH_MIGRATION_DATABASE_URL:-$ORCH_DATABASE_URL}"
    if [ "$(psql "$ORCH_DATABASE_URL" -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'orch'")" != "0" ]; then
      echo "restore: the database already has an orch schema; restore into an empty database" >&2; exit 1
    fi
    # the dump grants to orch_tenant_reader (row-level security) and orch_service (the server's role,
    # which the server sets on connect); roles live outside databases
    psql "$ORCH_DATABASE_URL" -q -v ON_ERROR_STOP=1 \
      -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orch_tenant_reader') THEN CREATE ROLE orch_tenant_reader NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF; END \$\$" \
      -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orch_service') THEN CREATE ROLE orch_service NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END \$\$" \
      -c "GRANT orch_tenant_reader TO CURRENT_USER" -c "GRANT orch_service TO CURRENT_USER" -c "GRANT orch_tenant_reader TO orch_service" >/dev/null
    pg_restore --exit-on-error --no-owner --dbname="$ORCH_DATABASE_URL" "$file"
    psql "$ORCH_DATABASE_URL" -AtF' ' -c "SELECT 'jobs', state, count(*) FROM orch.jobs GROUP BY state ORDER BY state" >&2
    ;;
  *.tar.gz)
    data_dir="${ORCH_DATA_DIR:-./.orch}"
    if [ -d "$data_dir" ] && [ -n "$(ls -A "$data_dir")" ]; then echo "restore: $data_dir is not empty" >&2; exit 1; fi
    mkdir -p "$data_dir"
    tar -xzf "$file" -C "$data_dir"
    ;;
  *) echo "restore: $file is neither a .dump nor a .tar.gz made by backup.sh" >&2; exit 1 ;;
esac
echo "restored $file"
