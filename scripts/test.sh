#!/usr/bin/env bash
# The whole test suite: the typecheck, the formatter and linter (Biome; a badly formatted
# file is a failed test), unit, host (real namespaces, root) and end-to-end (the lab,
# kubectl, podman, libcni, containerd). Ends with the line CI reads: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
export PATH="$PWD/node_modules/.bin:$PATH"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
node_modules/.bin/tsc -p . && typecheck=0 || typecheck=1
node_modules/.bin/biome ci --error-on-warnings --colors=off . && lint=0 || lint=1
bun test --timeout 120000 "$@" tests/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
pass=$(grep -Eo '^ *[0-9]+ pass' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
fail=$(grep -Eo '^ *[0-9]+ fail' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
if [ "$typecheck" = 1 ]; then echo "typecheck failed"; fail=$((fail + 1)); else pass=$((pass + 1)); fi
if [ "$lint" = 1 ]; then echo "lint failed (npm run lint shows why; npm run format fixes the layout)"; fail=$((fail + 1)); else pass=$((pass + 1)); fi
if [ "$status" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
echo "${pass} passed, ${fail} failed"
[ "$status" = 0 ] && [ "$typecheck" = 0 ] && [ "$lint" = 0 ]
