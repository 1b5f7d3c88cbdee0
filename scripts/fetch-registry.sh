#!/usr/bin/env bash
# Prints the path of Debian's docker-registry binary for the end-to-end tests and the demo,
# unpacking the package into .cache/ first if needed (scripts/extract-package.sh: extracted, not
# installed, so no system service is enabled).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "$("$here/extract-package.sh" docker-registry)/usr/bin/docker-registry"
