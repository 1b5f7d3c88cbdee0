#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 host, as root (network tests need network namespaces).
# Installs and builds what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> npm test"
npm test
