#!/usr/bin/env bash
# Restart drill (after each deploy): starts its own orchestrator on
# ORCH_DATABASE_URL (or an embedded PostgreSQL in a temporary directory, or
# --data-dir DIR), writes queued jobs, jobs mid-lease and DLQ entries, stops
# it (with the embedded PostgreSQL it owns) and starts it again, checks that
# every job, lease, DLQ entry and event survived, runs smoke, and cleans up
# what it wrote. Prints READY, or NOT READY: <reason> and exits 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
orch replay-smoke "$@"
