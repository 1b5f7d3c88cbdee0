// The Firecracker provider against a fake Firecracker that serves the published OpenAPI document
// (../shared/ref/firecracker-api.yaml) and refuses whatever it doesn't allow (test/helpers/fake-vmm.ts),
// started plain, sandboxed (a uid of its own, a stand-in cgroup joined first) and through a fake
// jailer (the jailer's arguments, a chroot-like directory, the uid drop).
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { FirecrackerProvider, FIRECRACKER_FILES, jailerArgs, jailLayout, jailRoot, NOCLOUD_SEED } from '../../src/adapters/providers/firecracker.js';
import { CGROUP_JOIN_SCRIPT, FD_STAGE_SCRIPT } from '../../src/adapters/providers/sandbox.js';
import { renderCmdline } from '../../src/core/guest.js';
import type { LaunchSpec } from '../../src/core/ports.js';
import {
  ApiSpec,
  RecordingProcessTable,
  readRequestLog,
  requestLogPath,
  type RecordedRequest,
  fakeApiHarness,
  type FakeApiHarness,
  processTable,
  startInfoPath,
  writeFakeBin,
  writeFakeJailer,
} from '../helpers/fake-vmm.js';
import { sampleVm } from '../helpers/fixtures.js';
import { describeWith, SHARED_REF, vmmApiSpec } from '../helpers/prerequisites.js';
import { FAKE_TIMEOUTS, makeVmmDir, removeTsxCache, TEST_VMM } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const specFile = join(SHARED_REF, 'firecracker-api.yaml');

const META_DATA = 'instance_id: 01HGW2N7EH0000000000000001\nlocal-hostname: vm1\n';
const USER_DATA = '#cloud-config\nruncmd: [echo hi]\n';
const NETWORK_CONFIG = 'version: 2\nethernets:\n  eth1:\n    match: {macaddress: "02:00:00:aa:bb:01"}\n    dhcp4: true\n';

interface StartInfo {
  readonly argv: string[];
  readonly identity: { uid: number; gid: number; groups: number[] };
}

/** A /dev/kvm the VM's group may open (Debian's root:kvm 0660), here with a made-up kvm gid. */
const KVM_GROUP_DEVICE = { mode: 0o20660, gid: 4242 };

describeWith('FirecrackerProvider', [vmmApiSpec('firecracker-api.yaml')], {}, () => {
  let tmp: string;
  let fakeBin: string;
  let fakeJailer: string;
  let ignoringBin: string;
  let files: { kernel: string; initrd: string; root: string; data: string };

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fc-provider-'));
    // Searchable (not listable), the files readable: the sandboxed fake runs as a uid of its own.
    await chmod(tmp, 0o711);
    fakeBin = await writeFakeBin(tmp, 'firecracker');
    fakeJailer = await writeFakeJailer(tmp);
    ignoringBin = await writeFakeBin(tmp, 'firecracker-deaf', 'FAKE_VMM_STOP=ignore-acpi');
    files = { kernel: join(tmp, 'vmlinux'), initrd: join(tmp, 'initrd.img'), root: join(tmp, 'root.ext4'), data: join(tmp, 'data.ext4') };
    for (const f of Object.values(files)) await writeFile(f, 'x', { mode: 0o644 });
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
    removeTsxCache();
  });

  let vmCounter = 0;
  async function launchSpec(overrides: Partial<LaunchSpec> = {}): Promise<LaunchSpec> {
    const vmDir = join(tmp, `vm${++vmCounter}`);
    await mkdir(vmDir, { recursive: true });
    // As the core leaves it before a start: the VM's group on the dir and the console log.
    makeVmmDir(vmDir, TEST_VMM);
    await writeFile(join(vmDir, 'console.log'), '', { mode: 0o660 });
    await chown(join(vmDir, 'console.log'), 0, TEST_VMM.gid);
    await chmod(join(vmDir, 'console.log'), 0o660);
    const vm = sampleVm({ spec: { provider: 'firecracker' } });
    return {
      vm,
      vmDir,
      vcpu: 2,
      memoryMb: 512,
      kernelPath: files.kernel,
      initrdPath: files.initrd,
      cmdline: { panic: '0', quiet: '' },
      disks: [
        { id: 'root', path: files.root, readOnly: false, root: true, format: 'raw' },
        { id: 'data-1', path: files.data, readOnly: true, root: false, format: 'raw' },
      ],
      nics: [
        { deviceId: 'metadata', type: 'tap', hostDevice: 'fltapmeta01', mac: 'AA:FF:00:00:00:01', allowMetadata: true },
        { deviceId: 'eth1', type: 'tap', hostDevice: 'fltap0a1b2c', mac: '02:00:00:aa:bb:01' },
      ],
      cloudInit: { 'meta-data': META_DATA, 'user-data': USER_DATA, 'network-config': NETWORK_CONFIG },
      consoleLogPath: join(vmDir, 'console.log'),
      pidFile: join(vmDir, 'vmm.pid'),
      ...overrides,
    };
  }

  function provider(processes: RecordingProcessTable, bin = fakeBin): FirecrackerProvider {
    return new FirecrackerProvider({ bin, processes, log: silentLogger(), kvmUsable: () => true, ...FAKE_TIMEOUTS });
  }

  it('reports what is missing when the binary or /dev/kvm is', () => {
    const processes = processTable();
    const log = silentLogger();
    assert.deepEqual(new FirecrackerProvider({ bin: fakeBin, processes, log, kvmUsable: () => true }).availability(), { available: true });
    const noBin = new FirecrackerProvider({ bin: join(tmp, 'no-such-firecracker'), processes, log, kvmUsable: () => true }).availability();
    assert.equal(noBin.available, false);
    assert.match(noBin.reason ?? '', /firecracker-bin: ".*no-such-firecracker" not found/);
    assert.doesNotMatch(noBin.reason ?? '', /kvm/);
    const noKvm = new FirecrackerProvider({ bin: fakeBin, processes, log, kvmUsable: () => false }).availability();
    assert.equal(noKvm.available, false);
    assert.match(noKvm.reason ?? '', /\/dev\/kvm/);
    assert.doesNotMatch(noKvm.reason ?? '', /not found/);
    const neither = new FirecrackerProvider({ bin: 'no-such-firecracker', processes, log, kvmUsable: () => false }).availability();
    assert.match(neither.reason ?? '', /firecracker-bin: "no-such-firecracker" not found; \/dev\/kvm/);
    assert.match(new FirecrackerProvider({ bin: '', processes, log }).availability().reason ?? '', /firecracker-bin is empty/);
  });

  it('has the capabilities of COMPAT §3 (no macvtap), plus pause (our lifecycle extension: PATCH /vm)', () => {
    const p = provider(processTable());
    assert.equal(p.name, 'firecracker');
    assert.deepEqual([...p.capabilities].sort(), ['metadata-service', 'pause', 'tap', 'vsock']);
  });

  it('puts the console, root, MMDS seed and network-config on the kernel command line', async () => {
    const launch = await launchSpec();
    const defaults = provider(processTable()).defaultCmdline(launch);
    assert.deepEqual(defaults, {
      console: 'ttyS0',
      reboot: 'k',
      panic: '1',
      pci: 'off',
      'i8042.noaux': '',
      'i8042.nomux': '',
      'i8042.nopnp': '',
      'i8042.dumbkbd': '',
      root: '/dev/vda',
      rw: '',
      ds: 'nocloud-net;s=http://169.254.169.254/latest/',
      'network-config': Buffer.from(NETWORK_CONFIG).toString('base64'),
    });
    const bare = provider(processTable()).defaultCmdline({
      ...launch,
      disks: [],
      nics: [{ deviceId: 'eth0', type: 'tap', hostDevice: 'fltap1', mac: '02:00:00:00:00:01' }],
      cloudInit: { 'meta-data': META_DATA },
    });
    assert.equal('root' in bare || 'ds' in bare || 'network-config' in bare, false);
  });

  it('configures the VM through the API in the documented order, every request accepted by the spec; pause, resume, stop', async () => {
    const processes = processTable();
    const fc = provider(processes);
    const launch = await launchSpec();
    const vmm = await fc.start(launch);
    try {
      assert.equal(await processes.isAlive(vmm), true);
      assert.deepEqual(processes.spawned[0]?.args, ['--api-sock', join(launch.vmDir, 'firecracker.sock'), '--id', launch.vm.id.uid]);

      const bootArgs = [
        'console=ttyS0 reboot=k panic=0 pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd root=/dev/vda rw',
        `ds=${NOCLOUD_SEED}`,
        `network-config=${Buffer.from(NETWORK_CONFIG).toString('base64')}`,
        'quiet',
      ].join(' ');
      const dir = launch.vmDir;
      const expected: RecordedRequest[] = [
        {
          method: 'PUT',
          path: '/logger',
          body: { log_path: join(dir, 'firecracker.log.fifo'), level: 'Info', show_level: true, show_log_origin: false },
          status: 204,
        },
        { method: 'PUT', path: '/metrics', body: { metrics_path: join(dir, 'firecracker.metrics.fifo') }, status: 204 },
        { method: 'PUT', path: '/serial', body: { serial_out_path: join(dir, 'console.log') }, status: 204 },
        { method: 'PUT', path: '/machine-config', body: { vcpu_count: 2, mem_size_mib: 512 }, status: 204 },
        { method: 'PUT', path: '/boot-source', body: { kernel_image_path: files.kernel, boot_args: bootArgs, initrd_path: files.initrd }, status: 204 },
        { method: 'PUT', path: '/drives/root', body: { drive_id: 'root', path_on_host: files.root, is_root_device: true, is_read_only: false }, status: 204 },
        {
          method: 'PUT',
          path: '/drives/data_1',
          body: { drive_id: 'data_1', path_on_host: files.data, is_root_device: false, is_read_only: true },
          status: 204,
        },
        {
          method: 'PUT',
          path: '/network-interfaces/eth0',
          body: { iface_id: 'eth0', host_dev_name: 'fltapmeta01', guest_mac: 'AA:FF:00:00:00:01' },
          status: 204,
        },
        {
          method: 'PUT',
          path: '/network-interfaces/eth1',
          body: { iface_id: 'eth1', host_dev_name: 'fltap0a1b2c', guest_mac: '02:00:00:aa:bb:01' },
          status: 204,
        },
        { method: 'PUT', path: '/mmds/config', body: { version: 'V1', network_interfaces: ['eth0'], ipv4_address: '169.254.169.254' }, status: 204 },
        { method: 'PUT', path: '/mmds', body: { latest: { 'meta-data': META_DATA, 'user-data': USER_DATA, 'network-config': NETWORK_CONFIG } }, status: 204 },
        { method: 'PUT', path: '/actions', body: { action_type: 'InstanceStart' }, status: 204 },
      ];
      const socket = join(dir, FIRECRACKER_FILES.socket);
      assert.deepEqual(await readRequestLog(requestLogPath(socket)), expected);

      // Logs and metrics arrive through FIFOs the daemon drains.
      assert.equal((await stat(join(dir, 'firecracker.log.fifo'))).isFIFO(), true);
      assert.equal((await stat(join(dir, 'firecracker.metrics.fifo'))).isFIFO(), true);
      await waitFor('the drained log', async () => (await readFile(join(dir, 'firecracker.log'), 'utf8').catch(() => '')).includes('logger configured'));
      const metrics = await waitFor(
        'the latest metrics line',
        async () => (await readFile(join(dir, 'firecracker.metrics'), 'utf8').catch(() => '')) || undefined,
      );
      assert.equal(metrics.trim().split('\n').length, 1, 'only the latest metrics line is kept');
      assert.ok(JSON.parse(metrics) as unknown);

      // Pause and resume (our lifecycle extension): PATCH /vm, each body accepted by the spec.
      await fc.pause(dir, vmm);
      await fc.resume(dir, vmm);
      const paused = await readRequestLog(requestLogPath(socket));
      assert.deepEqual(paused.slice(expected.length), [
        { method: 'PATCH', path: '/vm', body: { state: 'Paused' }, status: 204 },
        { method: 'PATCH', path: '/vm', body: { state: 'Resumed' }, status: 204 },
      ]);

      // Stop: SendCtrlAltDel, and the VMM goes away on its own (no SIGKILL).
      await fc.stop(dir, vmm, 5000);
      assert.equal(await processes.isAlive(vmm), false);
      assert.deepEqual(processes.signals, []);
      const after = await readRequestLog(requestLogPath(socket));
      assert.deepEqual(after.slice(paused.length), [{ method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' }, status: 204 }]);
    } finally {
      await processes.signal(vmm, 'SIGKILL');
    }
  });

  it('kills the VMM when the guest ignores SendCtrlAltDel past the timeout', async () => {
    const processes = processTable();
    const fc = provider(processes, ignoringBin);
    const launch = await launchSpec({ nics: [{ deviceId: 'eth0', type: 'tap', hostDevice: 'fltap1', mac: '02:00:00:00:00:01' }] });
    const vmm = await fc.start(launch);
    const started = Date.now();
    await fc.stop(launch.vmDir, vmm, 300);
    assert.ok(Date.now() - started >= 300);
    assert.equal(await processes.isAlive(vmm), false);
    assert.deepEqual(processes.signals, [`SIGKILL ${vmm.pid}`]);
    const log = await readRequestLog(requestLogPath(join(launch.vmDir, FIRECRACKER_FILES.socket)));
    // Without a metadata NIC there is no MMDS.
    assert.equal(
      log.some((r) => r.path.startsWith('/mmds')),
      false,
    );
    assert.deepEqual(log.at(-1), { method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' }, status: 204 });
  });

  it('refuses a macvtap interface before spawning anything', async () => {
    const processes = processTable();
    const launch = await launchSpec({
      nics: [{ deviceId: 'eth0', type: 'macvtap', hostDevice: 'flvtap1', mac: '02:00:00:00:00:02', tapNode: '/nonexistent' }],
    });
    await assert.rejects(provider(processes).start(launch), /firecracker does not support macvtap interfaces \(interface eth0\)/);
    assert.equal(processes.spawned.length, 0);
  });

  it("fails with the VMM's fault_message and leaves no process when the VMM refuses the config", async () => {
    const processes = processTable();
    const launch = await launchSpec({ kernelPath: join(tmp, 'missing-vmlinux') });
    await assert.rejects(provider(processes).start(launch), (err: Error) => {
      assert.match(err.message, /firecracker failed to start: PUT \/boot-source failed with HTTP 400: kernel_image_path .*missing-vmlinux does not exist/);
      return true;
    });
    const spawned = processes.spawned[0];
    assert.ok(spawned !== undefined);
    await waitFor('the refused VMM to be gone', async () => !(await processes.isAlive(spawned.process)) || undefined);
    assert.equal(processes.signals.length, 1);
  });

  it("sandboxed: joins its cgroup, then runs as the VM uid/gid with /dev/kvm's group; its log and metrics FIFOs open to that group", async () => {
    const processes = processTable();
    const procs = join(tmp, 'fc-cgroup.procs');
    const fc = new FirecrackerProvider({
      bin: fakeBin,
      processes,
      log: silentLogger(),
      kvmUsable: () => true,
      kvmDevice: KVM_GROUP_DEVICE,
      sandboxed: true,
      ...FAKE_TIMEOUTS,
    });
    assert.deepEqual(fc.availability(), { available: true });
    const launch = await launchSpec({ sandbox: { identity: TEST_VMM, cgroupProcs: [procs] } });
    const vmm = await fc.start(launch);
    try {
      const socket = join(launch.vmDir, FIRECRACKER_FILES.socket);
      assert.deepEqual(processes.spawned[0]?.args, [
        '-c',
        CGROUP_JOIN_SCRIPT,
        'flintlock-cgroup-join',
        procs,
        '--',
        'perl',
        '-e',
        FD_STAGE_SCRIPT,
        '0',
        '--',
        'setpriv',
        `--reuid=${TEST_VMM.uid}`,
        `--regid=${TEST_VMM.gid}`,
        '--groups=4242',
        '--no-new-privs',
        '--inh-caps=-all',
        '--',
        fakeBin,
        '--api-sock',
        socket,
        '--id',
        launch.vm.id.uid,
      ]);
      assert.equal((await readFile(procs, 'utf8')).trim(), String(vmm.pid));
      const info = JSON.parse(await readFile(startInfoPath(socket), 'utf8')) as StartInfo;
      assert.equal(info.identity.uid, TEST_VMM.uid);
      assert.equal(info.identity.gid, TEST_VMM.gid);
      for (const fifo of [FIRECRACKER_FILES.logFifo, FIRECRACKER_FILES.metricsFifo]) {
        const st = await stat(join(launch.vmDir, fifo));
        assert.equal(st.gid, TEST_VMM.gid);
        assert.equal(st.mode & 0o777, 0o620, 'the daemon reads, the VMM writes');
      }
      // It could open them (the fake opens them as Firecracker does): the whole sequence went through.
      assert.equal((await readRequestLog(requestLogPath(socket))).at(-1)?.path, '/actions');
      await fc.stop(launch.vmDir, vmm, 5000);
      assert.equal(await processes.isAlive(vmm), false);
    } finally {
      await processes.signal(vmm, 'SIGKILL');
    }
    // A /dev/kvm only root may open is no use to it, unless the jailer makes its own.
    const rootOnly = { bin: fakeBin, processes, log: silentLogger(), kvmUsable: () => true, kvmDevice: { mode: 0o20600, gid: 0 }, sandboxed: true };
    assert.match(new FirecrackerProvider(rootOnly).availability().reason ?? '', /\/dev\/kvm is open to root only/);
    assert.deepEqual(new FirecrackerProvider({ ...rootOnly, jailerBin: fakeJailer }).availability(), { available: true });
    assert.match(
      new FirecrackerProvider({ ...rootOnly, sandboxed: false, jailerBin: fakeJailer }).availability().reason ?? '',
      /the jailer needs vmm-uid-range/,
    );
    assert.match(
      new FirecrackerProvider({ ...rootOnly, jailerBin: join(tmp, 'no-jailer') }).availability().reason ?? '',
      /firecracker-jailer-bin: ".*no-jailer" not found/,
    );
  });

  it('with the jailer: its arguments, the files linked into its chroot, every API path as seen from inside', async () => {
    const processes = processTable();
    const procs = join(tmp, 'jailer-cgroup.procs');
    const fc = new FirecrackerProvider({
      bin: fakeBin,
      processes,
      log: silentLogger(),
      kvmUsable: () => true,
      sandboxed: true,
      jailerBin: fakeJailer,
      ...FAKE_TIMEOUTS,
    });
    const launch = await launchSpec({ sandbox: { identity: TEST_VMM, cgroupProcs: [procs] } });
    const uid = launch.vm.id.uid;
    const root = jailRoot(launch.vmDir, fakeBin, uid);
    assert.equal(root, join(launch.vmDir, 'jail', 'firecracker', uid, 'root'));
    const vmm = await fc.start(launch);
    try {
      // The cgroup is joined before the jailer runs; the jailer drops to the VM's ids itself.
      const args = [
        '--id',
        uid,
        '--exec-file',
        fakeBin,
        '--uid',
        String(TEST_VMM.uid),
        '--gid',
        String(TEST_VMM.gid),
        '--chroot-base-dir',
        join(launch.vmDir, 'jail'),
        '--',
        '--api-sock',
        '/firecracker.sock',
      ];
      assert.deepEqual(jailerArgs({ id: uid, execFile: fakeBin, uid: TEST_VMM.uid, gid: TEST_VMM.gid, chrootBase: join(launch.vmDir, 'jail') }), args);
      assert.deepEqual(processes.spawned[0]?.args, ['-c', CGROUP_JOIN_SCRIPT, 'flintlock-cgroup-join', procs, '--', fakeJailer, ...args]);
      assert.equal((await readFile(procs, 'utf8')).trim(), String(vmm.pid), 'the jailer, and so Firecracker, in the cgroup from the start');
      const socket = join(root, FIRECRACKER_FILES.socket);
      const info = JSON.parse(await readFile(startInfoPath(socket), 'utf8')) as StartInfo;
      assert.deepEqual(info.argv, [`--id=${uid}`, '--start-time-us=0', '--start-time-cpu-us=0', '--api-sock', '/firecracker.sock']);
      assert.equal(info.identity.uid, TEST_VMM.uid);
      // Hard links: the same files, not copies.
      for (const [name, from] of [
        ['kernel', files.kernel],
        ['initrd', files.initrd],
        ['disk0', files.root],
        ['disk1', files.data],
        ['console.log', launch.consoleLogPath],
      ] as const) {
        assert.equal((await stat(join(root, name))).ino, (await stat(from)).ino, name);
      }
      assert.deepEqual(
        jailLayout(launch, root).launch.disks.map((d) => d.path),
        ['/disk0', '/disk1'],
      );
      const requests = await readRequestLog(requestLogPath(socket));
      const body = (path: string): unknown => requests.find((r) => r.path === path)?.body;
      assert.deepEqual(body('/logger'), { log_path: '/firecracker.log.fifo', level: 'Info', show_level: true, show_log_origin: false });
      assert.deepEqual(body('/serial'), { serial_out_path: '/console.log' });
      assert.match(JSON.stringify(body('/boot-source')), /"kernel_image_path":"\/kernel".*"initrd_path":"\/initrd"/);
      assert.deepEqual(body('/drives/root'), { drive_id: 'root', path_on_host: '/disk0', is_root_device: true, is_read_only: false });
      assert.equal(requests.at(-1)?.path, '/actions');
      // The FIFOs are in the jail, drained into the VM dir.
      assert.equal((await stat(join(root, FIRECRACKER_FILES.logFifo))).isFIFO(), true);
      await waitFor('the drained log', async () =>
        (await readFile(join(launch.vmDir, 'firecracker.log'), 'utf8').catch(() => '')).includes('logger configured'),
      );
      await fc.stop(launch.vmDir, vmm, 5000);
      assert.equal(await processes.isAlive(vmm), false);
      assert.deepEqual(processes.signals, [], 'stopped through the API socket in the jail');
    } finally {
      await processes.signal(vmm, 'SIGKILL');
    }
  });

  it('renders bare flags and quotes values with spaces', () => {
    assert.equal(renderCmdline({ console: 'ttyS0', quiet: '', dyndbg: 'file a.c +p' }, {}), 'console=ttyS0 quiet dyndbg="file a.c +p"');
  });
});

describeWith('the fake Firecracker API validates against the spec', [vmmApiSpec('firecracker-api.yaml')], {}, () => {
  let harness: FakeApiHarness;
  before(async () => {
    harness = await fakeApiHarness(specFile, 'fc-fake-');
  });
  after(() => harness.close());

  it('accepts a valid drive', async () => {
    const res = await harness.api.request('PUT', '/drives/root', { drive_id: 'root', path_on_host: '/x', is_root_device: true, is_read_only: false });
    assert.equal(res.status, 204);
  });

  it('refuses an unknown field', () =>
    harness.refused('PUT', '/drives/root', { drive_id: 'root', is_root_device: true, readonly: true }, 400, /unknown property "readonly"/));
  it('refuses a wrong type', () =>
    harness.refused('PUT', '/machine-config', { vcpu_count: '2', mem_size_mib: 512 }, 400, /body\.vcpu_count: expected an integer, got string/));
  it('refuses a missing required field', () =>
    harness.refused('PUT', '/network-interfaces/eth0', { iface_id: 'eth0' }, 400, /missing required property "host_dev_name"/));
  it('refuses a value outside an enum', () =>
    harness.refused('PUT', '/mmds/config', { version: 'V3', network_interfaces: [] }, 400, /"V3" is not one of "V1", "V2"/));
  it('refuses a value under the minimum', () =>
    harness.refused('PUT', '/machine-config', { vcpu_count: 0, mem_size_mib: 512 }, 400, /less than the minimum 1/));
  it('refuses nested violations', () =>
    harness.refused(
      'PUT',
      '/drives/root',
      { drive_id: 'root', is_root_device: false, rate_limiter: { bandwidth: { size: 1 } } },
      400,
      /rate_limiter\.bandwidth: missing required property "refill_time"/,
    ));
  it('refuses a body id that differs from the path', () =>
    harness.refused('PUT', '/drives/root', { drive_id: 'other', is_root_device: false }, 400, /differs from the path/));
  it('refuses a missing required body', () => harness.refused('PUT', '/actions', undefined, 400, /requires a body/));
  it('answers 404 for an unknown path', () => harness.refused('PUT', '/no-such-thing', { a: 1 }, 404, /no such path/));
  it('answers 405 for a method the path lacks', () =>
    harness.refused('DELETE', '/drives/root', undefined, 405, /DELETE is not allowed on \/drives\/root \(allowed: PUT, PATCH\)/));
  it('answers GETs with a body shaped like the spec', async () => {
    const res = await harness.api.request('GET', '/machine-config');
    assert.equal(res.status, 200);
    assert.deepEqual(ApiSpec.load(specFile).validate(ApiSpec.load(specFile).schema('MachineConfiguration'), res.json, 'response', false), []);
  });
  it('records refusals too', () => {
    assert.ok(harness.fake.requests.some((r) => r.status === 400 && r.fault?.includes('unknown property') === true));
  });
});
