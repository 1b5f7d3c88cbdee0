#!/usr/bin/env bash
# Builds the small test/demo guest: the Debian cloud kernel (linux-image-cloud-amd64, extracted with
# dpkg-deb -x) and a busybox-static initramfs whose /init configures the NICs from a cloud-init
# `cidata` disk's network-config (netplan v2) or by DHCP, reports on the serial console and keeps
# running.
#
#   scripts/build-guest-image.sh [OUT]     (default OUT: <repo>/.cache/guest; run as root)
#
# Output: OUT/vmlinuz, OUT/initramfs.cpio.gz (never committed: .cache/ is ignored). Idempotent: does
# nothing when both exist and were built by this version of the script (OUT/.stamp holds the
# script's sha256). Needs busybox-static and cpio (scripts/setup.sh installs them); downloads only
# the Debian kernel package.
#
# What the guest prints on its console (one line each; tests and the demo read them):
#   FLINTLOCK-GUEST-NIC <ifname> <mac>                         every NIC, in the guest's order
#   FLINTLOCK-GUEST-DISK <vdX> serial=<serial> size=<512-byte sectors> ro=<0|1>
#   FLINTLOCK-GUEST-CIDATA <device>                            the cloud-init disk found
#   FLINTLOCK-GUEST-META instance-id <value>                   from meta-data (instance_id / instance-id)
#   FLINTLOCK-GUEST <ifname> <mac> <ip/prefix>                 every address configured (static or DHCP)
#   FLINTLOCK-GUEST-DHCP-FAILED <ifname>                       no lease within ~20 s
#   FLINTLOCK-GUEST-READY
#   FLINTLOCK-GUEST-PING <ip> ok|failed                        for each flintlock.ping=<ip>[,<ip>] kernel argument
#   FLINTLOCK-GUEST-POWEROFF                                   ACPI power button pressed (QMP system_powerdown)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$here/../.cache/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
stamp=$(sha256sum "$0" | cut -d' ' -f1)

if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initramfs.cpio.gz" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "guest image up to date in $OUT"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "build-guest-image.sh: must run as root (apt-get, dpkg-deb)" >&2
  exit 1
fi

# --- tools: installed by scripts/setup.sh (host-dependencies.txt, role demo/test) -------------
for tool in busybox cpio; do
  if ! command -v "$tool" >/dev/null; then
    pkg=$(awk -v t="$tool" '!/^[ \t]*(#|$)/ { for (i = 4; i <= NF; i++) if ($i == t) print $1 }' "$here/../host-dependencies.txt")
    echo "build-guest-image.sh: $tool not found: install the Debian package ${pkg:-providing it} (scripts/setup.sh demo)" >&2
    exit 1
  fi
done
apt_updated=0

# --- kernel -------------------------------------------------------------------------------------
KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' || true)
if [ -z "$KPKG" ] && [ $apt_updated = 0 ]; then
  apt-get update -q
  KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
if [ -z "$KPKG" ]; then
  echo "build-guest-image.sh: cannot resolve linux-image-cloud-amd64 to a kernel package" >&2
  exit 1
fi
KVER=${KPKG#linux-image-}
echo "==> kernel $KPKG"

work=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt-get download warns "Download is performed unsandboxed as root": harmless.
apt-get download -q "$KPKG" 2>&1 | grep -v 'unsandboxed' || true
deb=$(ls "${KPKG}"_*.deb)
dpkg-deb -x "$deb" kpkg
K=kpkg/lib/modules/$KVER/kernel

# --- initramfs ----------------------------------------------------------------------------------
R=$work/root
mkdir -p "$R"/{bin,proc,sys,dev,tmp,etc,cidata,lib/modules,usr/share/udhcpc}
cp "$(command -v busybox)" "$R/bin/busybox"

# Load order follows each module's `depends=` (no depmod/modprobe in the guest). The virtio core
# and transports are modules in the cloud kernel; fat/vfat/nls read the FAT cidata disk, cdrom/isofs
# an ISO one; button+evdev turn the ACPI power button (QMP system_powerdown) into an input event.
MODULES="failover net_failover virtio_ring virtio virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
virtio_net virtio_blk fat vfat nls_cp437 nls_iso8859-1 nls_utf8 nls_ascii cdrom isofs button evdev"
REQUIRED="failover net_failover virtio_ring virtio virtio_mmio virtio_net virtio_blk fat vfat"
for m in $MODULES; do
  f=$(find "$K" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) | head -n1)
  if [ -z "$f" ]; then
    case " $REQUIRED " in
      *" $m "*)
        echo "build-guest-image.sh: module $m missing from $KPKG" >&2
        exit 1
        ;;
    esac
    echo "    (optional module $m not in $KPKG: skipped)"
    continue
  fi
  case $f in
    *.xz) xz -dc "$f" > "$R/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$R/lib/modules/$m.ko" ;;
    *) cp "$f" "$R/lib/modules/$m.ko" ;;
  esac
done
echo "$MODULES" | tr '\n' ' ' > "$R/etc/modules"

# netplan v2 network-config (the shape flintlock generates) -> one plan line per item:
#   iface <id> <mac> <dhcp4:true|false>
#   addr <cidr> | gw4 <ip> | gw6 <ip> | route <to> <via> | ns <ip>
# Handles block and flow lists, quoted scalars, comments, and list items indented or not.
cat > "$R/etc/netplan2plan.awk" <<'EOF'
# A stack of (indent, key); list items push a "-" marker so their keys nest under the list's key.
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function unq(s) { s = trim(s); if (s ~ /^".*"$/ || s ~ /^'.*'$/) s = substr(s, 2, length(s) - 2); return s }
function path(   i, p) { p = ""; for (i = 3; i <= d; i++) if (k[i] != "-") p = p (p == "" ? "" : ".") k[i]; return p }
function flushroute() { if (cur != "" && (rto != "" || rvia != "")) { nr[cur]++; r[cur, nr[cur]] = "route " (rto == "" ? "default" : rto) " " rvia }; rto = ""; rvia = "" }
function add(p, v) {
  if (cur == "" || v == "") return
  if (p == "addresses") { na[cur]++; a[cur, na[cur]] = v }
  else if (p == "nameservers.addresses") { nn[cur]++; n[cur, nn[cur]] = v }
}
function addlist(p, v,   parts, cnt, i) {
  v = trim(v)
  if (v ~ /^\[/) { v = substr(v, 2); sub(/\].*$/, "", v); cnt = split(v, parts, ","); for (i = 1; i <= cnt; i++) add(p, unq(parts[i])) }
  else add(p, unq(v))
}
function scalar(p, v) {
  if (p == "match.macaddress") mac[cur] = tolower(v)
  else if (p == "dhcp4") dhcp[cur] = (v == "true" || v == "yes" || v == "on") ? "true" : "false"
  else if (p == "gateway4") gw4[cur] = v
  else if (p == "gateway6") gw6[cur] = v
  else if (p == "routes.to") rto = v
  else if (p == "routes.via") rvia = v
  else if (p == "addresses" || p == "nameservers.addresses") addlist(p, v)
}
BEGIN { d = 0; cur = ""; ni = 0 }
{
  line = $0; sub(/\r$/, "", line)
  if (line ~ /^[ \t]*(#.*)?$/) next
  sub(/[ \t]+#.*$/, "", line)
  match(line, /^ */); in0 = RLENGTH; rest = substr(line, in0 + 1)
  if (rest ~ /^-( |$)/) {
    while (d > 0 && (ind[d] > in0 || (ind[d] == in0 && k[d] == "-"))) d--
    if (k[1] == "ethernets" && path() == "routes") flushroute()
    rest = trim(substr(rest, 2)); in0 += 2
    if (rest == "") { d++; ind[d] = in0 - 2; k[d] = "-"; next }
    if (!(rest ~ /: / || rest ~ /:$/) || rest ~ /^["'\[{]/) {
      if (k[1] == "ethernets" && d >= 3) add(path(), unq(rest))
      next
    }
    d++; ind[d] = in0 - 2; k[d] = "-"
  }
  if (match(rest, /: /)) { key = substr(rest, 1, RSTART - 1); val = trim(substr(rest, RSTART + 2)) }
  else if (rest ~ /:$/) { key = substr(rest, 1, length(rest) - 1); val = "" }
  else next
  key = unq(key)
  while (d > 0 && ind[d] >= in0) d--
  d++; ind[d] = in0; k[d] = key
  if (k[1] != "ethernets" || d < 2) next
  if (d == 2) { flushroute(); cur = key; order[++ni] = key; dhcp[key] = "false"; next }
  if (val != "") scalar(path(), unq(val))
}
END {
  flushroute()
  for (i = 1; i <= ni; i++) {
    c = order[i]
    print "iface", c, (mac[c] == "" ? "-" : mac[c]), dhcp[c]
    for (j = 1; j <= na[c]; j++) print "addr", a[c, j]
    if (gw4[c] != "") print "gw4", gw4[c]
    if (gw6[c] != "") print "gw6", gw6[c]
    for (j = 1; j <= nr[c]; j++) print r[c, j]
    for (j = 1; j <= nn[c]; j++) print "ns", n[c, j]
  }
}
EOF

cat > "$R/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc hook: $mask is the prefix length, $router/$dns may hold several words.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gw in $router; do ip route add default via "$gw" dev "$interface" 2>/dev/null; break; done
    for ns in $dns; do echo "nameserver $ns" >> /etc/resolv.conf; done
    echo "FLINTLOCK-GUEST $interface $(cat /sys/class/net/$interface/address) $ip/${mask:-24}" > /dev/console
    : > "/tmp/dhcp.$interface"
    ;;
  renew)
    ip addr replace "$ip/${mask:-24}" dev "$interface"
    ;;
esac
exit 0
EOF
chmod +x "$R/usr/share/udhcpc/default.script"

cat > "$R/init" <<'EOF'
#!/bin/busybox sh
# flintlock test guest: configure NICs from cidata network-config or DHCP, report, keep running.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null; done
ip link set lo up

# ACPI power button (QMP system_powerdown) -> power off at once.
for e in /sys/class/input/event*; do
  [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] || continue
  ( dd if="/dev/input/${e##*/}" bs=24 count=1 >/dev/null 2>&1; echo FLINTLOCK-GUEST-POWEROFF; poweroff -f ) &
done

# Probing is synchronous in insmod; this only covers a slow device.
i=0
while [ -z "$(ls /sys/class/net | grep "^eth")" ] && [ $i -lt 10 ]; do sleep 0.1; i=$((i + 1)); done
for n in $(ls /sys/class/net | grep '^eth' | sort -t h -k 2 -n); do echo "FLINTLOCK-GUEST-NIC $n $(cat /sys/class/net/$n/address)"; done
for b in /sys/block/vd*; do
  [ -e "$b" ] || continue
  echo "FLINTLOCK-GUEST-DISK ${b##*/} serial=$(cat $b/serial 2>/dev/null) size=$(cat $b/size) ro=$(cat $b/ro)"
done

# cloud-init NoCloud disk: label cidata (FAT or ISO9660), else any disk holding meta-data.
cidata=""
for l in cidata CIDATA; do [ -z "$cidata" ] && cidata=$(findfs LABEL=$l 2>/dev/null); done
for dev in $cidata /dev/vd*; do
  [ -b "$dev" ] || continue
  for t in vfat iso9660; do
    if mount -t $t -o ro "$dev" /cidata 2>/dev/null; then
      [ -f /cidata/meta-data ] && { cidata=$dev; break 2; }
      umount /cidata
    fi
  done
  cidata=""
done
if [ -n "$cidata" ]; then
  echo "FLINTLOCK-GUEST-CIDATA $cidata"
  iid=$(sed -n -E 's/^instance[-_]id:[ ]*"?([^"]*)"?[ ]*$/\1/p' /cidata/meta-data | head -n1)
  [ -n "$iid" ] && echo "FLINTLOCK-GUEST-META instance-id $iid"
fi

dev_for_mac() {
  for n in /sys/class/net/*; do [ "$(cat $n/address)" = "$1" ] && { echo "${n##*/}"; return; }; done
}
dhcp_ifs=""
start_dhcp() {
  udhcpc -i "$1" -s /usr/share/udhcpc/default.script -f -n -t 20 -T 1 -A 1 > "/tmp/udhcpc.$1.log" 2>&1 &
  dhcp_ifs="$dhcp_ifs $1:$!"
}
: > /etc/resolv.conf
if [ -n "$cidata" ] && [ -f /cidata/network-config ]; then
  dev=""
  awk -f /etc/netplan2plan.awk /cidata/network-config > /tmp/plan
  while read -r kind a b c; do
    case $kind in
      iface)
        # iface <id> <mac|-> <dhcp4>: matched by MAC, else (no match section) by name.
        dev=""
        [ "$b" != "-" ] && dev=$(dev_for_mac "$b")
        [ -z "$dev" ] && [ "$b" = "-" ] && [ -e "/sys/class/net/$a" ] && dev=$a
        if [ -z "$dev" ]; then echo "FLINTLOCK-GUEST-NO-NIC $a $b"; continue; fi
        ip link set "$dev" up
        [ "$c" = true ] && start_dhcp "$dev" ;;
      addr)
        [ -n "$dev" ] || continue
        case $a in *:*) ip -6 addr add "$a" dev "$dev" nodad ;; *) ip addr add "$a" dev "$dev" ;; esac &&
          echo "FLINTLOCK-GUEST $dev $(cat /sys/class/net/$dev/address) $a" ;;
      gw4) [ -n "$dev" ] && ip route add default via "$a" dev "$dev" 2>/dev/null ;;
      gw6) [ -n "$dev" ] && ip -6 route add default via "$a" dev "$dev" 2>/dev/null ;;
      route)
        [ -n "$dev" ] || continue
        case $b in *:*) ip -6 route add "$a" via "$b" dev "$dev" 2>/dev/null ;; *) ip route add "$a" via "$b" dev "$dev" 2>/dev/null ;; esac ;;
      ns) echo "nameserver $a" >> /etc/resolv.conf ;;
    esac
  done < /tmp/plan
else
  for n in $(ls /sys/class/net | grep '^eth'); do ip link set "$n" up; start_dhcp "$n"; done
fi
for entry in $dhcp_ifs; do
  n=${entry%%:*}; pid=${entry##*:}
  while [ ! -e "/tmp/dhcp.$n" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  [ -e "/tmp/dhcp.$n" ] || echo "FLINTLOCK-GUEST-DHCP-FAILED $n"
done
echo FLINTLOCK-GUEST-READY
# flintlock.ping=<ip>[,<ip>...] on the kernel command line: ping those from inside the guest
# (tests check that guests reach each other).
for arg in $(cat /proc/cmdline); do
  case $arg in flintlock.ping=*)
    for target in $(echo "${arg#flintlock.ping=}" | tr , ' '); do
      ok=failed; i=0
      while [ $i -lt 10 ]; do ping -c 1 -W 1 "$target" >/dev/null 2>&1 && { ok=ok; break; }; i=$((i+1)); done
      echo "FLINTLOCK-GUEST-PING $target $ok"
    done ;;
  esac
done
while :; do sleep 3600; done
EOF
chmod +x "$R/init"

(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$work/initramfs.cpio.gz"
cp "kpkg/boot/vmlinuz-$KVER" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$OUT/vmlinuz"
mv -f "$work/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
echo "$KPKG" > "$OUT/kernel-package"
echo "$stamp" > "$OUT/.stamp"
ls -la "$OUT/vmlinuz" "$OUT/initramfs.cpio.gz"
