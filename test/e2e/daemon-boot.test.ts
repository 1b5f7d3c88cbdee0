// End to end: the real daemon (bin/flintlockd) boots the test guest under QEMU (TCG) from an OCI
// image in Debian's docker-registry, inside network namespaces this test makes and deletes:
//   a) tap on a bridge with dnsmasq: lease for the status MAC, ping, guest IP in the status,
//      delete removes the QEMU process, the tap and the VM dir;
//   b) macvtap: two VMs on one veth parent get leases from dnsmasq on the far side;
//   c) a static address through network-config;
//   d) a killed VMM: noticed within a second, restarted by reconcile, restart counter grows;
//   e) a daemon restart re-adopts running VMMs (same pids).
// Every VMM runs sandboxed with the daemon's defaults (ADR 0009): a uid/gid of its own, a cgroup
// `flintlock/<vm uid>` with memory and pids limits on this host's hierarchy, QEMU's seccomp
// filter; a) reads all of that from /proc and the cgroup files of the running QEMU, and the
// modes that keep the daemon's state from it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { readProcStatSync } from '../../src/adapters/process/process-table.js';
import {
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState as State,
  NetworkInterface_IfaceType as IfaceType,
  PowerState,
  type MicroVM,
} from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient } from '../helpers/grpc-client.js';
import { BOOT_DEADLINE_MS, ensureGuestImage, guestAddress, pingFrom, pushGuest, startDnsmasq, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { CGROUPS, HOST_CGROUP_ROOT, rmdirCgroup } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';
import { MicroVMClient, type LifecycleCall } from '../../src/cli/fl/client.js';

const GUEST = '127.0.0.1:5000/flintlock/guest:e2e';
/** The first macvtap guest gets a fixed lease, so the second can be told to ping it. */
const MV1_MAC = '02:ee:00:00:00:01';
const MV1_IP = '10.78.0.201';

interface NicInit {
  deviceId: string;
  type: IfaceType;
  guestMac?: string;
  address?: { address: string; gateway?: string };
}

function guestSpec(
  name: string,
  interfaces: NicInit[],
  addNetworkConfig = false,
  cmdline: Record<string, string> = {},
): ReturnType<typeof create<typeof MicroVMSpecSchema>> {
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: 'e2e',
    vcpu: 1,
    memoryInMb: 256,
    kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig, cmdline },
    initrd: { image: GUEST, filename: 'boot/initrd' },
    interfaces: interfaces.map((i) => ({
      deviceId: i.deviceId,
      type: i.type,
      ...(i.guestMac !== undefined ? { guestMac: i.guestMac } : {}),
      ...(i.address !== undefined ? { address: { ...i.address, nameservers: [] } } : {}),
    })),
  });
}

function leaseFor(leasesFile: string, mac: string): string | undefined {
  if (!existsSync(leasesFile)) return undefined;
  // dnsmasq lease lines: <expiry> <mac> <ip> <hostname> <client-id>
  return readFileSync(leasesFile, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[1]?.toLowerCase() === mac.toLowerCase())?.[2];
}

function isQemu(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('qemu');
  } catch {
    return false;
  }
}

function processGone(pid: number): boolean {
  return readProcStatSync(pid) === undefined;
}

/** A /proc/<pid>/status field (tabs as spaces). */
function statusField(pid: number, key: string): string {
  return (new RegExp(`^${key}:[ \\t]*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '').replaceAll('\t', ' ');
}

/** The VM's cgroup directories as the daemon makes them with its default `vmm-cgroup-parent`. */
function vmCgroupDirs(uid: string): { memory: string; pids: string; version: 1 | 2 } {
  if (existsSync(join(HOST_CGROUP_ROOT, 'cgroup.controllers'))) {
    const dir = join(HOST_CGROUP_ROOT, 'flintlock', uid);
    return { memory: dir, pids: dir, version: 2 };
  }
  return { memory: join(HOST_CGROUP_ROOT, 'memory', 'flintlock', uid), pids: join(HOST_CGROUP_ROOT, 'pids', 'flintlock', uid), version: 1 };
}

describeWith('flintlockd boots microVMs (QEMU, TCG) in both network modes', [...GUEST_LAB, CGROUPS], { timeout: 300_000 }, () => {
  let host: TestNetns;
  let lan: TestNetns;
  let dir: string;
  let daemon: DaemonHandle;
  let client: TestClient;
  const stops: Array<() => void> = [];
  let bridgeLeases = '';
  let lanLeases = '';
  const pids = new Set<number>();

  /** VMs this test created: their cgroups are removed at exit if a failure left any. */
  const vmUids = new Set<string>();
  const config = {
    'parent-iface': 'eth0',
    'bridge-name': 'br0',
    'default-provider': 'qemu',
    'maximum-retry': 2,
    'retry-backoff-base': '200ms',
    'delete-vm-timeout': '2s',
    // The daemon's default parent (test daemons get one of their own otherwise): the VMs' cgroups
    // are `<hierarchy>/flintlock/<vm uid>`, removed by this file if a failure leaves any.
    'vmm-cgroup-parent': 'flintlock',
  };

  async function createdVm(name: string, interfaces: NicInit[], addNetworkConfig = false, cmdline: Record<string, string> = {}): Promise<MicroVM> {
    const uid = (await client.create(guestSpec(name, interfaces, addNetworkConfig, cmdline))).spec?.uid ?? '';
    vmUids.add(uid);
    const vm = await waitFor(
      `${name} CREATED`,
      async () => {
        const got = await client.get(uid);
        if (got.status?.state === State.FAILED) throw new Error(`${name} FAILED: ${got.status.failureReason}`);
        return got.status?.state === State.CREATED ? got : undefined;
      },
      60_000,
      100,
    );
    pids.add(vm.status?.vmmPid ?? 0);
    return vm;
  }

  async function deleteAndWait(uid: string): Promise<void> {
    await client.delete(uid);
    await waitFor(`${uid} removed`, async () => (await client.list('e2e')).every((v) => v.spec?.uid !== uid), 30_000, 100);
  }

  before(async () => {
    ensureGuestImage();
    dir = makeTempDir('fl-e2e-');
    chmodSync(dir, 0o755); // dnsmasq drops to nobody
    host = createTestNetns('fle2e');
    lan = createTestNetns('fllan', { bare: true });
    host.ip('addr', 'add', '10.77.0.1/24', 'dev', 'br0');
    // The macvtap parent's far side lives in the LAN namespace, with its own DHCP server.
    host.ip('link', 'set', 'eth0p', 'netns', lan.name);
    lan.ip('addr', 'add', '10.78.0.1/24', 'dev', 'eth0p');
    lan.ip('link', 'set', 'eth0p', 'up');
    const bridgeDns = startDnsmasq(host.name, 'br0', '10.77.0.50,10.77.0.150', join(dir, 'br'));
    const lanDns = startDnsmasq(lan.name, 'eth0p', '10.78.0.50,10.78.0.150', join(dir, 'lan'), { [MV1_MAC]: MV1_IP });
    bridgeLeases = bridgeDns.leases;
    lanLeases = lanDns.leases;
    stops.push(bridgeDns.stop, lanDns.stop);
    const registry = await startRegistry(host.name, dir);
    stops.push(registry.stop);
    pushGuest(host.name, GUEST);
    daemon = await startDaemon({ netns: host.name, dir: join(dir, 'daemon'), config });
    client = new TestClient(daemon.endpoint);
    // After the daemon helper's exit cleanup (which kills the VMMs): a cgroup goes once its VMM has.
    atExit(() => {
      const leaves = new Set([...vmUids].flatMap((uid) => Object.values(vmCgroupDirs(uid)).filter((d): d is string => typeof d === 'string')));
      for (const cg of leaves) rmdirCgroup(cg);
      // The parents too, when nothing else is in them (rmdir refuses a cgroup with children).
      for (const parent of new Set([...leaves].map((cg) => dirname(cg)))) rmdirCgroup(parent, 0);
    });
  });

  after(async () => {
    try {
      for (const vm of (await client?.list('')) ?? []) await deleteAndWait(vm.spec?.uid ?? '').catch(() => undefined);
    } finally {
      client?.close();
      await daemon?.stop();
      // Safety net: no VMM this test started may outlive it.
      for (const pid of pids) if (pid > 0 && isQemu(pid)) process.kill(pid, 'SIGKILL');
      for (const stop of stops) stop();
      host?.destroy();
      lan?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a) tap on the bridge, sandboxed: own uid, seccomp, cgroup limits; lease for the status MAC, ping, guest IP in the status, clean delete', async (t) => {
    const vm = await createdVm('tap-vm', [{ deviceId: 'eth1', type: IfaceType.TAP }]);
    const iface = vm.status?.networkInterfaces.eth1;
    const ip = await waitFor('a DHCP lease', () => leaseFor(bridgeLeases, iface?.macAddress ?? ''), BOOT_DEADLINE_MS, 100);
    pingFrom(host.name, ip);

    // The running QEMU: the first uid of the default vmm-uid-range, seccomp on, in its cgroup.
    const pid = vm.status?.vmmPid ?? 0;
    const uid = vm.spec?.uid ?? '';
    const fields = ['Name', 'Uid', 'Gid', 'Groups', 'NoNewPrivs', 'Seccomp', 'CapEff'].map((k) => `${k}: ${statusField(pid, k)}`);
    t.diagnostic(`/proc/${pid}/status: ${fields.join(' | ')}`);
    assert.match(statusField(pid, 'Name'), /^qemu-system-x86/);
    const vmmUid = Number(statusField(pid, 'Uid').split(' ')[0]);
    assert.ok(vmmUid >= 0x7000_0000 && vmmUid < 0x7000_0000 + 65_536, `uid ${vmmUid} from vmm-uid-range`);
    assert.equal(statusField(pid, 'Uid'), `${vmmUid} ${vmmUid} ${vmmUid} ${vmmUid}`);
    assert.equal(statusField(pid, 'Gid'), `${vmmUid} ${vmmUid} ${vmmUid} ${vmmUid}`);
    assert.equal(statusField(pid, 'Seccomp'), '2');
    assert.equal(statusField(pid, 'NoNewPrivs'), '1');
    assert.equal(statusField(pid, 'CapEff'), '0000000000000000');
    const cg = vmCgroupDirs(uid);
    const memoryFile = join(cg.memory, cg.version === 1 ? 'memory.limit_in_bytes' : 'memory.max');
    const memory = readFileSync(memoryFile, 'utf8').trim();
    const pidsMax = readFileSync(join(cg.pids, 'pids.max'), 'utf8').trim();
    const members = readFileSync(join(cg.memory, 'cgroup.procs'), 'utf8').trim().split('\n');
    t.diagnostic(`${memoryFile}: ${memory}; ${join(cg.pids, 'pids.max')}: ${pidsMax}; ${join(cg.memory, 'cgroup.procs')}: ${members.join(',')}`);
    assert.equal(memory, String((256 + 256) * 1024 * 1024), 'memory_in_mb 256 + vmm-memory-overhead-mb 256');
    assert.equal(pidsMax, '1024');
    assert.deepEqual(members, [String(pid)]);
    assert.match(readFileSync(join(cg.pids, 'cgroup.procs'), 'utf8'), new RegExp(`^${pid}$`, 'm'));

    // What the VMM's uid can reach of the daemon's state: its own VM dir (by group), nothing else.
    const vmDir = join(daemon.stateDir, 'vm', 'e2e', 'tap-vm', uid);
    const mode = (path: string): number => statSync(path).mode & 0o7777;
    assert.equal(mode(daemon.stateDir), 0o711, 'the state dir: searchable, not listable');
    assert.equal(mode(join(daemon.stateDir, 'flintlock.db')), 0o600, "the database is the daemon's");
    assert.equal(mode(join(daemon.stateDir, 'images', 'rootfs')), 0o700, "unpacked images (setuid files) are the daemon's");
    assert.equal(mode(join(daemon.stateDir, 'images', 'blobs')), 0o700);
    assert.equal(mode(join(daemon.stateDir, 'images', 'refs.json')), 0o600);
    // The state-dir claim (one daemon per dir) keeps its files the daemon's under the 0711 dir.
    for (const f of ['flintlockd.lock', 'flintlockd.pid', 'daemon-id']) assert.equal(mode(join(daemon.stateDir, f)), 0o600, f);
    assert.equal(mode(vmDir), 0o1770);
    // The pid file names QEMU itself (the launch chain execs its way there), and is root's alone.
    assert.equal(readFileSync(join(vmDir, 'vmm.pid'), 'utf8').split(' ')[0], String(pid));
    assert.equal(mode(join(vmDir, 'vmm.pid')), 0o600);
    assert.equal(statSync(join(vmDir, 'vmm.pid')).uid, 0);
    assert.equal(statSync(vmDir).gid, vmmUid);
    assert.equal(statSync(vmDir).uid, 0);
    for (const f of ['console.log', 'cidata.img']) assert.equal(statSync(join(vmDir, f)).gid, vmmUid, f);
    assert.equal(statSync(join(vmDir, 'qmp.sock')).uid, vmmUid, 'QEMU made its socket as its own uid');
    const withIp = await waitFor('guest IP in the status', async () => {
      const got = await client.get(vm.spec?.uid ?? '');
      return got.status?.guestIps.includes(ip) === true ? got : undefined;
    });
    assert.match(withIp.status?.consoleLogPath ?? '', /console\.log$/);
    assert.ok(existsSync(join(vmDir, 'cidata.img')));
    await deleteAndWait(vm.spec?.uid ?? '');
    assert.ok(processGone(vm.status?.vmmPid ?? 0), 'QEMU is gone');
    assert.equal(host.link(iface?.hostDeviceName ?? ''), undefined, 'tap is gone');
    assert.equal(existsSync(vmDir), false, 'VM dir is gone');
    assert.equal(existsSync(cg.memory) || existsSync(cg.pids), false, 'its cgroup is gone');
  });

  it('b) macvtap: two VMs on one parent get leases from the far side and reach each other', async () => {
    // The second guest pings the first (fixed lease) from inside: guest to guest through the macvtap bridge.
    const [one, two] = await Promise.all([
      createdVm('mv-1', [{ deviceId: 'eth1', type: IfaceType.MACVTAP, guestMac: MV1_MAC }]),
      createdVm('mv-2', [{ deviceId: 'eth1', type: IfaceType.MACVTAP, guestMac: '02:ee:00:00:00:02' }], false, { 'flintlock.ping': MV1_IP }),
    ]);
    assert.equal(two.status?.networkInterfaces.eth1?.macAddress, '02:ee:00:00:00:02', 'the macvtap carries the guest MAC');
    // The VMM's tap node is ours, made from sysfs inside the namespace, not /dev/tapN.
    const nic = one.status?.networkInterfaces.eth1;
    const sysfsDev = execFileSync('ip', ['netns', 'exec', host.name, 'cat', `/sys/class/net/${nic?.hostDeviceName}/macvtap/tap${nic?.index}/dev`], {
      encoding: 'utf8',
    }).trim();
    const node = statSync(join(daemon.stateDir, 'vm', 'e2e', 'mv-1', one.spec?.uid ?? '', 'tap-eth1'), { bigint: true });
    assert.ok(node.isCharacterDevice());
    assert.equal(`${(node.rdev >> 8n) & 0xfffn}:${(node.rdev & 0xffn) | ((node.rdev >> 12n) & ~0xffn)}`, sysfsDev);
    for (const vm of [one, two]) {
      const ip = await waitFor('a DHCP lease', () => leaseFor(lanLeases, vm.status?.networkInterfaces.eth1?.macAddress ?? ''), BOOT_DEADLINE_MS, 100);
      pingFrom(lan.name, ip);
    }
    const uidOf = (vm: MicroVM): string => statusField(vm.status?.vmmPid ?? 0, 'Uid').split(' ')[0] ?? '';
    assert.notEqual(uidOf(one), uidOf(two), 'a uid per VM');
    const console2 = two.status?.consoleLogPath ?? '';
    const result = await waitFor(
      'the guest-to-guest ping',
      () => /FLINTLOCK-GUEST-PING \S+ (ok|failed)/.exec(existsSync(console2) ? readFileSync(console2, 'utf8') : '')?.[0],
      BOOT_DEADLINE_MS,
      100,
    );
    assert.equal(result, `FLINTLOCK-GUEST-PING ${MV1_IP} ok`);
    await Promise.all([one, two].map((vm) => deleteAndWait(vm.spec?.uid ?? '')));
  });

  it('c) a static address through network-config', async () => {
    const vm = await createdVm(
      'static-vm',
      [{ deviceId: 'eth1', type: IfaceType.TAP, guestMac: '02:ee:00:00:00:03', address: { address: '10.77.0.200/24', gateway: '10.77.0.1' } }],
      true,
    );
    const address = await guestAddress(vm.status?.consoleLogPath ?? '', 'eth0', '02:ee:00:00:00:03');
    assert.equal(address, '10.77.0.200/24');
    pingFrom(host.name, '10.77.0.200');
    await deleteAndWait(vm.spec?.uid ?? '');
  });

  it('d) a killed VMM is noticed within a second and restarted, counting the restart', async () => {
    const vm = await createdVm('crash-vm', [{ deviceId: 'eth1', type: IfaceType.TAP }]);
    const uid = vm.spec?.uid ?? '';
    const pid = vm.status?.vmmPid ?? 0;
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    const noticed = await waitFor(
      'the exit noticed',
      async () => {
        const got = await client.get(uid);
        return got.status?.lastExitReason !== '' ? got : undefined;
      },
      5000,
      20,
    );
    assert.ok(Date.now() - killedAt < 1500, `noticed after ${Date.now() - killedAt} ms`);
    assert.match(noticed.status?.lastExitReason ?? '', new RegExp(`vmm process ${pid} ended`));
    const restarted = await waitFor(
      'restarted',
      async () => {
        const got = await client.get(uid);
        return got.status?.state === State.CREATED && got.status.vmmPid !== pid ? got : undefined;
      },
      30_000,
      100,
    );
    pids.add(restarted.status?.vmmPid ?? 0);
    assert.equal(restarted.status?.restartCount, 1);
    assert.equal(restarted.status?.crashLoopCount, 1, 'an exit soon after the start counts in a crash loop');
    // Again at once: the second exit in a row waits out the backoff (retry-backoff-base 200ms), shown in the status.
    const second = restarted.status?.vmmPid ?? 0;
    process.kill(second, 'SIGKILL');
    const waiting = await waitFor(
      'the crash-loop wait in the status',
      async () => {
        const got = await client.get(uid);
        return got.status?.crashLoopCount === 2 ? got : undefined;
      },
      5000,
      20,
    );
    const restartAt = Number(waiting.status?.nextRestartAt?.seconds ?? 0n) * 1000;
    assert.ok(restartAt > 0, 'next_restart_at is set');
    const third = await waitFor(
      'restarted after the wait',
      async () => {
        const got = await client.get(uid);
        return got.status?.state === State.CREATED && got.status.vmmPid !== second ? got : undefined;
      },
      30_000,
      50,
    );
    pids.add(third.status?.vmmPid ?? 0);
    assert.equal(third.status?.restartCount, 2);
    assert.equal(third.status?.nextRestartAt, undefined, 'the wait is over');
    await deleteAndWait(uid);
  });

  it('f) lifecycle: stop keeps the tap, start boots again with the same MAC and lease, pause stops the guest answering, resume, restart, logs', async () => {
    const lifecycle = new MicroVMClient({ host: daemon.endpoint });
    try {
      const vm = await createdVm('life-vm', [{ deviceId: 'eth1', type: IfaceType.TAP }]);
      const uid = vm.spec?.uid ?? '';
      const iface = vm.status?.networkInterfaces.eth1;
      const ip = await waitFor('a DHCP lease', () => leaseFor(bridgeLeases, iface?.macAddress ?? ''), BOOT_DEADLINE_MS, 100);
      pingFrom(host.name, ip);
      const power = async (call: LifecycleCall, state: PowerState): Promise<MicroVM> => {
        const done = await lifecycle.lifecycle(call, uid);
        assert.ok(done.ok, done.ok ? '' : done.error.details);
        return waitFor(
          `${call}: ${PowerState[state]}`,
          async () => {
            const got = await client.get(uid);
            return got.status?.powerState === state && !(call === 'start' && got.status.vmmPid === 0) ? got : undefined;
          },
          30_000,
          50,
        );
      };
      const stopped = await power('stop', PowerState.STOPPED);
      assert.equal(stopped.status?.state, State.CREATED);
      assert.equal(stopped.status?.vmmPid, 0);
      assert.ok(processGone(vm.status?.vmmPid ?? 0), 'the VMM is gone');
      host.ip('link', 'show', iface?.hostDeviceName ?? ''); // the tap is kept (throws if gone)
      const started = await power('start', PowerState.RUNNING);
      pids.add(started.status?.vmmPid ?? 0);
      assert.notEqual(started.status?.vmmPid, vm.status?.vmmPid);
      assert.equal(started.status?.networkInterfaces.eth1?.macAddress, iface?.macAddress, 'same MAC');
      assert.equal(started.status?.networkInterfaces.eth1?.hostDeviceName, iface?.hostDeviceName, 'same tap');
      await waitFor(
        'the guest answers again',
        () => {
          try {
            execFileSync('ip', ['netns', 'exec', host.name, 'busybox', 'ping', '-c', '1', '-W', '1', ip], { stdio: 'ignore' });
            return true;
          } catch {
            return false;
          }
        },
        BOOT_DEADLINE_MS,
        200,
      );
      assert.equal(leaseFor(bridgeLeases, iface?.macAddress ?? ''), ip, 'the same lease');
      await power('pause', PowerState.PAUSED);
      assert.throws(
        () => execFileSync('ip', ['netns', 'exec', host.name, 'busybox', 'ping', '-c', '2', '-W', '1', ip], { stdio: 'ignore' }),
        'a paused guest does not answer',
      );
      assert.equal(processGone(started.status?.vmmPid ?? 0), false, 'the VMM is kept while paused');
      await power('resume', PowerState.RUNNING);
      pingFrom(host.name, ip);
      // Restart: a new VMM (same devices), the guest boots again and answers at the same address.
      const restartAsked = await lifecycle.lifecycle('restart', uid);
      assert.ok(restartAsked.ok, restartAsked.ok ? '' : restartAsked.error.details);
      const restarted = await waitFor(
        'a new VMM after restart',
        async () => {
          const got = await client.get(uid);
          const pid = got.status?.vmmPid ?? 0;
          return pid !== 0 && pid !== started.status?.vmmPid && got.status?.powerState === PowerState.RUNNING ? got : undefined;
        },
        30_000,
        50,
      );
      pids.add(restarted.status?.vmmPid ?? 0);
      assert.ok(processGone(started.status?.vmmPid ?? 0), 'the old VMM is gone');
      assert.equal(restarted.status?.networkInterfaces.eth1?.hostDeviceName, iface?.hostDeviceName, 'same tap after restart');
      await waitFor(
        'the guest answers after restart',
        () => {
          try {
            execFileSync('ip', ['netns', 'exec', host.name, 'busybox', 'ping', '-c', '1', '-W', '1', ip], { stdio: 'ignore' });
            return true;
          } catch {
            return false;
          }
        },
        BOOT_DEADLINE_MS,
        200,
      );
      let text = '';
      const logs = lifecycle.logs({ uid, follow: false, tailBytes: 0n }, (data) => (text += Buffer.from(data).toString('utf8')));
      assert.ok((await logs.done).ok);
      // The guest names its first NIC eth0 whatever the spec's device id; the marker carries the MAC.
      assert.ok(
        text.includes(`FLINTLOCK-GUEST-NIC eth0 ${iface?.macAddress ?? ''}`),
        `the console log holds the guest's markers (${text.length} chars: ${text.slice(-300)})`,
      );
      await deleteAndWait(uid);
    } finally {
      lifecycle.close();
    }
  });

  it('e) a daemon restart re-adopts running VMMs instead of restarting them', async () => {
    const vms = await Promise.all([
      createdVm('keep-1', [{ deviceId: 'eth1', type: IfaceType.TAP }]),
      createdVm('keep-2', [{ deviceId: 'eth1', type: IfaceType.TAP }]),
    ]);
    client.close();
    assert.equal(await daemon.stop(), 0);
    for (const vm of vms) assert.equal(processGone(vm.status?.vmmPid ?? 0), false, 'VMMs outlive the daemon');
    daemon = await startDaemon({ netns: host.name, dir: join(dir, 'daemon'), config });
    client = new TestClient(daemon.endpoint);
    await new Promise((r) => setTimeout(r, 1500)); // a reconcile and a few watcher passes
    for (const vm of vms) {
      const now = await client.get(vm.spec?.uid ?? '');
      assert.equal(now.status?.state, State.CREATED);
      assert.equal(now.status?.vmmPid, vm.status?.vmmPid, 'same VMM process');
      assert.equal(now.status?.restartCount, 0);
    }
    await Promise.all(vms.map((vm) => deleteAndWait(vm.spec?.uid ?? '')));
  });
});
