#!/usr/bin/env bash
# End-to-end smoke on the running stack (ORCH_API_URL, ORCH_TOKEN, ORCH_TENANT,
# ORCH_NATS_URL): enqueue an orch-smoke job, a worker completes it, its event
# arrives on NATS when configured, /metrics counts it. Prints READY, or
# NOT READY: <reason> and exits 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
orch smoke "$@"
