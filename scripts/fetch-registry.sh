#!/usr/bin/env bash
# Puts Debian's docker-registry binary in .cache/docker-registry/ (apt-get download + dpkg-deb -x)
# for the end-to-end tests and the demo. Extracted, not installed: installing the package would
# enable a system service listening on every interface.
#
#   scripts/fetch-registry.sh      prints the path of the binary
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../.cache/docker-registry"
bin="$dest/usr/bin/docker-registry"
if [ ! -x "$bin" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download -q docker-registry 2>&1 || { apt-get update -q && apt-get download -q docker-registry; }; } | grep -v unsandboxed >&2 || true)
  mkdir -p "$dest"
  dpkg-deb -x "$work"/docker-registry_*.deb "$dest"
fi
echo "$(cd "$(dirname "$bin")" && pwd)/docker-registry"
