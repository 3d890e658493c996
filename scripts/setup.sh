#!/usr/bin/env bash
# Installs what weave needs on a Debian machine that has only Node and npm, then builds.
# Idempotent and quiet when everything is already there. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the lab and tests need the kernel tools; the e2e tests need real CNI
# clients (podman, libcni, containerd's CRI) and Debian's reference plugins; the lab's
# kubectl checklist needs a kubectl (Debian's kubernetes-client where there is none).
# Encryption: wireguard-go (userspace WireGuard: these kernels have none) and wg; tcpdump
# for the tests' captures on the underlay.
# Metrics: a real Prometheus and promtool (Debian's prometheus; the test starts its own,
# by pid) and curl to read expositions.
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in iproute2 iputils-ping nftables iperf3 ethtool util-linux jq \
           containernetworking-plugins iptables podman runc busybox-static containerd \
           golang-go golang-github-appc-cni-dev wireguard-go wireguard-tools tcpdump \
           prometheus curl; do
  have "$pkg" || need+=("$pkg")
done
command -v kubectl >/dev/null || have kubernetes-client || need+=(kubernetes-client)
if [ "${WEAVE_SETUP_MINIMAL:-}" = 1 ]; then
  # The quick start needs only the lab's tools (wireguard-go: a lab with a password).
  keep=(); for p in "${need[@]}"; do case "$p" in iproute2|iputils-ping|nftables|iperf3|util-linux|kubernetes-client|wireguard-go|wireguard-tools) keep+=("$p");; esac; done
  need=("${keep[@]}")
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Bun and the libraries, from the npm registry (bun is a devDependency).
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

# dist/weave and dist/cni/weave-net, rebuilt when any source is newer.
if [ ! -x dist/weave ] || [ -n "$(find cli.ts commands net scripts manifests package.json -newer dist/weave -print -quit)" ]; then
  echo "setup: building dist/weave" >&2
  node_modules/.bin/bun run build >/dev/null
fi
