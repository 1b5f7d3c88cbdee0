#!/usr/bin/env bash
# Installs what flintlock-ts needs on a Debian 12 host (as root) and builds it: the Debian packages
# that host-dependencies.txt lists for the given roles (only the missing ones; `extract` rows are
# unpacked into .cache/, never installed), then npm ci when node_modules is stale, then the build.
#
#   scripts/setup.sh [--packages-only | --no-build] [ROLE...]
#
# ROLE is a "who" of host-dependencies.txt (daemon, qemu, cloudhypervisor, firecracker, build, demo,
# test, ci); none means every role. `build` is always included unless --packages-only.
# --no-build: packages and npm ci, no TypeScript build (for callers that build anyway: `npm test`
# builds first).
# Safe to run again: whatever caches exist, it checks every package each time.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
compile=1
roles=()
for arg in "$@"; do
  case "$arg" in
    --packages-only) build=0 ;;
    --no-build) compile=0 ;;
    -*) echo "usage: $0 [--packages-only | --no-build] [ROLE...]" >&2; exit 2 ;;
    *) roles+=("$arg") ;;
  esac
done
all=$([ ${#roles[@]} = 0 ] && echo 1 || echo 0)
[ $build = 1 ] && roles+=(build)

# "package how" for each row of the list whose "who" column names one of the roles (every row
# when no role was given).
rows() {
  awk -v want="${roles[*]}" -v all="$all" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) wanted[w[i]] = 1 }
    /^[ \t]*(#|$)/ { next }
    {
      keep = all == 1
      n = split($3, who, ",")
      for (i = 1; i <= n; i++) if (who[i] in wanted) keep = 1
      if (keep) print $1, $2
    }' host-dependencies.txt
}
known_roles="daemon qemu cloudhypervisor firecracker tls build demo test ci"
for r in "${roles[@]}"; do
  case " $known_roles " in *" $r "*) ;; *) echo "setup.sh: unknown role \"$r\" (known: $known_roles)" >&2; exit 2 ;; esac
done

install=()
extract=()
while read -r pkg how; do
  case "$how" in
    install) dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || install+=("$pkg") ;;
    extract) extract+=("$pkg") ;;
    *) echo "setup.sh: host-dependencies.txt: unknown method \"$how\" for $pkg" >&2; exit 1 ;;
  esac
done < <(rows)

if [ ${#install[@]} -gt 0 ]; then
  echo "==> apt-get install ${install[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${install[@]}"
fi
for pkg in "${extract[@]}"; do
  scripts/extract-package.sh "$pkg" >/dev/null
done

[ $build = 1 ] || exit 0

command -v node >/dev/null || { echo "Node.js 20 is required (node not found)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "Node.js >= 20 is required (found $(node --version))" >&2; exit 1; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
[ $compile = 1 ] || exit 0
echo "==> npm run build"
npm run build
