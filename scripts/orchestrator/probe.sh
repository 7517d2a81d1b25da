#!/usr/bin/env bash
# Synthetic probe (daily cron): PostgreSQL ping (ORCH_DATABASE_URL), MongoDB ping
# (ORCH_MONGO_URL, skipped when unset), NATS publish round trip and JetStream
# (ORCH_NATS_URL), and the orchestrator's /readyz (ORCH_API_URL, default
# http://127.0.0.1:8080). Writes out/orchestrator-probe/status.txt under the
# current directory; exits 1 when a configured check fails.
# Extra arguments go to `orch probe` (e.g. --out FILE, --timeout 10s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
orch probe "$@"
