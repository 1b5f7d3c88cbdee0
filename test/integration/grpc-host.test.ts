// Host/GetHostInfo of the real daemon (bin/flintlockd) in a test network namespace, over real
// gRPC with a token: refused without it; with it, the providers (QEMU usable, and why the others
// aren't), KVM or TCG as this host has it, both network modes checked against the namespace's
// devices (and a parent that disappears reported), capacity as the OS and the store have it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { rmSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { kvmSupport } from '../../src/adapters/providers/host.js';
import { Acceleration } from '../../src/gen/flintlock/services/ext/v1alpha1/host_pb.js';
import { MicroVMStatus_MicroVMState as State, NetworkInterface_IfaceType as IfaceType } from '../../src/gen/flintlock/types/microvm_pb.js';
import { daemonVersion } from '../../src/daemon/version.js';
import { FL, makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, QEMU_DAEMON } from '../helpers/prerequisites.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'host-info-token';

describeWith('Host/GetHostInfo', QEMU_DAEMON, {}, () => {
  let ns: TestNetns;
  let dir: string;
  let daemon: DaemonHandle;
  let client: TestClient;

  before(async () => {
    ns = createTestNetns('flhost');
    dir = makeTempDir('fl-host-');
    daemon = await startDaemon({
      netns: ns.name,
      dir,
      config: {
        'parent-iface': 'eth0',
        'bridge-name': 'br0',
        'default-provider': 'qemu',
        'qemu-bin': 'qemu-system-x86_64',
        'firecracker-bin': '',
        'basic-auth-token': TOKEN,
        'maximum-retry': 1,
        'retry-backoff-base': '20ms',
        'retry-backoff-max': '50ms',
      },
    });
    client = new TestClient(daemon.endpoint, { authorization: `Basic ${Buffer.from(TOKEN).toString('base64')}` });
  });

  after(async () => {
    client?.close();
    await daemon?.stop();
    ns?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a caller without the token', async () => {
    const anonymous = new TestClient(daemon.endpoint);
    try {
      await assert.rejects(anonymous.hostInfo(), (e: ServiceError) => e.code === grpcStatus.UNAUTHENTICATED);
    } finally {
      anonymous.close();
    }
  });

  it('reports providers, acceleration, network modes, capacity and version', async () => {
    const host = await client.hostInfo();
    assert.equal(host.daemonVersion, daemonVersion());
    assert.equal(host.defaultProvider, 'qemu');
    const qemu = host.providers.find((p) => p.name === 'qemu');
    assert.deepEqual([qemu?.available, qemu?.unavailableReason], [true, '']);
    assert.ok(qemu?.capabilities.includes('tap') && qemu.capabilities.includes('macvtap'), qemu?.capabilities.join(','));
    const firecracker = host.providers.find((p) => p.name === 'firecracker');
    assert.equal(firecracker?.available, false);
    assert.equal(firecracker?.unavailableReason, 'firecracker-bin is empty, so the provider is disabled');
    const kvm = kvmSupport();
    assert.equal(host.acceleration, kvm.usable ? Acceleration.KVM : Acceleration.TCG);
    assert.equal(host.accelerationReason, kvm.reason);
    assert.deepEqual(
      host.networkModes.map((m) => [m.type, m.configKey, m.device, m.usable, m.problem]),
      [
        [IfaceType.MACVTAP, 'parent-iface', 'eth0', true, ''],
        [IfaceType.TAP, 'bridge-name', 'br0', true, ''],
      ],
    );
    assert.equal(host.capacity?.cpus, cpus().length);
    assert.equal(host.capacity?.memoryTotalBytes, BigInt(totalmem()));
    const available = host.capacity?.memoryAvailableBytes ?? 0n;
    assert.ok(available > 0n && available <= BigInt(totalmem()), String(available));
    assert.deepEqual([host.capacity?.microvmsRunning, host.capacity?.vcpusAllocated, host.capacity?.microvms], [0, 0, []]);
  });

  it('counts microVMs by state and what they ask for, and sees a parent device go', async () => {
    // Its image comes from nowhere: FAILED after its retries, still allocated (not deleted).
    const uid = (await client.create(capmvmSpec('counted'))).spec?.uid ?? '';
    await waitFor('FAILED', async () => ((await client.get(uid)).status?.state === State.FAILED ? true : undefined));
    ns.ip('link', 'del', 'eth0');
    const host = await client.hostInfo();
    assert.deepEqual(
      host.capacity?.microvms.map((m) => [m.state, m.provider, m.count]),
      [[State.FAILED, 'qemu', 1]],
    );
    assert.equal(host.capacity?.vcpusAllocated, 2);
    assert.equal(host.capacity?.memoryAllocatedBytes, 512n * 1024n * 1024n);
    assert.equal(host.capacity?.microvmsRunning, 0);
    const macvtap = host.networkModes.find((m) => m.configKey === 'parent-iface');
    assert.deepEqual([macvtap?.usable, macvtap?.problem], [false, 'parent-iface "eth0" does not exist (yet): macvtap VMs will fail until it does']);
  });

  it('is what `fl host info` prints, for people and as JSON, and refused without the token', () => {
    const fl = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
      spawnSync(FL, ['--host', daemon.endpoint, ...args, 'host', 'info'], { encoding: 'utf8' });
    const text = fl('--token', TOKEN);
    assert.equal(text.status, 0, text.stderr);
    assert.equal(text.stderr, '');
    assert.match(text.stdout, new RegExp(`^Daemon: +flintlockd ${daemonVersion().replaceAll('.', '\\.')}$`, 'm'));
    assert.match(text.stdout, /^ {2}qemu \(default\) +available \(macvtap, pause, qcow2-overlay, tap\)$/m);
    assert.match(text.stdout, /^ {2}firecracker +unavailable: firecracker-bin is empty, so the provider is disabled$/m);
    assert.match(text.stdout, /^ {2}tap +bridge-name=br0 +ok$/m);
    assert.match(text.stdout, /^Acceleration: +(KVM|TCG \(emulated\)): /m);
    const json = fl('--token', TOKEN, '-o', 'json');
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { defaultProvider: string; capacity: { cpus: number } };
    assert.deepEqual([parsed.defaultProvider, parsed.capacity.cpus], ['qemu', cpus().length]);
    const refused = fl();
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /UNAUTHENTICATED|token/i);
  });
});
