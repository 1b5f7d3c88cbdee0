#!/usr/bin/env bash
# Unpacks a Debian package into .cache/<package>/ (apt-get download + dpkg-deb -x) without
# installing it: for packages whose installation would do more than we want (docker-registry's
# would enable a system service listening on every interface). Prints the directory.
#
#   scripts/extract-package.sh PACKAGE
set -euo pipefail
pkg=${1:?usage: $0 PACKAGE}
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../.cache/$pkg"
if [ ! -f "$dest/.extracted" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt-get download warns "Download is performed unsandboxed as root": harmless.
  (cd "$work" && { apt-get download -q "$pkg" 2>&1 || { apt-get update -q && apt-get download -q "$pkg"; }; } | grep -v unsandboxed >&2 || true)
  ls "$work"/"${pkg}"_*.deb >/dev/null 2>&1 || { echo "extract-package.sh: could not download $pkg" >&2; exit 1; }
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg-deb -x "$work"/"${pkg}"_*.deb "$dest"
  basename "$work"/"${pkg}"_*.deb > "$dest/.extracted"
fi
cd "$dest" && pwd
