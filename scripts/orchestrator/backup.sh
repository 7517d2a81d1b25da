#!/usr/bin/env bash
# Backs up the orchestrator's ledger.
#   ORCH_DATABASE_URL set: pg_dump in custom format (online, consistent) to
#     OUT_DIR/orch-<UTC time>.dump, with a .sha256 beside it; as the schema owner
#     (ORCH_MIGRATION_DATABASE_URL) when set: the server's role is refused rows under
#     row-level security once pg_dump turns it off.
#   unset (embedded PostgreSQL under ORCH_DATA_DIR, default ./.orch): a cold copy,
#     OUT_DIR/orch-<UTC time>.tar.gz of the data directory; stop `orch serve` first
#     (the embedded server ships no pg_dump, and a running data directory is not
#     a consistent file copy).
# MongoDB: not applicable; the orchestrator keeps nothing in MongoDB (ORCH_MONGO_URL is only probed).
# Usage: backup.sh [OUT_DIR]   (default out/orchestrator-backup). Prints the file written.
set -euo pipefail
out_dir="${1:-out/orchestrator-backup}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out_dir"

if [ -n "${ORCH_DATABASE_URL:-}" ]; then
  url="${ORCH_MIGRATION_DATABASE_URL:-$ORCH_DATABASE_URL}"
  file="$out_dir/orch-$stamp.dump"
  pg_dump --format=custom --no-owner --file="$file" "$url"
  psql "$url" -AtF' ' -c "SELECT 'jobs', state, count(*) FROM orch.jobs GROUP BY state ORDER BY state" >&2
else
  data_dir="${ORCH_DATA_DIR:-./.orch}"
  if [ ! -d "$data_dir" ]; then echo "backup: no ORCH_DATABASE_URL and no data directory $data_dir" >&2; exit 1; fi
  if [ -f "$data_dir/pg/postmaster.pid" ]; then
    echo "backup: the embedded PostgreSQL in $data_dir is running; stop orch serve first (or set ORCH_DATABASE_URL for an online dump)" >&2; exit 1
  fi
  file="$out_dir/orch-$stamp.tar.gz"
  tar -czf "$file" -C "$data_dir" .
fi
(cd "$(dirname "$file")" && sha256sum "$(basename "$file")" > "$(basename "$file").sha256")
echo "$file"
