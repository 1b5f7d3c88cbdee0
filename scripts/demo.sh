#!/usr/bin/env bash
# Host demo, as root on Debian 12: flintlockd in a sandbox network namespace (a veth as
# parent-iface, a bridge as bridge-name), then a create/get/list/delete round trip with fl,
# showing the real tap and macvtap devices the daemon makes and removes.
# Everything it creates (namespace, processes, temp dir) is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null

NS="fl-demo-$$"
WORK=$(mktemp -d /tmp/fl-demo.XXXXXX)
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
in_ns() { ip netns exec "$NS" "$@"; }
fl() { in_ns bin/fl --host 127.0.0.1:9090 "$@"; }

step "sandbox network namespace $NS: veth eth0 (parent-iface) and bridge br0 (bridge-name)"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add eth0 type veth peer name lan0
ip -n "$NS" link add br0 type bridge
for dev in eth0 lan0 br0; do ip -n "$NS" link set "$dev" up; done

cat > "$WORK/config.yaml" <<YAML
grpc-endpoint: 127.0.0.1:9090
state-dir: $WORK/state
parent-iface: eth0
bridge-name: br0
insecure: true
maximum-retry: 2
retry-backoff-base: 500ms
YAML
step "flintlockd run --config $WORK/config.yaml (log: $WORK/daemon.log)"
in_ns bin/flintlockd run --config "$WORK/config.yaml" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do fl microvm list >/dev/null 2>&1 && break; sleep 0.1; done
grep -E 'authentication|TLS is|starting grpc|provider' "$WORK/daemon.log" | sed 's/^/    /'

step "fl microvm create: one tap NIC on br0 and one macvtap NIC on eth0"
UID_=$(fl microvm create --name demo-vm --namespace demo --vcpu 1 --memory 256 \
  --kernel-image ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77 \
  --root-image ghcr.io/liquidmetal-dev/capmvm-kubernetes:1.23.5 \
  --network-interface eth1:tap --network-interface eth2:macvtap:02:00:00:00:de:01)
echo "    created microvm uid $UID_"

step "fl microvm get $UID_ (waiting for the reconciler to finish)"
for _ in $(seq 100); do
  state=$(fl -o json microvm get "$UID_" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).status.state))')
  [ "$state" = "CREATED" ] || [ "$state" = "FAILED" ] && break
  sleep 0.2
done
fl -o yaml microvm get "$UID_"

step "host devices the daemon made (alias names the VM; macvtap in bridge mode)"
ip -n "$NS" -json -details link show | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    for (const l of JSON.parse(s).filter((l) => /^fl(v)?tap/.test(l.ifname))) {
      const kind = l.linkinfo?.info_kind === "macvtap" ? `macvtap mode ${l.linkinfo.info_data?.mode} on ${l.link}` : `tap, master ${l.master}`;
      console.log(`    ${l.ifname.padEnd(14)} ${kind.padEnd(26)} mac ${l.address}  ${l.flags.includes("UP") ? "up" : "down"}  alias ${l.ifalias}`);
    }
  });'

step "fl microvm list"
fl microvm list

echo
echo "    Note: this build has no VMM driver yet (QEMU/Firecracker/Cloud Hypervisor arrive with the"
echo "    VMM work), so the VM ends FAILED with the reason shown above instead of booting."

step "fl microvm delete $UID_ --wait"
fl microvm delete "$UID_" --wait
echo "    devices left in the namespace: $(ip -n "$NS" -o link show | grep -cE ': fl(v)?tap' || true)"

step "done: stopping flintlockd and removing the namespace"
