#!/usr/bin/env bash
# The README's first command: install what is missing, build, and bring up a lab whose
# pods ping each other. Run `dist/weave lab down` to remove it.
set -euo pipefail
cd "$(dirname "$0")/.."
WEAVE_SETUP_MINIMAL=1 bash scripts/setup.sh
name=${LAB_NAME:-lab}
if [ -f "/run/weave-lab/$name/lab.json" ]; then
  echo "lab '$name' is already up; showing it (remove with: dist/weave lab down --name $name)"
  exec dist/weave lab status --name "$name"
fi
exec dist/weave lab up --name "$name" "$@"
