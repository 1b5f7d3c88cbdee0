#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 host, as root (network tests need network namespaces,
# the end-to-end tests boot microVMs under QEMU). Installs and builds what it needs first
# (scripts/setup.sh: the packages host-dependencies.txt lists for the tests).
#
# Bounded in time whatever is missing or stuck: each test file has 10 minutes (and is killed with
# everything it started after that), the whole run 30. With CI=true a test whose prerequisite is
# missing fails, naming it and its package; otherwise it is skipped with what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh daemon qemu cloudhypervisor firecracker demo test
echo "==> guest image and registry for the end-to-end tests"
scripts/build-guest-image.sh
scripts/fetch-registry.sh >/dev/null
echo "==> npm test"
timeout --kill-after=30s 30m npm test
