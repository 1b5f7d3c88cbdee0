#!/bin/sh
# Installs the built daemon (run `npm ci && npm run build` first) for operators:
#   $PREFIX        the daemon: dist/, bin/, package.json and production node_modules  (/opt/flintlockd)
#   $BINDIR        `flintlockd` and `fl` wrappers that run it with this Node.js      (/usr/local/bin)
#   $SYSCONFDIR    config.example.yaml, and config.yaml from it when there is none   (/etc/opt/flintlockd)
#   $UNITDIR       flintlockd.service                                                (/etc/systemd/system)
# DESTDIR stages everything below another root (packaging, tests); the installed files still
# name the final paths. An existing config.yaml is never overwritten.
#
#   sudo scripts/install.sh && sudo systemctl daemon-reload && sudo systemctl enable --now flintlockd
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/flintlockd}
BINDIR=${BINDIR:-/usr/local/bin}
SYSCONFDIR=${SYSCONFDIR:-/etc/opt/flintlockd}
UNITDIR=${UNITDIR:-/etc/systemd/system}
NODE=${NODE:-$(command -v node || true)}

fail() { echo "install.sh: $*" >&2; exit 1; }
[ -n "$NODE" ] || fail "node (Node.js 20 or later) is not on PATH; set NODE=/path/to/node"
[ -f "$SRC/dist/cli/flintlockd/main.js" ] || fail "$SRC/dist is missing: run npm run build first"
[ -d "$SRC/node_modules" ] || fail "$SRC/node_modules is missing: run npm ci first"

echo "installing flintlockd into ${DESTDIR}${PREFIX}"
install -d -m 0755 "${DESTDIR}${PREFIX}" "${DESTDIR}${BINDIR}" "${DESTDIR}${SYSCONFDIR}" "${DESTDIR}${UNITDIR}"
# A fresh copy of the program each time (not of the config): no file of an older release stays.
rm -rf "${DESTDIR}${PREFIX}/dist" "${DESTDIR}${PREFIX}/bin" "${DESTDIR}${PREFIX}/node_modules"
cp -R "$SRC/dist" "$SRC/bin" "${DESTDIR}${PREFIX}/"
cp "$SRC/package.json" "$SRC/package-lock.json" "$SRC/host-dependencies.txt" "${DESTDIR}${PREFIX}/"
cp -a "$SRC/node_modules/." "${DESTDIR}${PREFIX}/node_modules/"
# Development packages (compilers, linters, test tools) are not needed to run: removed offline.
if command -v npm >/dev/null 2>&1; then
  (cd "${DESTDIR}${PREFIX}" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --offline >/dev/null)
fi

for name in flintlockd fl; do
  cat >"${DESTDIR}${BINDIR}/$name.tmp" <<WRAPPER
#!/bin/sh
# Installed by flintlock-ts scripts/install.sh: runs $PREFIX/bin/$name with this Node.js.
exec "$NODE" "$PREFIX/bin/$name" "\$@"
WRAPPER
  chmod 0755 "${DESTDIR}${BINDIR}/$name.tmp"
  mv "${DESTDIR}${BINDIR}/$name.tmp" "${DESTDIR}${BINDIR}/$name"
done

sed -e "s#/usr/local/bin/flintlockd#${BINDIR}/flintlockd#g" -e "s#/etc/opt/flintlockd#${SYSCONFDIR}#g" \
  "$SRC/packaging/flintlockd.service" >"${DESTDIR}${UNITDIR}/flintlockd.service"
chmod 0644 "${DESTDIR}${UNITDIR}/flintlockd.service"

install -m 0644 "$SRC/packaging/config.example.yaml" "${DESTDIR}${SYSCONFDIR}/config.example.yaml"
if [ -e "${DESTDIR}${SYSCONFDIR}/config.yaml" ]; then
  echo "kept the existing ${DESTDIR}${SYSCONFDIR}/config.yaml (the new example is config.example.yaml beside it)"
else
  # 0600: the file may come to hold basic-auth-token and registry credentials.
  install -m 0600 "$SRC/packaging/config.example.yaml" "${DESTDIR}${SYSCONFDIR}/config.yaml"
  echo "wrote ${DESTDIR}${SYSCONFDIR}/config.yaml: set parent-iface or bridge-name, and TLS (or insecure), before starting"
fi
echo "done: systemctl daemon-reload && systemctl enable --now flintlockd"
