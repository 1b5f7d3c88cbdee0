#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 host, as root (network tests need network namespaces,
# the end-to-end tests boot microVMs under QEMU). Installs and builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> guest image and registry for the end-to-end tests"
scripts/build-guest-image.sh
scripts/fetch-registry.sh >/dev/null
echo "==> npm test"
npm test
