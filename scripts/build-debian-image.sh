#!/usr/bin/env bash
# Builds the sample guest: a Debian 12 (bookworm) microVM image made only from Debian packages
# (mmdebstrap from deb.debian.org): the cloud kernel, an initramfs-tools initrd with the virtio
# modules, and a root filesystem with systemd, systemd-networkd and Debian's cloud-init (NoCloud).
# Optionally pushes it to an OCI registry as two images, the way CAPMVM's templates use them:
#
#   <prefix>/debian12-kernel:<tag>   boot/vmlinuz, boot/initrd       (kernel.image / initrd.image)
#   <prefix>/debian12-root:<tag>     the root filesystem tree         (root_volume container_source)
#
#   scripts/build-debian-image.sh [--push HOST:PORT/PREFIX[:TAG]] [OUT]     (run as root)
#
# OUT (default <repo>/.cache/debian12): vmlinuz, initrd.img, rootfs.tar, packages.txt, debs/ (never
# committed: .cache/ is ignored). Idempotent: the build is skipped when OUT/.stamp holds this
# script's sha256 (edit the script and it builds again). TAG defaults to `latest`; the push is over
# plain HTTP (scripts/oci-push.ts), for local registries.
#
# Small on purpose (no recommends, no docs, man pages or locales): ~120 MiB unpacked, built in 2-4
# minutes. No password and no SSH server: log in with cloud-init `users` (an ssh key) after adding
# openssh-server with EXTRA_PACKAGES="openssh-server".
#
# What the guest prints on its serial console once cloud-init's final stage is done (the
# flintlock-report unit; one line each; the e2e test and the README read them):
#   FLINTLOCK-DEBIAN-HOSTNAME <hostname>
#   FLINTLOCK-DEBIAN-INSTANCE-ID <cloud-init's instance id>
#   FLINTLOCK-DEBIAN-ADDR <ifname> <mac> <ip/prefix>      every global IPv4/IPv6 address
#   FLINTLOCK-DEBIAN-NETWORKD <file>                      each systemd-networkd .network file (cloud-init's)
#   FLINTLOCK-DEBIAN-PROVIDER-ID <text>                   /etc/flintlock/provider-id, when user-data wrote it
#   FLINTLOCK-DEBIAN-CLOUD-INIT <status> <errors>         `cloud-init status`, and its error count
#   FLINTLOCK-DEBIAN-FINAL <seconds since boot>          when the report started; the report's last line
# and once the boot is over: FLINTLOCK-DEBIAN-BOOT <systemd-analyze time>, FLINTLOCK-DEBIAN-BLAME
# <time> <unit> for the slowest units.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self=$here/$(basename "$0")

# --- inside mmdebstrap: configure the tree at $1 (the customize hook runs this script itself) ---
customize() {
  local R=$1
  case $R in /*/root) ;; *) echo "build-debian-image.sh --customize: refusing \"$R\" (not a build tree)" >&2; exit 1 ;; esac
  # NoCloud only (no probing of other clouds' metadata services); networkd renders network-config.
  mkdir -p "$R/etc/cloud/cloud.cfg.d"
  cat > "$R/etc/cloud/cloud.cfg.d/90-flintlock.cfg" <<'CFG'
# flintlock microVM: cloud-init data comes from the `cidata` disk (NoCloud) or Firecracker's MMDS.
datasource_list: [NoCloud, None]
# The image's own locale: cloud-init's default (en_US.UTF-8) would run locale-gen at every first boot.
locale: C.UTF-8
system_info:
  network:
    renderers: [networkd]
    activators: [networkd]
CFG
  # No SSH server unless asked for: no host keys to generate (cloud-init would warn for each type).
  case " ${EXTRA_PACKAGES:-} " in
    *" openssh-server "*) ;;
    *) printf 'ssh_genkeytypes: []\n' >> "$R/etc/cloud/cloud.cfg.d/90-flintlock.cfg" ;;
  esac
  echo debian > "$R/etc/hostname"
  echo LANG=C.UTF-8 > "$R/etc/default/locale"
  # Newer than /usr: ConditionNeedsUpdate= units (systemd-hwdb-update, ldconfig) have nothing to do
  # at first boot (udev's postinst built the hwdb, dpkg's trigger ran ldconfig).
  touch "$R/etc/.updated" "$R/var/.updated"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

  cat > "$R/usr/local/sbin/flintlock-report" <<'REPORT'
#!/bin/sh
# Reports what cloud-init did on the serial console (scripts/build-debian-image.sh lists the lines).
up=$(cut -d' ' -f1 /proc/uptime)
{
  echo "FLINTLOCK-DEBIAN-HOSTNAME $(cat /proc/sys/kernel/hostname)"
  echo "FLINTLOCK-DEBIAN-INSTANCE-ID $(cat /var/lib/cloud/data/instance-id 2>/dev/null)"
  ip -o addr show scope global | while read -r _ ifname _ addr _; do
    echo "FLINTLOCK-DEBIAN-ADDR $ifname $(cat "/sys/class/net/$ifname/address") $addr"
  done
  for f in /etc/systemd/network/*.network; do [ -f "$f" ] && echo "FLINTLOCK-DEBIAN-NETWORKD ${f##*/}"; done
  [ -f /etc/flintlock/provider-id ] && echo "FLINTLOCK-DEBIAN-PROVIDER-ID $(cat /etc/flintlock/provider-id)"
  status=$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')
  errors=$(python3 -c 'import json; print(len(json.load(open("/run/cloud-init/result.json"))["v1"]["errors"]))' 2>/dev/null || echo '?')
  echo "FLINTLOCK-DEBIAN-CLOUD-INIT ${status:-unknown} $errors"
  # Last: a reader that sees this line has the whole report.
  echo "FLINTLOCK-DEBIAN-FINAL $up"
} > /dev/console 2>&1
# Boot times only exist once the boot (this unit included) is over: from a transient unit.
systemd-run --quiet --no-block --unit=flintlock-boot-times /bin/sh -c \
  'systemctl is-system-running --wait >/dev/null 2>&1
   { echo "FLINTLOCK-DEBIAN-BOOT $(systemd-analyze time | head -n 1)"
     systemd-analyze blame | head -n 8 | sed "s/^ */FLINTLOCK-DEBIAN-BLAME /"; } > /dev/console 2>&1' || true
REPORT
  chmod 755 "$R/usr/local/sbin/flintlock-report"
  cat > "$R/etc/systemd/system/flintlock-report.service" <<'UNIT'
[Unit]
Description=Report cloud-init's results on the serial console (flintlock sample image)
# cloud-final.service runs after multi-user.target: wanted by cloud-init.target, as it is.
After=cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/flintlock-report

[Install]
WantedBy=cloud-init.target
UNIT
  chroot "$R" systemctl enable systemd-networkd.service systemd-resolved.service flintlock-report.service
  # Nothing periodic in a short-lived guest.
  chroot "$R" systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
  # e2scrub_reap looks for LVM snapshots left by e2scrub (there is no LVM here): 30 s of a TCG boot.
  chroot "$R" systemctl mask e2scrub_reap.service
}
if [ "${1:-}" = --customize ]; then
  customize "$2"
  exit 0
fi

push=""
while [ $# -gt 0 ]; do
  case $1 in
    --push) push=${2:?--push needs HOST:PORT/PREFIX[:TAG]}; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    -*) echo "usage: $0 [--push HOST:PORT/PREFIX[:TAG]] [OUT]" >&2; exit 2 ;;
    *) break ;;
  esac
done
OUT=${1:-$here/../.cache/debian12}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
stamp=$( (sha256sum "$self" | cut -d' ' -f1; echo "${EXTRA_PACKAGES:-}") | sha256sum | cut -d' ' -f1)

built() { [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -s "$OUT/rootfs.tar" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; }

build() {
  if [ "$(id -u)" != 0 ]; then
    echo "build-debian-image.sh: must run as root (mmdebstrap in root mode)" >&2
    exit 1
  fi
  if ! command -v mmdebstrap >/dev/null; then
    echo "build-debian-image.sh: mmdebstrap not found: install the Debian package mmdebstrap (scripts/setup.sh test)" >&2
    exit 1
  fi
  local work started
  started=$(date +%s)
  work=$(mktemp -d "$OUT/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  local R=$work/root

  # initramfs-tools: only the modules a flintlock microVM needs to reach its root disk (QEMU's
  # microvm machine and Firecracker put virtio on MMIO; Cloud Hypervisor on PCI), written before
  # the kernel package runs update-initramfs. Not conffiles, so dpkg leaves them alone.
  local setup_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" &&
    printf "MODULES=list\nCOMPRESS=gzip\n" > "$1/etc/initramfs-tools/conf.d/flintlock.conf" &&
    printf "%s\n" virtio_mmio virtio_pci virtio_blk virtio_net ext4 > "$1/usr/share/initramfs-tools/modules.d/flintlock"'

  # Packages: the kernel, systemd as init with networkd (cloud-init renders networkd files),
  # resolved (CAPMVM's vendor-data links /etc/resolv.conf to its stub), dbus (hostnamectl, which
  # cloud-init's set_hostname uses under systemd), cloud-init itself, e2fsprogs (resize2fs: cloud-init
  # grows the root filesystem to a root volume given a size_in_mb), iproute2 for the report.
  local include=linux-image-cloud-amd64,systemd-sysv,udev,dbus,systemd-resolved,cloud-init,e2fsprogs,iproute2
  [ -n "${EXTRA_PACKAGES:-}" ] && include="$include,$(echo "$EXTRA_PACKAGES" | tr ' ' ',')"

  # Downloaded packages are kept in OUT/debs (not in the image): a rebuild after an edit of this
  # script downloads only what changed in the archive.
  mkdir -p "$OUT/debs"
  echo "==> mmdebstrap bookworm ($include)"
  mmdebstrap --variant=apt --mode=root --format=directory --quiet \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in \"$OUT/debs\" /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives \"$OUT/debs\"" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --include="$include" \
    --setup-hook="$setup_hook" \
    --customize-hook="\"$self\" --customize \"\$1\"" \
    bookworm "$R" http://deb.debian.org/debian

  local kernel initrd
  kernel=$(ls "$R"/boot/vmlinuz-* | head -n1)
  initrd=$(ls "$R"/boot/initrd.img-* | head -n1)
  cp "$kernel" "$work/vmlinuz"
  cp "$initrd" "$work/initrd.img"
  chroot "$R" dpkg-query -W -f='${Package} ${Version}\n' > "$work/packages.txt"

  # The root volume: the tree without /boot's kernel (it is the other image), device nodes (the
  # daemon never creates them; devtmpfs provides /dev) and caches, in a fixed order with numeric
  # owners. Modification times are kept as installed: a Python .pyc is valid only for its
  # source's mtime, and with them clamped cloud-init recompiled every module at each first boot.
  tar --create --file="$work/rootfs.tar" --directory="$R" --sort=name --numeric-owner \
    --format=gnu --one-file-system \
    --exclude='./boot/*' --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
    --exclude='./tmp/*' --exclude='./var/cache/apt/*' --exclude='./var/lib/apt/lists/*' --exclude='./var/log/*' \
    .
  for f in vmlinuz initrd.img rootfs.tar packages.txt; do mv -f "$work/$f" "$OUT/$f"; done
  echo "$stamp" > "$OUT/.stamp"
  echo "==> built in $(($(date +%s) - started)) s: $(basename "$kernel"), $(du -h "$OUT/initrd.img" | cut -f1) initrd, $(du -h "$OUT/rootfs.tar" | cut -f1) root filesystem, $(wc -l < "$OUT/packages.txt") packages"
  rm -rf "$work"
  trap - EXIT
}

if built; then echo "debian12 image up to date in $OUT"; else build; fi

if [ -n "$push" ]; then
  tag=latest
  if [[ $push =~ ^(.+):([A-Za-z0-9_][A-Za-z0-9_.-]*)$ ]] && [[ ${BASH_REMATCH[1]} == */* ]]; then
    push=${BASH_REMATCH[1]}
    tag=${BASH_REMATCH[2]}
  fi
  node --import tsx "$here/oci-push.ts" "$push/debian12-kernel:$tag" "boot/vmlinuz=$OUT/vmlinuz" "boot/initrd=$OUT/initrd.img" |
    sed "s|^|$push/debian12-kernel:$tag |"
  node --import tsx "$here/oci-push.ts" "$push/debian12-root:$tag" --layer "$OUT/rootfs.tar" | sed "s|^|$push/debian12-root:$tag |"
fi
