# Sourced by the scripts here: `orch` runs this checkout's CLI from any directory.
# ORCH_BIN overrides it (an installed `orch`, say). From a source checkout the
# TypeScript sources run through tsx, so the scripts never run a stale build.
ORCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

orch() {
  if [ -n "${ORCH_BIN:-}" ]; then
    "$ORCH_BIN" "$@"
  elif [ -f "$ORCH_ROOT/src/cli/main.ts" ] && [ -f "$ORCH_ROOT/node_modules/tsx/dist/loader.mjs" ]; then
    node --import "$ORCH_ROOT/node_modules/tsx/dist/loader.mjs" "$ORCH_ROOT/src/cli/main.ts" "$@"
  elif [ -f "$ORCH_ROOT/dist/cli/main.js" ]; then
    node "$ORCH_ROOT/dist/cli/main.js" "$@"
  else
    command orch "$@"
  fi
}
