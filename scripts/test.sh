#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 host, as root (network tests need network namespaces,
# the end-to-end tests boot microVMs under QEMU). Installs and builds what it needs first
# (scripts/setup.sh: the packages host-dependencies.txt lists for the tests).
#
#   scripts/test.sh [--no-setup]     --no-setup: test the host as it is (no package installs, no
#                                    npm ci), e.g. to see what a missing package does to the suite
#
# Bounded in time whatever is missing or stuck: each test file has 10 minutes (and is killed with
# everything it started after that), the whole run 30. With CI=true a test whose prerequisite is
# missing fails, naming it and its package; otherwise it is skipped, and listed at the end with
# what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") scripts/setup.sh --no-build daemon qemu cloudhypervisor firecracker demo test ;; # npm test builds
  --no-setup) ;;
  *) echo "usage: $0 [--no-setup]" >&2; exit 2 ;;
esac
echo "==> guest images and registry for the end-to-end tests"
scripts/build-guest-image.sh
# The sample Debian image: minutes when its script changed, so outside the test files' 10 minutes.
scripts/build-debian-image.sh
scripts/fetch-registry.sh >/dev/null
echo "==> npm test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
timeout --kill-after=30s 30m npm test 2>&1 | tee "$out" || status=$?
if grep -q '# SKIP' "$out"; then
  echo "==> skipped (install what they name to run them):"
  grep -E '^ *ok [0-9]+ - .* # SKIP' "$out" | sed -E 's/^ *ok [0-9]+ - /    /'
fi
exit "$status"
