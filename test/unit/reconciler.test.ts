import { VmmUidIndex } from '../../src/core/vmm-uid-index.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { monotonicFactory } from 'ulid';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import type { NetworkInterfaceSpec } from '../../src/core/model.js';
import { backoffDelay, Reconciler, type ReconcilerOptions } from '../../src/core/reconciler.js';
import { VmmWatcher } from '../../src/core/vmm-watcher.js';
import { MicroVMService } from '../../src/core/service.js';
import { MACVTAP_PARENT_REQUIRED, macvtapNodePath, TAP_BRIDGE_REQUIRED } from '../../src/core/steps/network.js';
import type { HostNetworkConfig, StepPorts } from '../../src/core/steps/step.js';
import type { VmmIdRange } from '../../src/core/sandbox.js';
import { DEFAULT_LIMITS, type CreateInput } from '../../src/core/validation.js';
import { MemoryCgroups, MemoryCidata, MemoryFilesystem, MemoryImages, MemoryNetwork, MemoryProcesses, MemoryProvider } from '../helpers/doubles.js';
import { FakeTime } from '../helpers/fake-time.js';
import { waitFor } from '../helpers/wait.js';

/** The daemon's owner id in device aliases. */
const OWNER = '0123456789ab';

const FAST: ReconcilerOptions = { concurrency: 4, maxRetry: 3, backoffBaseMs: 10, backoffMaxMs: 40, resyncPeriodMs: 60_000 };

function input(name: string, interfaces: NetworkInterfaceSpec[] = [{ deviceId: 'eth0', type: 'macvtap' }]): CreateInput {
  return {
    name,
    namespace: 'ns1',
    labels: {},
    vcpu: 1,
    memoryMb: 256,
    kernel: { image: 'registry.local/kernel:1', cmdline: {}, addNetworkConfig: false },
    rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'registry.local/root:1' } },
    additionalVolumes: [],
    interfaces,
    metadata: {},
    provider: '',
    allowGuestAgent: false,
  };
}

describe('reconciler', () => {
  let dir: string;
  let repo: SqliteMicroVMRepository;
  let network: MemoryNetwork;
  let fs: MemoryFilesystem;
  let provider: MemoryProvider;
  let images: MemoryImages;
  let processes: MemoryProcesses;
  let cidata: MemoryCidata;
  let cgroups: MemoryCgroups;
  let reconciler: Reconciler;
  let service: MicroVMService;

  function build(
    options: ReconcilerOptions = FAST,
    hostNetwork: HostNetworkConfig = { parentIface: 'eth0', bridgeName: 'br0', deviceOwner: OWNER },
    /** null: VMMs keep the daemon's uid. */
    idRange: VmmIdRange | null = { start: 1_879_048_192, count: 65_536 },
    time?: FakeTime,
  ): void {
    const nextUlid = monotonicFactory();
    const providers = new StaticProviderRegistry([provider], 'qemu');
    const ports: StepPorts = {
      repo,
      network,
      images,
      fs,
      providers,
      clock: time ?? { now: () => Date.now() },
      ids: { next: () => nextUlid() },
      hostNetwork,
      processes,
      cidata,
      deleteVmTimeoutMs: 1000,
      // The daemon's index of held uids (plans.test.ts covers the steps without one).
      sandbox: { ...(idRange !== null ? { idRange, vmmUids: new VmmUidIndex(repo) } : {}), cgroups, limits: { memoryOverheadMb: 64, pidsMax: 512 } },
    };
    reconciler = new Reconciler(ports, repo, ports.clock, silentLogger(), options, time);
    service = new MicroVMService({ repo, reconciler, providers, limits: DEFAULT_LIMITS, clock: ports.clock, ids: ports.ids, log: silentLogger() });
    reconciler.start();
  }

  function create(name: string, interfaces?: NetworkInterfaceSpec[]): string {
    const created = service.create(input(name, interfaces));
    assert.ok(created.ok, created.ok ? '' : created.error.message);
    return created.value.id.uid;
  }

  const stateOf = (uid: string): string | undefined => repo.get(uid)?.status.state;
  /** The VM's VMM is a live (in-memory) process. */
  const vmmRunning = (uid: string): boolean => {
    const vmm = repo.get(uid)?.status.vmm;
    return vmm !== undefined && processes.alive.get(vmm.pid)?.startTime === vmm.startTime;
  };
  const startsOf = (uid: string): number => provider.starts.filter((l) => l.vm.id.uid === uid).length;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fl-reconciler-'));
    repo = SqliteMicroVMRepository.open(dir);
    network = new MemoryNetwork();
    fs = new MemoryFilesystem();
    processes = new MemoryProcesses();
    provider = new MemoryProvider(processes);
    images = new MemoryImages(fs);
    cidata = new MemoryCidata(fs);
    cgroups = new MemoryCgroups();
  });

  afterEach(async () => {
    await reconciler.stop();
    repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes a new VM to CREATED: state dir, devices recorded and aliased, macvtap node, VMM running', async () => {
    build();
    const uid = create('vm1', [
      { deviceId: 'eth0', type: 'macvtap', guestMac: '02:aa:bb:cc:dd:ee' },
      { deviceId: 'eth1', type: 'tap' },
    ]);
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const vm = repo.get(uid);
    assert.ok(vm);
    const mac = vm.status.interfaces.eth0;
    const tap = vm.status.interfaces.eth1;
    assert.match(mac?.hostDeviceName ?? '', /^flvtap[0-9a-f]{7}$/);
    assert.match(tap?.hostDeviceName ?? '', /^fltap[0-9a-f]{7}$/);
    assert.equal(mac?.macAddress, '02:aa:bb:cc:dd:ee', 'the macvtap carries the guest MAC');
    // A tap's guest MAC is generated: locally administered, unicast.
    const firstOctet = Number.parseInt(tap?.macAddress.slice(0, 2) ?? 'zz', 16);
    assert.equal(firstOctet & 0b11, 0b10);
    assert.equal(network.links.get(mac?.hostDeviceName ?? '')?.alias, `flintlock:${OWNER}:ns1/vm1/${uid}`);
    assert.equal(network.links.get(tap?.hostDeviceName ?? '')?.master, 'br0');
    assert.deepEqual(
      repo
        .devices(uid)
        .map((d) => d.deviceId)
        .sort(),
      ['eth0', 'eth1'],
    );
    assert.deepEqual(fs.nodes.get(macvtapNodePath(fs.vmDir(vm.id), 'eth0')), { major: 246, minor: mac?.index });
    assert.ok(vmmRunning(uid));
    assert.equal(vm.status.consoleLogPath, `${fs.vmDir(vm.id)}/console.log`);
    assert.equal(vm.status.retry, 0);
  });

  it('takes the kernel from its image and gives the VM a private copy of its root volume', async () => {
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const vm = repo.get(uid);
    assert.ok(vm);
    // Not the unpacked image (private: it holds the image's setuid files) but a copy VMMs can read.
    assert.deepEqual(vm.status.kernelMount, { type: 'hostpath', source: '/images/files/726567697374-boot_vmlinux' });
    assert.equal(fs.files.get('/images/files/726567697374-boot_vmlinux'), 'copy of /images/rootfs/registry_local_kernel_1/boot/vmlinux');
    assert.deepEqual(vm.status.volumes.root, { type: 'hostpath', source: `${fs.vmDir(vm.id)}/volumes/root.img` });
    assert.equal(fs.files.get(`${fs.vmDir(vm.id)}/volumes/root.img`), 'copy of /images/ext4/726567697374-auto.img');
    assert.deepEqual(Object.keys(vm.status.images ?? {}).sort(), ['kernel', 'volume:root']);
    assert.deepEqual(images.pulls.sort(), ['registry.local/kernel:1', 'registry.local/root:1']);
  });

  it('fails with a message naming the image and listing boot/ when the kernel file is missing', async () => {
    build({ ...FAST, maxRetry: 0 });
    const created = service.create({
      ...input('vm1'),
      kernel: { image: 'registry.local/kernel:1', filename: 'boot/bzImage', cmdline: {}, addNetworkConfig: false },
    });
    assert.ok(created.ok);
    const uid = created.value.id.uid;
    const vm = await waitFor('FAILED', () => (stateOf(uid) === 'failed' ? repo.get(uid) : undefined));
    assert.equal(vm.status.lastError, 'kernel boot/bzImage not found in image registry.local/kernel:1; its boot/ directory holds: initrd, vmlinux');
  });

  it('retries with growing backoff, then FAILS with the reason recorded', async () => {
    provider.available = { available: false, reason: 'binary "qemu-system-x86_64" not found' };
    const seen = new Set<number>();
    repo.onChange((change) => {
      if (change.kind === 'upsert') seen.add(change.vm.status.retry);
    });
    build();
    const uid = create('vm1');
    const failed = await waitFor('FAILED', () => (stateOf(uid) === 'failed' ? repo.get(uid) : undefined));
    assert.equal(failed.status.retry, FAST.maxRetry + 1);
    assert.match(
      failed.status.failureReason ?? '',
      /reconcile failed 4 times; last error: microvm provider qemu is not available: binary "qemu-system-x86_64" not found/,
    );
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4], 'every retry was recorded');
    assert.equal(failed.status.nextRetryAt, undefined);
    assert.equal(repo.queue().length, 0, 'a FAILED VM leaves the queue');
    // The devices were made before the VMM step failed and are kept for the record.
    assert.equal(repo.devices(uid).length, 1);
  });

  it('recovers from transient failures and resets the retry counter', async () => {
    provider.failStarts = 2;
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const vm = repo.get(uid);
    assert.equal(vm?.status.retry, 0);
    assert.equal(vm?.status.lastError, undefined);
    assert.equal(startsOf(uid), 3);
  });

  it('computes exponential backoff capped at the maximum', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 10].map((r) => backoffDelay(r, 5000, 300_000)),
      [5000, 10_000, 20_000, 40_000, 80_000, 300_000],
    );
  });

  it('fails at once, with the original messages and the config key, when no parent or bridge is configured', async () => {
    build(FAST, { deviceOwner: OWNER });
    const macvtap = create('vm-macvtap');
    const tap = create('vm-tap', [{ deviceId: 'eth0', type: 'tap' }]);
    const a = await waitFor('macvtap VM FAILED', () => (stateOf(macvtap) === 'failed' ? repo.get(macvtap) : undefined));
    const b = await waitFor('tap VM FAILED', () => (stateOf(tap) === 'failed' ? repo.get(tap) : undefined));
    assert.equal(a.status.lastError, MACVTAP_PARENT_REQUIRED);
    assert.equal(b.status.lastError, TAP_BRIDGE_REQUIRED);
    // Permanent: FAILED after the first attempt, not retried to exhaustion.
    assert.equal(a.status.retry, 1);
    assert.match(a.status.failureReason ?? '', /config key parent-iface\) \(not retried/);
    assert.equal(network.links.size, 0);
  });

  it('names a missing bridge in the failure', async () => {
    build(FAST, { parentIface: 'eth0', bridgeName: 'br9', deviceOwner: OWNER });
    const uid = create('vm1', [{ deviceId: 'eth0', type: 'tap' }]);
    const vm = await waitFor('FAILED', () => (stateOf(uid) === 'failed' ? repo.get(uid) : undefined));
    assert.match(vm.status.failureReason ?? '', /bridge "br9" does not exist/);
  });

  it('deletes: stops the VMM, removes devices and the state dir, then forgets the VM', async () => {
    build();
    const uid = create('vm1', [{ deviceId: 'eth0', type: 'tap' }]);
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const device = repo.get(uid)?.status.interfaces.eth0?.hostDeviceName ?? '';
    assert.ok(network.links.has(device));
    assert.ok(service.delete(uid).ok);
    assert.equal(stateOf(uid) ?? 'deleting', 'deleting');
    await waitFor('record removed', () => repo.get(uid) === undefined);
    assert.equal(network.links.has(device), false);
    assert.equal(processes.alive.size, 0, 'the VMM was stopped');
    assert.equal(fs.dirs.size, 0);
    assert.equal(repo.devices(uid).length, 0);
    const again = service.get(uid);
    assert.ok(!again.ok && again.error.kind === 'not-found' && again.error.message.includes('not found'));
  });

  describe('lifecycle: stop, start, pause, resume, restart', () => {
    const settled = async (uid: string): Promise<void> => {
      await waitFor('reconciled', () => stateOf(uid) === 'created' && !repo.queue().some((e) => e.uid === uid));
      await reconciler.idle();
    };

    it('stop keeps devices and disks and runs no VMM, across a daemon restart; start runs it again with the same devices and MAC', async () => {
      build();
      const uid = create('vm1', [{ deviceId: 'eth0', type: 'tap' }]);
      await settled(uid);
      const before = repo.get(uid);
      const device = before?.status.interfaces.eth0?.hostDeviceName ?? '';
      const mac = before?.status.interfaces.eth0?.macAddress;
      const first = before?.status.vmm;
      assert.ok(first && device !== '' && mac !== undefined);
      assert.ok(service.lifecycle(uid, 'stop').ok);
      await waitFor('stopped', () => repo.get(uid)?.status.power === 'stopped');
      await settled(uid);
      const stopped = repo.get(uid);
      assert.equal(stopped?.status.vmm, undefined);
      assert.equal(processes.alive.size, 0, 'the VMM was stopped');
      assert.deepEqual(provider.stops, [first.pid], 'gracefully, through the provider');
      assert.ok(network.links.has(device), 'the tap is kept');
      assert.ok(stopped?.status.kernelMount !== undefined && fs.dirs.size > 0, 'images and the VM dir are kept');
      assert.equal(stopped?.status.restartCount ?? 0, 0, 'a stop is not an exit on its own');
      // The daemon restarts: the VM stays stopped.
      await reconciler.stop();
      build();
      await settled(uid);
      assert.equal(startsOf(uid), 1, 'not started again by the start-up reconcile');
      assert.ok(service.lifecycle(uid, 'start').ok);
      const started = await waitFor('a VMM again', () => (vmmRunning(uid) ? repo.get(uid) : undefined));
      assert.equal(started.status.interfaces.eth0?.hostDeviceName, device);
      assert.equal(started.status.interfaces.eth0?.macAddress, mac);
      assert.equal(started.status.power, 'running');
      assert.equal(startsOf(uid), 2);
    });

    it('pause and resume go through the provider, and a VMM that ends while paused comes back paused', async () => {
      build();
      const uid = create('vm1');
      await settled(uid);
      const vmm = repo.get(uid)?.status.vmm;
      assert.ok(vmm);
      assert.ok(service.lifecycle(uid, 'pause').ok);
      await waitFor('paused', () => repo.get(uid)?.status.power === 'paused');
      assert.deepEqual(provider.powerCalls, [`pause ${vmm.pid}`]);
      assert.ok(vmmRunning(uid), 'the VMM is kept');
      const watcher = new VmmWatcher(repo, processes, network, reconciler, { now: () => Date.now() }, silentLogger(), { intervalMs: 500, addressEvery: 100 });
      processes.exit(vmm.pid, 'killed');
      await watcher.check();
      const again = await waitFor('a new VMM, paused', () => {
        const vm = repo.get(uid);
        return vm?.status.power === 'paused' && vm.status.vmm !== undefined && vm.status.vmm.pid !== vmm.pid ? vm : undefined;
      });
      assert.deepEqual(provider.powerCalls, [`pause ${vmm.pid}`, `pause ${again.status.vmm?.pid}`]);
      assert.ok(service.lifecycle(uid, 'resume').ok);
      await waitFor('running', () => repo.get(uid)?.status.power === 'running');
      assert.equal(provider.powerCalls.at(-1), `resume ${again.status.vmm?.pid}`);
    });

    it('restart stops the VMM and starts a new one, once per call; it is not counted as an exit on its own', async () => {
      build();
      const uid = create('vm1');
      await settled(uid);
      const first = repo.get(uid)?.status.vmm;
      assert.ok(service.lifecycle(uid, 'restart').ok);
      const restarted = await waitFor('a new VMM', () => {
        const vm = repo.get(uid);
        return vm?.status.vmm !== undefined && vm.status.vmm.pid !== first?.pid && vmmRunning(uid) ? vm : undefined;
      });
      await settled(uid);
      assert.equal(restarted.status.restartsDone, 1);
      assert.equal(restarted.status.restartCount ?? 0, 0);
      assert.equal(startsOf(uid), 2);
      await reconciler.stop();
      build();
      await settled(uid);
      assert.equal(startsOf(uid), 2, 'a done restart is not done again after a daemon restart');
    });

    it('refuses, changing nothing, what cannot apply', async () => {
      build();
      const uid = create('vm1');
      await settled(uid);
      const refused = (action: Parameters<MicroVMService['lifecycle']>[1], pattern: RegExp, kind = 'failed-precondition'): void => {
        const version = repo.get(uid)?.version;
        const result = service.lifecycle(uid, action);
        assert.ok(!result.ok, `${action} refused`);
        assert.equal(result.error.kind, kind);
        assert.match(result.error.message, pattern);
        assert.equal(repo.get(uid)?.version, version, 'nothing changed');
      };
      refused('resume', /cannot resume microvm ns1\/vm1\/.+: it is not paused/);
      assert.ok(service.lifecycle(uid, 'stop').ok);
      refused('pause', /it is stopped: start it/);
      refused('restart', /it is stopped: start it/);
      const missing = service.lifecycle('01ARZ3NDEKTSV4RRFFQ69G5FAV', 'stop');
      assert.ok(!missing.ok && missing.error.kind === 'not-found');
      assert.ok(service.delete(uid).ok);
      refused('start', /it is being deleted/);
    });
  });

  it('lets a delete pre-empt a pending retry backoff', async () => {
    provider.available = { available: false, reason: 'not here' };
    build({ ...FAST, backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    const uid = create('vm1');
    await waitFor('first failure', () => (repo.get(uid)?.status.retry ?? 0) >= 1);
    const started = Date.now();
    assert.ok(service.delete(uid).ok);
    await waitFor('record removed', () => repo.get(uid) === undefined, 3000);
    assert.ok(Date.now() - started < 3000);
    assert.equal(network.links.size, 0, 'the device made before the failure is gone');
  });

  it('aborts a running create plan when deleted, without the create undoing the delete', async () => {
    provider.startDelayMs = 200;
    build();
    const uid = create('vm1');
    await waitFor('VMM starting', () => startsOf(uid) > 0);
    assert.ok(service.delete(uid).ok);
    await waitFor('record removed', () => repo.get(uid) === undefined);
    await new Promise((r) => setTimeout(r, 250)); // the aborted start finishes its await
    assert.equal(processes.alive.size, 0, 'no VMM outlives a deleted VM');
  });

  it('runs at most `concurrency` VMs at once and never one VM twice at once', async () => {
    provider.startDelayMs = 60;
    let active = 0;
    let peak = 0;
    const activeUids = new Set<string>();
    const start = provider.start.bind(provider);
    provider.start = async (launch) => {
      const uid = launch.vm.id.uid;
      assert.equal(activeUids.has(uid), false, 'same VM started twice at once');
      activeUids.add(uid);
      active += 1;
      peak = Math.max(peak, active);
      try {
        return await start(launch);
      } finally {
        active -= 1;
        activeUids.delete(uid);
      }
    };
    build({ ...FAST, concurrency: 2 });
    const uids = Array.from({ length: 6 }, (_, i) => create(`vm${i}`));
    for (const uid of uids) reconciler.trigger(uid); // extra triggers while queued or running
    await waitFor('all CREATED', () => uids.every((u) => stateOf(u) === 'created'), 10_000);
    assert.equal(peak, 2);
  });

  it('re-adopts on restart: a healthy VM is left alone, a missing device is recreated with the same name', async () => {
    build();
    const uid = create('vm1', [{ deviceId: 'eth0', type: 'tap' }]);
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const before = repo.get(uid);
    await reconciler.stop();
    const name = before?.status.interfaces.eth0?.hostDeviceName ?? '';
    network.links.delete(name); // e.g. the host rebooted
    network.calls.length = 0;
    build();
    await waitFor('device recreated', () => network.links.has(name));
    await reconciler.idle();
    assert.deepEqual(network.calls, [`tap ${name}`]);
    assert.equal(stateOf(uid), 'created');
    assert.equal(startsOf(uid), 1, 'the running VMM was not restarted');
  });

  it('builds the cidata disk with the generated network-config and hands the provider a launch spec in guest order', async () => {
    build();
    const uid = create('vm1', [
      { deviceId: 'eth1', type: 'tap', guestMac: '02:00:00:00:00:11' },
      { deviceId: 'eth2', type: 'macvtap', guestMac: '02:00:00:00:00:22' },
    ]);
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const vm = repo.get(uid);
    assert.ok(vm);
    const dir = fs.vmDir(vm.id);
    const launch = provider.starts.at(-1);
    assert.deepEqual(
      launch?.disks.map((d) => [d.id, d.path, d.root]),
      [
        ['root', `${dir}/volumes/root.img`, true],
        ['cidata', `${dir}/cidata.img`, false],
      ],
    );
    assert.deepEqual(
      launch?.nics.map((n) => [n.deviceId, n.mac, n.tapNode]),
      [
        ['eth1', '02:00:00:00:00:11', undefined],
        ['eth2', '02:00:00:00:00:22', `${dir}/tap-eth2`],
      ],
    );
    const files = cidata.built.get(`${dir}/cidata.img`);
    assert.match(files?.['meta-data'] ?? '', new RegExp(`instance_id: ${uid}`));
    assert.equal(files?.['network-config'], undefined, 'add_network_config is off in this spec');
  });

  it('sandbox: each VM gets its own uid/gid, a VM dir and files of that group, an owned tap, and a cgroup sized from its spec', async () => {
    build();
    const one = create('vm1', [{ deviceId: 'eth1', type: 'tap' }]);
    const two = create('vm2', [{ deviceId: 'eth1', type: 'tap' }]);
    await waitFor('CREATED', () => stateOf(one) === 'created' && stateOf(two) === 'created');
    const ids = [one, two].map((uid) => repo.get(uid)?.status.vmmIdentity);
    assert.deepEqual(ids.map((i) => i?.uid).sort(), [1_879_048_192, 1_879_048_193], 'the lowest free uids, one each');
    for (const uid of [one, two]) {
      const vm = repo.get(uid);
      assert.ok(vm?.status.vmmIdentity);
      const { uid: vmmUid, gid } = vm.status.vmmIdentity;
      assert.equal(gid, vmmUid);
      const dir = fs.vmDir(vm.id);
      assert.deepEqual(fs.modes.get(dir), { gid, mode: 0o1770 }, 'VM dir: root, the VM gid, sticky');
      assert.deepEqual(fs.modes.get(`${dir}/volumes`), { gid, mode: 0o750 });
      assert.deepEqual(fs.modes.get(`${dir}/volumes/root.img`), { gid, mode: 0o660 });
      assert.deepEqual(fs.modes.get(`${dir}/cidata.img`), { gid, mode: 0o640 });
      assert.deepEqual(fs.modes.get(`${dir}/console.log`), { gid, mode: 0o660 }, 'made by the daemon before the VMM runs');
      assert.equal(network.tapOwners.get(vm.status.interfaces.eth1?.hostDeviceName ?? ''), vmmUid, 'only its VMM may attach to the tap');
      const launch = provider.starts.find((l) => l.vm.id.uid === uid);
      assert.deepEqual(launch?.sandbox, { identity: { uid: vmmUid, gid }, cgroupProcs: [`/cgroup/flintlock/${uid}/cgroup.procs`] });
      // memory_in_mb 256 + the 64 MiB overhead configured above; pids fixed.
      assert.deepEqual(cgroups.groups.get(uid), { memoryBytes: (256 + 64) * 1024 * 1024, pidsMax: 512 });
    }
  });

  it("sandbox: delete removes the cgroup, and a removed VM's uid goes to the next VM", async () => {
    build();
    const one = create('vm1');
    await waitFor('CREATED', () => stateOf(one) === 'created');
    const first = repo.get(one)?.status.vmmIdentity?.uid;
    assert.equal(first, 1_879_048_192);
    assert.ok(service.delete(one).ok);
    await waitFor('removed', () => repo.get(one) === undefined);
    assert.deepEqual(cgroups.removed, [one]);
    assert.equal(cgroups.groups.size, 0);
    const two = create('vm2');
    await waitFor('CREATED', () => stateOf(two) === 'created');
    assert.equal(repo.get(two)?.status.vmmIdentity?.uid, first);
  });

  it('sandbox: a full uid range fails the VM with a reason; no range means no identity and no uid for the VMM', async () => {
    build({ ...FAST, maxRetry: 0 }, undefined, { start: 5000, count: 1 });
    const one = create('vm1');
    await waitFor('CREATED', () => stateOf(one) === 'created');
    const two = create('vm2');
    const failed = await waitFor('FAILED', () => (stateOf(two) === 'failed' ? repo.get(two) : undefined));
    assert.match(failed.status.lastError ?? '', /vmm-uid-range 5000:1 has no free uid left/);
    await reconciler.stop();

    build(FAST, undefined, null);
    const three = create('vm3');
    await waitFor('CREATED', () => stateOf(three) === 'created');
    const vm = repo.get(three);
    assert.equal(vm?.status.vmmIdentity, undefined);
    assert.deepEqual(provider.starts.find((l) => l.vm.id.uid === three)?.sandbox, { cgroupProcs: [`/cgroup/flintlock/${three}/cgroup.procs`] });
    assert.deepEqual(fs.modes.get(fs.vmDir(vm?.id ?? { namespace: '', name: '', uid: '' })), { gid: 0, mode: 0o700 });
  });

  it('sandbox: a failed VMM start removes the cgroup it was given', async () => {
    provider.failStarts = 1;
    build({ ...FAST, maxRetry: 0 });
    const uid = create('vm1');
    await waitFor('FAILED', () => stateOf(uid) === 'failed');
    assert.deepEqual(cgroups.removed, [uid]);
    assert.equal(cgroups.groups.has(uid), false);
  });

  it('notices a VMM that ended on its own, records why, and restarts it through reconcile', async () => {
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const first = repo.get(uid)?.status.vmm;
    assert.ok(first);
    const watcher = new VmmWatcher(repo, processes, network, reconciler, { now: () => Date.now() }, silentLogger(), { intervalMs: 500, addressEvery: 1 });
    processes.exit(first.pid, 'exited with code 137');
    await watcher.check();
    assert.equal(stateOf(uid) === 'created', false, 'a VM whose VMM is gone is not CREATED');
    const restarted = await waitFor('restarted', () => {
      const vm = repo.get(uid);
      return vm?.status.state === 'created' && vm.status.vmm?.pid !== first.pid ? vm : undefined;
    });
    assert.equal(restarted.status.restartCount, 1);
    // The host saw the guest's MAC: the watcher reports its address.
    network.neighbourTable.push({ ip: '10.0.0.7', mac: restarted.status.interfaces.eth0?.macAddress ?? '' }, { ip: '10.0.0.9', mac: '02:99:99:99:99:99' });
    await watcher.check();
    assert.deepEqual(repo.get(uid)?.status.guestIps, ['10.0.0.7']);
    assert.equal(restarted.status.lastExitReason, `vmm process ${first.pid} ended: exited with code 137`);
    assert.equal(startsOf(uid), 2);
  });

  it('reports the step and the pull progress while a pull runs, and clears both once CREATED', async () => {
    build();
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    images.progress = (ref) =>
      ref === 'registry.local/kernel:1' ? [{ ref, layer: 'sha256:aa', bytes: 300, total: 1000, imageBytes: 300, imageTotal: 4000 }] : [];
    images.delay = (ref) => (ref === 'registry.local/kernel:1' ? released : Promise.resolve());
    const uid = create('vm1');
    // The first report of a reconcile is written at once; the pull's lands within the 500 ms throttle.
    // The steps that ran alongside the kernel's finish; the kernel's pull is still shown, alone.
    await waitFor('the pull progress', () => repo.get(uid)?.status.pullProgress !== undefined && repo.get(uid)?.status.reconcileStep === 'kernel_image', 2000);
    assert.deepEqual(repo.get(uid)?.status.pullProgress, { image: 'registry.local/kernel:1', bytesDone: 300, bytesTotal: 4000 });
    release();
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const status = repo.get(uid)?.status;
    assert.equal(status?.reconcileStep, undefined);
    assert.equal(status?.pullProgress, undefined);
    // One VMM, one pull: the progress writes did not make the reconcile start over.
    // (reconcile-progress.test.ts checks that they go through the reconcile's own context.)
    await reconciler.idle();
    assert.equal(startsOf(uid), 1);
    assert.equal(images.pulls.filter((r) => r === 'registry.local/kernel:1').length, 1);
  });

  it('adopts a VMM that was spawned but not recorded when the daemon died, instead of starting a second one', async () => {
    provider.hangAfterSpawn = true; // the VMM exists, the daemon dies before start() returns
    build();
    const uid = create('vm1');
    await waitFor('the VMM spawned', () => processes.pidFiles.size === 1);
    assert.equal(repo.get(uid)?.status.vmm, undefined, 'not recorded in the status yet');
    const [spawned] = [...processes.pidFiles.values()];
    // "Restart": a new reconciler over the same store and host; the old one is abandoned mid-start.
    provider.hangAfterSpawn = false;
    build();
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    assert.equal(repo.get(uid)?.status.vmm?.pid, spawned?.pid, 'the VMM that was already running');
    assert.equal(provider.starts.length, 1, 'no second VMM was started');
    assert.equal(processes.alive.size, 1);
  });

  it('kills a VMM that was spawned but not recorded when its VM is deleted', async () => {
    provider.hangAfterSpawn = true;
    build();
    const uid = create('vm1');
    await waitFor('the VMM spawned', () => processes.pidFiles.size === 1);
    provider.hangAfterSpawn = false;
    build();
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const adopted = repo.get(uid)?.status.vmm;
    // And when the status lost it again (a crash right after adoption is not needed: forget it by hand).
    const vm = repo.get(uid);
    assert.ok(vm && adopted);
    const { vmm: _forgotten, ...rest } = vm.status;
    repo.saveStatus(uid, { ...rest, state: 'created' }, Date.now());
    assert.ok(service.delete(uid).ok);
    await waitFor('deleted', () => repo.get(uid) === undefined);
    assert.equal(processes.alive.size, 0, 'no VMM outlives its VM');
  });

  it('never writes back a stale snapshot: a VMM restarted while the watcher checked the old one is kept', async () => {
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const old = repo.get(uid)?.status.vmm;
    assert.ok(old);
    // isAlive of the old VMM answers only after the reconciler has replaced it.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const slow = Object.create(processes) as MemoryProcesses;
    slow.isAlive = async (p) => {
      if (p.pid === old.pid) {
        await gate;
        return false;
      }
      return processes.isAlive(p);
    };
    const watcher = new VmmWatcher(repo, slow, network, reconciler, { now: () => Date.now() }, silentLogger(), { intervalMs: 500, addressEvery: 100 });
    const checking = watcher.check();
    processes.exit(old.pid, 'killed');
    const fresh = await processes.spawn();
    const current = repo.get(uid);
    assert.ok(current);
    repo.saveStatus(uid, { ...current.status, vmm: { pid: fresh.pid, startTime: fresh.startTime, provider: 'qemu' } }, Date.now());
    release();
    await checking;
    const after = repo.get(uid);
    assert.equal(after?.status.state, 'created', 'the watcher did not mark the VM pending from its stale snapshot');
    assert.equal(after?.status.vmm?.pid, fresh.pid, 'the new VMM is still the recorded one');
  });

  it('never marks a VM CREATED over a change made during its reconcile: the VMM that ended meanwhile is restarted', async () => {
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const first = repo.get(uid)?.status.vmm;
    assert.ok(first);
    const watcher = new VmmWatcher(repo, processes, network, reconciler, { now: () => Date.now() }, silentLogger(), { intervalMs: 500, addressEvery: 100 });
    // A resync's reconcile finds nothing to do; while its last check runs, the VMM ends and the
    // watcher records it, before the reconcile writes its outcome.
    const isAlive = processes.isAlive.bind(processes);
    let once = true;
    processes.isAlive = async (p) => {
      const alive = await isAlive(p);
      if (once && p.pid === first.pid) {
        once = false;
        processes.exit(first.pid, 'exited with code 1');
        await watcher.check();
      }
      return alive;
    };
    let exited = false;
    const lies: number[] = [];
    const unsubscribe = repo.onChange((c) => {
      if (c.kind === 'upsert' && exited && c.vm.status.state === 'created' && c.vm.status.vmm?.pid === first.pid) lies.push(c.vm.version);
    });
    const exit = processes.exit.bind(processes);
    processes.exit = (pid, reason) => {
      exited = true;
      exit(pid, reason);
    };
    reconciler.trigger(uid);
    const restarted = await waitFor('a new VMM', () => {
      const vm = repo.get(uid);
      return vm?.status.state === 'created' && vm.status.vmm?.pid !== first.pid ? vm : undefined;
    });
    assert.equal(restarted.status.lastExitReason, `vmm process ${first.pid} ended: exited with code 1`, 'the exit the watcher recorded was kept');
    assert.equal(restarted.status.restartCount, 1);
    assert.ok(vmmRunning(uid));
    unsubscribe();
    assert.deepEqual(lies, [], 'never stored as CREATED with the VMM that had ended');
  });

  it('refuses a status write from a stale version (compare-and-swap)', () => {
    build();
    const uid = create('vm1');
    const seen = repo.get(uid);
    assert.ok(seen);
    assert.ok(repo.saveStatus(uid, { ...seen.status, lastError: 'first' }, Date.now(), seen.version), 'the current version writes');
    assert.equal(repo.saveStatus(uid, { ...seen.status, lastError: 'stale' }, Date.now(), seen.version), undefined, 'the old version does not');
    assert.equal(repo.get(uid)?.status.lastError, 'first');
  });

  it('repairs a VM whose host device disappeared under the running guest: VMM stopped, new device, VMM started', async () => {
    build();
    const uid = create('vm1');
    await waitFor('CREATED', () => stateOf(uid) === 'created');
    const before = repo.get(uid);
    const device = before?.status.interfaces.eth0?.hostDeviceName ?? '';
    const first = before?.status.vmm;
    assert.ok(first && device !== '');
    const watcher = new VmmWatcher(repo, processes, network, reconciler, { now: () => Date.now() }, silentLogger(), {
      intervalMs: 500,
      addressEvery: 1,
      devicesEvery: 1,
    });
    await watcher.check();
    assert.equal(stateOf(uid), 'created', 'nothing happens while the device is there');
    network.links.delete(device); // someone ran `ip link del`
    await watcher.check();
    assert.ok(processes.signals.includes(`SIGKILL ${first.pid}`), 'the VMM with the dead NIC was stopped');
    const repaired = await waitFor('repaired', () => {
      const vm = repo.get(uid);
      return vm?.status.state === 'created' && vm.status.vmm?.pid !== first.pid ? vm : undefined;
    });
    const now = repaired.status.interfaces.eth0?.hostDeviceName ?? '';
    assert.ok(network.links.has(now), 'a host device exists again for eth0');
    assert.match(repaired.status.lastExitReason ?? '', new RegExp(`host device ${device} \\(eth0\\) disappeared under the running guest`));
    assert.equal(repaired.status.restartCount, 1);
  });

  describe('backoff, in fake time', () => {
    const DEFAULTS: ReconcilerOptions = { concurrency: 4, maxRetry: 10, backoffBaseMs: 5000, backoffMaxMs: 300_000, resyncPeriodMs: 600_000 };
    const BACKOFF = [5000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000];
    const attempts = (): number => images.pulls.length; // each attempt pulls the kernel first, and fails there

    it('waits out each retry (5 s doubling to 5 min), then FAILS after maximum-retry', async () => {
      const time = new FakeTime();
      images.failWith = 'registry unreachable';
      build(DEFAULTS, undefined, undefined, time);
      const uid = create('vm1');
      await time.advance(0);
      assert.equal(attempts(), 1);
      for (const [i, delay] of BACKOFF.entries()) {
        const vm = repo.get(uid);
        assert.equal(vm?.status.retry, i + 1);
        assert.equal((vm?.status.nextRetryAt ?? 0) - time.now(), delay, `retry ${i + 1} is due ${delay} ms after the failure`);
        await time.advance(delay - 1);
        assert.equal(attempts(), i + 1, `no attempt before the backoff of retry ${i + 1} is over`);
        await time.advance(1);
        assert.equal(attempts(), i + 2, `retry ${i + 1} runs when it is due`);
      }
      const failed = repo.get(uid);
      assert.equal(failed?.status.state, 'failed');
      assert.match(failed?.status.failureReason ?? '', /reconcile failed 11 times; last error: registry unreachable/);
      await time.advance(3_600_000);
      assert.equal(attempts(), 11, 'a FAILED VM is not retried');
    });

    it('starts again from 5 s after a success', async () => {
      const time = new FakeTime();
      images.failWith = 'registry unreachable';
      build(DEFAULTS, undefined, undefined, time);
      const uid = create('vm1');
      await time.advance(0);
      images.failWith = undefined;
      await time.advance(5000);
      assert.equal(stateOf(uid), 'created');
      assert.equal(repo.get(uid)?.status.retry, 0);
      // The VMM dies and its restart fails: the first retry of this new run waits 5 s again.
      provider.failStarts = 1;
      const vmm = repo.get(uid)?.status.vmm;
      processes.exit(vmm?.pid ?? 0, 'killed');
      reconciler.trigger(uid);
      await time.advance(0);
      assert.equal(repo.get(uid)?.status.retry, 1);
      assert.equal((repo.get(uid)?.status.nextRetryAt ?? 0) - time.now(), 5000);
      await time.advance(5000);
      assert.equal(stateOf(uid), 'created');
    });

    it('lets a delete pre-empt a pending retry', async () => {
      const time = new FakeTime();
      images.failWith = 'registry unreachable';
      build(DEFAULTS, undefined, undefined, time);
      const uid = create('vm1');
      await time.advance(0);
      assert.equal((repo.get(uid)?.status.nextRetryAt ?? 0) - time.now(), 5000);
      assert.ok(service.delete(uid).ok);
      await time.advance(0);
      assert.equal(repo.get(uid), undefined, 'deleted at once, not after the backoff');
    });

    it("runs a new VM's first attempt before other VMs' retries", async () => {
      const time = new FakeTime();
      images.failWith = 'registry unreachable';
      images.failOnly = new Set(['registry.local/bad:1']);
      build({ ...DEFAULTS, concurrency: 1 }, undefined, undefined, time);
      const bad = (name: string): string => {
        const created = service.create({ ...input(name), kernel: { image: 'registry.local/bad:1', cmdline: {}, addNetworkConfig: false } });
        assert.ok(created.ok);
        return created.value.id.uid;
      };
      for (let i = 0; i < 30; i++) bad(`bad-${i}`);
      await time.advance(0);
      const badPulls = (): number => images.pulls.filter((r) => r === 'registry.local/bad:1').length;
      assert.equal(badPulls(), 30, 'every failing VM had its first attempt');
      // From now on each failing pull takes 10 ms: the retries, all due at 5 s, queue up.
      images.delay = (ref) => (ref === 'registry.local/bad:1' ? new Promise((r) => time.after(10, r)) : Promise.resolve());
      // All 30 retries come due at once; a healthy VM is created at that very moment.
      let healthy = '';
      time.after(5005, () => (healthy = create('healthy')));
      await time.advance(5005 + 20);
      assert.equal(stateOf(healthy), 'created', 'created within 20 ms of a queue of 30 retries taking 10 ms each');
      const order = images.pulls.slice(30);
      const healthyAt = order.indexOf('registry.local/kernel:1');
      // (A retry pulls its root volume alongside the failing kernel: count the kernels.)
      const retriesFirst = order.slice(0, healthyAt).filter((r) => r === 'registry.local/bad:1').length;
      assert.ok(healthyAt >= 0 && retriesFirst <= 1, `the healthy VM went before the retries that were due with it (${retriesFirst} retries ran first)`);
      await time.advance(1000);
      assert.equal(badPulls(), 60, 'and the retries all ran after it');
      images.delay = undefined;
    });

    it("shares the workers between namespaces: a quiet namespace's new VM does not wait behind another namespace's flood of first attempts", async () => {
      const time = new FakeTime();
      images.failWith = 'registry unreachable';
      images.failOnly = new Set(['registry.local/bad:1']);
      // Each failing pull takes 10 ms of a worker.
      images.delay = (ref) => (ref === 'registry.local/bad:1' ? new Promise((r) => time.after(10, r)) : Promise.resolve());
      build({ ...DEFAULTS, concurrency: 1 }, undefined, undefined, time);
      const createIn = (namespace: string, name: string, image: string): string => {
        const created = service.create({ ...input(name), namespace, kernel: { image, cmdline: {}, addNetworkConfig: false } });
        assert.ok(created.ok, created.ok ? '' : created.error.message);
        return created.value.id.uid;
      };
      // A flood of 40 first attempts (none of them a retry) from one namespace.
      for (let i = 0; i < 40; i++) createIn('flood', `bad-${i}`, 'registry.local/bad:1');
      await time.advance(35); // three of them have run: the flood's namespace has used the worker
      const healthy = createIn('quiet', 'healthy', 'registry.local/kernel:1');
      await time.advance(15);
      assert.equal(stateOf(healthy), 'created', 'created right after the attempt that was running, not after the 36 queued before it');
      const order = images.pulls.filter((r) => r === 'registry.local/bad:1' || r === 'registry.local/kernel:1');
      const healthyAt = order.indexOf('registry.local/kernel:1');
      assert.ok(healthyAt >= 3 && healthyAt <= 5, `the healthy VM ran after ${healthyAt} of the flood's attempts`);
      await time.advance(1000);
      assert.ok(images.pulls.filter((r) => r === 'registry.local/bad:1').length >= 40, "and the flood's first attempts all ran after it");
      images.delay = undefined;
    });

    it('says "disk full" and retries with backoff when a pull hits ENOSPC', async () => {
      const time = new FakeTime();
      build(DEFAULTS, undefined, undefined, time);
      images.delay = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
      const uid = create('vm1');
      await time.advance(0);
      const vm = repo.get(uid);
      assert.equal(vm?.status.lastError, 'disk full: ENOSPC: no space left on device, write');
      assert.equal((vm?.status.nextRetryAt ?? 0) - time.now(), 5000);
      images.delay = undefined;
      await time.advance(5000);
      assert.equal(stateOf(uid), 'created');
    });

    it('retries with backoff, not at the next resync, when the outcome cannot be recorded (store full)', async () => {
      const time = new FakeTime();
      build(DEFAULTS, undefined, undefined, time);
      const uid = create('vm1');
      const save = repo.saveStatus.bind(repo);
      let failing = 2; // the first step's write, then the failure's own record
      repo.saveStatus = (...args) => {
        if (failing > 0) {
          failing -= 1;
          throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
        }
        return save(...args);
      };
      await time.advance(0);
      assert.equal(failing, 0);
      assert.notEqual(stateOf(uid), 'created');
      assert.ok(time.waiting().includes(5000), `a retry is due in 5 s (waiting: ${time.waiting().join(', ')})`);
      await time.advance(5000);
      assert.equal(stateOf(uid), 'created');
    });

    describe('crash-loop backoff of VMM restarts', () => {
      const STABLE_MS = 60_000;
      const crashLoop = { backoffBaseMs: DEFAULTS.backoffBaseMs, backoffMaxMs: DEFAULTS.backoffMaxMs, stableMs: STABLE_MS };
      let time: FakeTime;
      let watcher: VmmWatcher;
      let uid: string;

      /** The running VMM ends on its own `ranMs` after it started; the watcher notices. */
      async function vmmEndsAfter(ranMs: number): Promise<void> {
        await time.advance(ranMs);
        const vmm = repo.get(uid)?.status.vmm;
        assert.ok(vmm !== undefined && vmmRunning(uid), 'a VMM is running');
        processes.exit(vmm.pid, 'exited with code 1');
        await watcher.check();
      }

      beforeEach(async () => {
        time = new FakeTime();
        build(DEFAULTS, undefined, undefined, time);
        watcher = new VmmWatcher(repo, processes, network, reconciler, time, silentLogger(), { intervalMs: 500, addressEvery: 1000, crashLoop });
        uid = create('vm1');
        await time.advance(0);
        assert.equal(stateOf(uid), 'created');
      });

      it('restarts at once after one quick exit, then waits 5 s, 10 s, ... up to 5 min, shown in the status', async () => {
        await vmmEndsAfter(1000);
        assert.equal(repo.get(uid)?.status.crashLoopCount, 1);
        assert.equal(repo.get(uid)?.status.nextRestartAt, undefined, 'one crash is not a loop');
        await time.advance(0);
        assert.equal(startsOf(uid), 2, 'restarted at once');
        for (const [i, delay] of BACKOFF.slice(0, 8).entries()) {
          await vmmEndsAfter(1000);
          const waiting = repo.get(uid);
          assert.equal(waiting?.status.state, 'pending');
          assert.equal(waiting?.status.crashLoopCount, i + 2);
          assert.equal((waiting?.status.nextRestartAt ?? 0) - time.now(), delay, `exit ${i + 2} in a row waits ${delay} ms`);
          assert.equal(waiting?.status.retry, 0, 'a crash loop is not a failed reconcile: the VM is never FAILED for it');
          await time.advance(delay - 1);
          assert.equal(startsOf(uid), i + 2, `not restarted before the ${delay} ms are over`);
          await time.advance(1);
          assert.equal(startsOf(uid), i + 3, 'restarted when due');
          assert.equal(stateOf(uid), 'created');
          assert.equal(repo.get(uid)?.status.nextRestartAt, undefined, 'the wait is over');
        }
      });

      it('ends the loop once a VMM runs through the stable period: the next exit restarts at once', async () => {
        await vmmEndsAfter(1000);
        await time.advance(0);
        await vmmEndsAfter(1000);
        await time.advance(5000);
        assert.equal(startsOf(uid), 3);
        await time.advance(STABLE_MS);
        await watcher.check();
        assert.equal(repo.get(uid)?.status.crashLoopCount, undefined, 'a VMM that ran 60 s ended the loop');
        await vmmEndsAfter(1000);
        assert.equal(repo.get(uid)?.status.nextRestartAt, undefined);
        await time.advance(0);
        assert.equal(startsOf(uid), 4, 'restarted at once');
      });

      it('keeps waiting across a restart of the daemon; neither a resync nor a trigger cuts the wait short', async () => {
        await vmmEndsAfter(1000);
        await time.advance(0);
        await vmmEndsAfter(1000);
        assert.equal((repo.get(uid)?.status.nextRestartAt ?? 0) - time.now(), 5000);
        await reconciler.stop();
        build({ ...DEFAULTS, resyncPeriodMs: 1000 }, undefined, undefined, time); // the daemon starts again, and resyncs every second
        await time.advance(2000);
        reconciler.trigger(uid); // any other reason to reconcile it meanwhile
        await time.advance(2999);
        assert.equal(startsOf(uid), 2, 'not restarted early by the start-up reconcile, a resync or a trigger');
        await time.advance(1);
        assert.equal(startsOf(uid), 3);
      });

      it('lets a delete pre-empt the wait', async () => {
        await vmmEndsAfter(1000);
        await time.advance(0);
        await vmmEndsAfter(1000);
        assert.ok(repo.get(uid)?.status.nextRestartAt !== undefined);
        assert.ok(service.delete(uid).ok);
        await time.advance(0);
        assert.equal(repo.get(uid), undefined, 'deleted at once, not after the backoff');
        assert.equal(startsOf(uid), 2);
      });
    });

    describe('cancellation reaches the slow ports', () => {
      it('a delete does not wait for an image pull: the pull is told to stop and the VM is gone at once', async () => {
        const time = new FakeTime();
        images.delay = () => new Promise<void>(() => undefined); // a registry that never answers
        build(DEFAULTS, undefined, undefined, time);
        const uid = create('vm1');
        await time.advance(0);
        assert.deepEqual(images.pulls, ['registry.local/kernel:1', 'registry.local/root:1'], 'the kernel and the root volume are pulled at once');
        assert.ok(service.delete(uid).ok);
        await time.advance(0);
        for (const signal of images.signals) {
          assert.equal(signal?.aborted, true, "each pull's signal aborted");
          assert.match(String(signal?.reason), /the microvm is being deleted/);
        }
        assert.equal(repo.get(uid), undefined, 'deleted without waiting for the pull');
      });

      it('a shutdown does not wait for a VMM start: the start is stopped (no VMM left), not counted, resumed at the next start', async () => {
        provider.hangAfterSpawn = true; // spawned, never reports the guest running
        build({ ...FAST, maxRetry: 0 });
        const uid = create('vm1');
        await waitFor('the VMM start', () => processes.alive.size === 1);
        const stopped = await Promise.race([reconciler.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still waiting'), 2000))]);
        assert.equal(stopped, 'stopped', 'the shutdown did not wait for the VMM start');
        assert.equal(processes.alive.size, 0, 'the aborted start left no VMM');
        assert.equal(repo.get(uid)?.status.retry, 0, 'not counted as a failed attempt');
        assert.equal(repo.get(uid)?.status.lastError, undefined);
        provider.hangAfterSpawn = false;
        build({ ...FAST, maxRetry: 0 });
        await waitFor('CREATED', () => stateOf(uid) === 'created');
      });
    });

    it('does not count a reconcile interrupted by shutdown, and resumes it at the next start', async () => {
      provider.startDelayMs = 50; // the VMM start in flight when the daemon stops is aborted
      build({ ...FAST, maxRetry: 0 });
      const uid = create('vm1');
      await waitFor('the VMM start', () => provider.starts.length === 1);
      await reconciler.stop();
      const vm = repo.get(uid);
      assert.equal(vm?.status.state, 'pending', 'not FAILED by a routine restart');
      assert.equal(vm?.status.retry, 0);
      assert.ok(
        repo.queue().some((e) => e.uid === uid),
        'still queued for the next start',
      );
      provider.startDelayMs = 0;
      build({ ...FAST, maxRetry: 0 });
      await waitFor('CREATED', () => stateOf(uid) === 'created');
    });
  });

  it('does not reconcile FAILED VMs again on restart', async () => {
    provider.available = { available: false, reason: 'nope' };
    build({ ...FAST, maxRetry: 0 });
    const uid = create('vm1');
    await waitFor('FAILED', () => stateOf(uid) === 'failed');
    await reconciler.stop();
    const version = repo.get(uid)?.version;
    build();
    await new Promise((r) => setTimeout(r, 50));
    await reconciler.idle();
    assert.equal(repo.get(uid)?.version, version);
  });
});
