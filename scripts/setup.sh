#!/usr/bin/env bash
# Installs what flintlock-ts needs on a Debian 12 host (as root) and builds it:
# Debian packages, npm dependencies (npm ci), generated code check, TypeScript build.
# Safe to run again: it installs only what is missing and rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: host networking (ip -json, netns, tuntap); openssl: test certificates;
# python3/make/g++: better-sqlite3's native build (no prebuilt binary is downloadable offline).
# dosfstools/mtools: the cloud-init cidata disk (FAT, built without mounting).
APT_PACKAGES=(iproute2 openssl ca-certificates python3 make g++ coreutils dosfstools mtools)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v node >/dev/null || { echo "Node.js 20 is required (node not found)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "Node.js >= 20 is required (found $(node --version))" >&2; exit 1; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
echo "==> npm run build"
npm run build
