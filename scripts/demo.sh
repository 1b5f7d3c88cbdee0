#!/usr/bin/env bash
# Host demo, as root on Debian 12: flintlockd boots a microVM and the microVM gets a DHCP lease.
#
#   scripts/demo.sh            tap mode: the NIC is a tap on the bridge br0 (bridge-name)
#   scripts/demo.sh macvtap    macvtap mode: the NIC is a macvtap on the veth eth0 (parent-iface),
#                              with the DHCP server on the far side of the veth
#
# In a sandbox network namespace it sets up the bridge/veth, a DHCP server (dnsmasq) and a local
# OCI registry holding the test guest (scripts/build-guest-image.sh: Debian cloud kernel +
# busybox initramfs), starts flintlockd, then with fl: creates a VM, waits for CREATED and the
# lease, prints the guest's address and pings it, lists, deletes. Everything it made (namespaces,
# processes, temp dir) is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-tap}
case "$MODE" in tap | macvtap) ;; *) echo "usage: $0 [tap|macvtap]" >&2; exit 2 ;; esac

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "installing and building (scripts/setup.sh, the guest image, the registry binary)"
scripts/setup.sh daemon qemu demo >/dev/null
scripts/build-guest-image.sh >/dev/null
REGISTRY_BIN=$(scripts/fetch-registry.sh 2>/dev/null | tail -n 1)

NS="fl-demo-$$"
LAN="fl-demo-lan-$$"
WORK=$(mktemp -d /tmp/fl-demo.XXXXXX)
chmod 755 "$WORK" # dnsmasq drops to nobody
PIDS=()
UID_=""
# The demo's own cgroup parent for its VMMs (ADR 0009), removed on exit.
CGROUP_PARENT="fl-demo-$$"
cleanup() {
  # VMMs outlive the daemon by design: delete the demo's VMs first (best effort), then end any
  # QEMU still running from this demo's state directory (a unique temp path), by pid.
  if [ -n "${UID_:-}" ]; then timeout 20 ip netns exec "$NS" bin/fl --host 127.0.0.1:9090 microvm delete "$UID_" --wait >/dev/null 2>&1 || true; fi
  for pid in $(pgrep -f "$WORK/state" || true); do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/dnsmasq.pid" ] && kill "$(cat "$WORK/dnsmasq.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  # cgroups are directories that rmdir removes once their processes are gone (v2: one tree; v1:
  # one per hierarchy); a killed QEMU takes a moment to leave.
  for h in "" memory pids; do
    d="/sys/fs/cgroup${h:+/$h}/$CGROUP_PARENT"
    [ -d "$d" ] || continue
    for _ in $(seq 20); do
      find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
      rmdir "$d" 2>/dev/null && break
      sleep 0.1
    done
  done
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$LAN" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
fl() { in_ns bin/fl --host 127.0.0.1:9090 "$@"; }

step "sandbox network namespace $NS: bridge br0 (10.99.0.1/24) and veth eth0 (its peer in $LAN, 10.98.0.1/24)"
ip netns add "$NS"
ip netns add "$LAN"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add 10.99.0.1/24 dev br0
ip -n "$NS" link add eth0 type veth peer name lan0 netns "$LAN"
ip -n "$LAN" addr add 10.98.0.1/24 dev lan0
for dev in br0 eth0; do ip -n "$NS" link set "$dev" up; done
ip -n "$LAN" link set lan0 up

if [ "$MODE" = tap ]; then DHCP_NS=$NS DHCP_IF=br0 RANGE=10.99.0.50,10.99.0.150; else DHCP_NS=$LAN DHCP_IF=lan0 RANGE=10.98.0.50,10.98.0.150; fi
step "DHCP server: dnsmasq on $DHCP_IF in $DHCP_NS"
ip netns exec "$DHCP_NS" dnsmasq --port=0 --interface="$DHCP_IF" --bind-interfaces --dhcp-range="$RANGE,255.255.255.0,1h" \
  --dhcp-authoritative --no-ping --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log"

step "OCI registry on 127.0.0.1:5000 in $NS, with the guest image pushed as 127.0.0.1:5000/flintlock/guest:demo"
cat > "$WORK/registry.yml" <<YAML
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $WORK/registry } }
http: { addr: 127.0.0.1:5000 }
YAML
# Started directly (not through a shell function) so $! is the process itself: `ip netns exec`
# execs the command, and cleanup kills exactly that pid.
ip netns exec "$NS" "$REGISTRY_BIN" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do in_ns busybox wget -q -O /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && break; sleep 0.1; done
in_ns node --import tsx scripts/oci-push.ts 127.0.0.1:5000/flintlock/guest:demo \
  boot/vmlinuz=.cache/guest/vmlinuz boot/initrd=.cache/guest/initramfs.cpio.gz | sed 's/^/    manifest /'

cat > "$WORK/config.yaml" <<YAML
grpc-endpoint: 127.0.0.1:9090
state-dir: $WORK/state
parent-iface: eth0
bridge-name: br0
insecure: true
default-provider: qemu
# flintlockd runs under ip netns exec, which mounts the namespace's own sysfs over /sys and so
# hides the cgroup hierarchies: it reaches the host's through this script's root.
vmm-cgroup-root: /proc/$$/root/sys/fs/cgroup
vmm-cgroup-parent: $CGROUP_PARENT
YAML
step "flintlockd run --config $WORK/config.yaml (log: $WORK/daemon.log)"
ip netns exec "$NS" bin/flintlockd run --config "$WORK/config.yaml" >"$WORK/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do fl microvm list >/dev/null 2>&1 && break; sleep 0.1; done
fl microvm list >/dev/null 2>&1 || { echo "flintlockd did not start:"; tail -n 20 "$WORK/daemon.log"; exit 1; }
grep -E 'authentication|TLS is|starting grpc|default microvm provider|QEMU|cgroups' "$WORK/daemon.log" | sed 's/^/    /' | cut -c1-150

if [ "$MODE" = tap ]; then NIC=eth1:tap; else NIC=eth1:macvtap; fi
step "fl microvm create --name demo-vm --network-interface $NIC ... --wait"
UID_=$(fl microvm create --name demo-vm --namespace demo --vcpu 1 --memory 256 \
  --kernel-image 127.0.0.1:5000/flintlock/guest:demo --kernel-filename boot/vmlinuz \
  --initrd-image 127.0.0.1:5000/flintlock/guest:demo --initrd-filename boot/initrd \
  --network-interface "$NIC" --wait --timeout 120)
echo "    microvm $UID_ is CREATED"

json() { fl -o json microvm get "$UID_" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s);console.log($1)})"; }
MAC=$(json 'v.status.networkInterfaces.eth1.macAddress')
echo "    guest MAC $MAC on host device $(json 'v.status.networkInterfaces.eth1.hostDeviceName'), QEMU pid $(json 'v.status.vmmPid')"

step "waiting for the guest's DHCP lease"
IP=""
for _ in $(seq 300); do
  IP=$(awk -v mac="$MAC" 'tolower($2) == tolower(mac) { print $3 }' "$WORK/leases" 2>/dev/null || true)
  [ -n "$IP" ] && break
  sleep 0.1
done
[ -n "$IP" ] || { echo "no lease for $MAC; console:"; tail -n 20 "$(json 'v.status.consoleLogPath')"; exit 1; }
echo "    lease: $(grep -i "$MAC" "$WORK/leases")"
echo "    the guest says: $(grep -a 'FLINTLOCK-GUEST eth' "$(json 'v.status.consoleLogPath')" | tail -n 1)"

step "ping $IP from the host side ($( [ "$MODE" = tap ] && echo "bridge br0" || echo "far side of the veth"))"
ip netns exec "$DHCP_NS" busybox ping -c 3 -W 2 "$IP" | sed 's/^/    /'

step "fl microvm list"
fl microvm list

step "fl microvm delete $UID_ --wait"
fl microvm delete "$UID_" --wait
echo "    QEMU processes left: $(pgrep -c -f "$WORK/state" || true); host devices left: $(ip -n "$NS" -o link show | grep -cE ': fl(v)?tap' || true)"

step "done: stopping flintlockd and removing the namespaces"
