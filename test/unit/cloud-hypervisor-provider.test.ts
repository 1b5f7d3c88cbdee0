// The Cloud Hypervisor provider against a fake cloud-hypervisor that serves the published OpenAPI
// document (../shared/ref/cloud-hypervisor-api.yaml), refuses whatever it doesn't allow, and checks
// that its command line makes a VmConfig the document allows (test/helpers/fake-vmm-bin.ts).
// The VMMs run in a network namespace of this file's, where the taps the launch chain opens exist;
// the sandboxed one runs as a uid of its own and joins a (stand-in) cgroup first.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { LinuxProcessTable } from '../../src/adapters/process/process-table.js';
import { CLOUD_HYPERVISOR_FILES, CloudHypervisorProvider } from '../../src/adapters/providers/cloud-hypervisor.js';
import { killAndWait } from '../../src/adapters/providers/openapi-http.js';
import { CGROUP_JOIN_SCRIPT, FD_STAGE_SCRIPT } from '../../src/adapters/providers/sandbox.js';
import type { LaunchSpec } from '../../src/core/ports.js';
import {
  ApiSpec,
  RecordingProcessTable,
  readRequestLog,
  requestLogPath,
  startInfoPath,
  type RecordedRequest,
  fakeApiHarness,
  type FakeApiHarness,
  NetnsProcessTable,
  processTable,
  writeFakeBin,
} from '../helpers/fake-vmm.js';
import { sampleVm } from '../helpers/fixtures.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, NETNS, SHARED_REF, vmmApiSpec } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { FAKE_TIMEOUTS, makeVmmDir, removeTsxCache, TEST_VMM } from '../helpers/sandbox.js';

const specFile = join(SHARED_REF, 'cloud-hypervisor-api.yaml');

interface StartInfo {
  readonly argv: string[];
  readonly identity: { uid: number; gid: number; groups: number[] };
  readonly config: Record<string, unknown>;
  readonly fds: Record<string, string>;
  readonly seccomp: string;
}

/** A /dev/kvm the VM's group may open (Debian's root:kvm 0660), here with a made-up kvm gid. */
const KVM_GROUP_DEVICE = { mode: 0o20660, gid: 4242 };

/** The fds this process has open on `path`. */
async function openFdsOn(path: string): Promise<string[]> {
  const fds = await readdir('/proc/self/fd');
  const targets = await Promise.all(fds.map(async (fd) => ({ fd, target: await readlink(`/proc/self/fd/${fd}`).catch(() => '') })));
  return targets.filter((t) => t.target === path).map((t) => t.fd);
}

describeWith('CloudHypervisorProvider', [vmmApiSpec('cloud-hypervisor-api.yaml'), NETNS], {}, () => {
  let tmp: string;
  let ns: TestNetns;
  const destroyNs = atExit(() => ns?.destroy());
  let fakeBin: string;
  let deafBin: string;
  let stuckBin: string;
  let files: { kernel: string; initrd: string; root: string; data: string; cidata: string };

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'ch-provider-'));
    // Searchable (not listable) and the files readable, as the state dir and the image files
    // are: the sandboxed fake runs as a uid of its own.
    await chmod(tmp, 0o711);
    ns = createTestNetns('flch', { bare: true });
    ns.ip('tuntap', 'add', 'dev', 'fltap0a1b2c', 'mode', 'tap');
    fakeBin = await writeFakeBin(tmp, 'cloud-hypervisor');
    deafBin = await writeFakeBin(tmp, 'cloud-hypervisor-deaf', 'FAKE_VMM_STOP=ignore-acpi');
    stuckBin = await writeFakeBin(tmp, 'cloud-hypervisor-stuck', 'FAKE_VMM_STOP=ignore-all');
    files = {
      kernel: join(tmp, 'vmlinux'),
      initrd: join(tmp, 'initrd.img'),
      root: join(tmp, 'root.ext4'),
      data: join(tmp, 'data.ext4'),
      cidata: join(tmp, 'cidata.img'),
    };
    for (const f of Object.values(files)) await writeFile(f, 'x', { mode: 0o644 });
  });

  after(async () => {
    destroyNs();
    await rm(tmp, { recursive: true, force: true });
    removeTsxCache();
  });

  /** The daemon's process table, spawning in this file's namespace, recording what it was asked. */
  const nsProcessTable = (): RecordingProcessTable => new RecordingProcessTable(new NetnsProcessTable(new LinuxProcessTable(), ns.name));

  let vmCounter = 0;
  async function launchSpec(overrides: Partial<LaunchSpec> = {}): Promise<LaunchSpec> {
    const vmDir = join(tmp, `vm${++vmCounter}`);
    await mkdir(vmDir, { recursive: true });
    makeVmmDir(vmDir, TEST_VMM);
    // A regular file stands in for the macvtap's tap character device: the fd-passing path runs.
    const tapNode = join(vmDir, 'tap-eth1');
    await writeFile(tapNode, '');
    return {
      vm: sampleVm({ spec: { provider: 'cloudhypervisor' } }),
      vmDir,
      vcpu: 2,
      memoryMb: 512,
      kernelPath: files.kernel,
      initrdPath: files.initrd,
      cmdline: { quiet: '', console: 'hvc0' },
      disks: [
        { id: 'root', path: files.root, readOnly: false, root: true, format: 'raw' },
        { id: 'data', path: files.data, readOnly: true, root: false, format: 'raw' },
        { id: 'cidata', path: files.cidata, readOnly: true, root: false, format: 'raw' },
      ],
      nics: [
        { deviceId: 'eth0', type: 'tap', hostDevice: 'fltap0a1b2c', mac: '02:00:00:aa:bb:01' },
        { deviceId: 'eth1', type: 'macvtap', hostDevice: 'flvtap3d4e5f', mac: '5a:11:22:33:44:55', tapNode },
      ],
      cloudInit: { 'meta-data': 'instance_id: x\n' },
      consoleLogPath: join(vmDir, 'console.log'),
      pidFile: join(vmDir, 'vmm.pid'),
      ...overrides,
    };
  }

  function provider(processes: RecordingProcessTable, bin = fakeBin): CloudHypervisorProvider {
    // The fake VMM is a Node script: on a loaded host it can take seconds to open its socket, and
    // the socket timeout is not what these tests check.
    return new CloudHypervisorProvider({
      bin,
      processes,
      log: silentLogger(),
      kvmUsable: () => true,
      kvmDevice: KVM_GROUP_DEVICE,
      sandboxed: true,
      ...FAKE_TIMEOUTS,
    });
  }

  it('reports what is missing when the binary or /dev/kvm is', () => {
    const processes = processTable();
    const log = silentLogger();
    assert.deepEqual(new CloudHypervisorProvider({ bin: fakeBin, processes, log, kvmUsable: () => true }).availability(), { available: true });
    const noBin = new CloudHypervisorProvider({ bin: 'no-such-cloud-hypervisor', processes, log, kvmUsable: () => true }).availability();
    assert.deepEqual(noBin, { available: false, reason: 'cloudhypervisor-bin: "no-such-cloud-hypervisor" not found' });
    const noKvm = new CloudHypervisorProvider({ bin: fakeBin, processes, log, kvmUsable: () => false }).availability();
    assert.equal(noKvm.available, false);
    assert.match(noKvm.reason ?? '', /^\/dev\/kvm is missing/);
    const neither = new CloudHypervisorProvider({ bin: 'no-such-cloud-hypervisor', processes, log, kvmUsable: () => false }).availability();
    assert.match(neither.reason ?? '', /not found; \/dev\/kvm/);
    assert.match(new CloudHypervisorProvider({ bin: '', processes, log }).availability().reason ?? '', /cloudhypervisor-bin is empty/);
    // Sandboxed, it runs as the VM's uid: a /dev/kvm only root may open is no use to it.
    const rootOnly = { bin: fakeBin, processes, log, kvmUsable: () => true, kvmDevice: { mode: 0o20600, gid: 0 } };
    assert.deepEqual(new CloudHypervisorProvider(rootOnly).availability(), { available: true });
    assert.match(
      new CloudHypervisorProvider({ ...rootOnly, sandboxed: true }).availability().reason ?? '',
      /\/dev\/kvm is open to root only, and cloud-hypervisor runs as the VM's own uid/,
    );
    assert.deepEqual(provider(processes).availability(), { available: true });
  });

  it('has the capabilities of COMPAT §3 and a serial console command line', async () => {
    const p = provider(processTable());
    assert.equal(p.name, 'cloudhypervisor');
    assert.deepEqual([...p.capabilities].sort(), ['macvtap', 'pause', 'tap', 'virtiofs', 'vsock']);
    const launch = await launchSpec();
    assert.deepEqual(p.defaultCmdline(launch), { console: 'ttyS0', reboot: 'k', panic: '1', root: '/dev/vda', rw: '' });
    assert.deepEqual(p.defaultCmdline({ ...launch, disks: [] }), { console: 'ttyS0', reboot: 'k', panic: '1' });
  });

  it('starts the VM with its config on the command line, every NIC by fd (the macvtap 3, the tap 4), checks it runs; pause, resume, stop', async () => {
    const processes = nsProcessTable();
    const ch = provider(processes);
    const launch = await launchSpec();
    const tapNode = launch.nics[1]?.tapNode ?? '';
    const vmm = await ch.start(launch);
    try {
      assert.equal(await processes.isAlive(vmm), true);
      const dir = launch.vmDir;
      const socket = join(dir, CLOUD_HYPERVISOR_FILES.socket);
      const cmdline = 'console=hvc0 reboot=k panic=1 root=/dev/vda rw quiet';
      const argv = [
        '--api-socket',
        `path=${socket}`,
        '--kernel',
        files.kernel,
        '--initramfs',
        files.initrd,
        '--cmdline',
        cmdline,
        '--cpus',
        'boot=2',
        '--memory',
        'size=512M',
        '--disk',
        `path=${files.root},readonly=off,image_type=raw`,
        `path=${files.data},readonly=on,image_type=raw`,
        `path=${files.cidata},readonly=on,image_type=raw`,
        '--net',
        'fd=4,mac=02:00:00:aa:bb:01',
        'fd=3,mac=5a:11:22:33:44:55',
        '--serial',
        `file=${join(dir, 'console.log')}`,
        '--console',
        'off',
        '--seccomp',
        'true',
      ];
      // Not sandboxed (no identity in the launch spec): only the stage that opens the tap.
      assert.equal(processes.spawned[0]?.bin, 'perl');
      assert.deepEqual(processes.spawned[0]?.args, ['-e', FD_STAGE_SCRIPT, '1', '4=fltap0a1b2c', '--', fakeBin, ...argv]);

      // What the command line means, as the API document's VmConfig (the fake validated it).
      const info = JSON.parse(await readFile(startInfoPath(socket), 'utf8')) as StartInfo;
      assert.deepEqual(info.argv, argv);
      const config = {
        payload: { kernel: files.kernel, initramfs: files.initrd, cmdline },
        cpus: { boot_vcpus: 2, max_vcpus: 2 },
        memory: { size: 512 * 1024 * 1024 },
        disks: [
          { path: files.root, readonly: false, image_type: 'Raw' },
          { path: files.data, readonly: true, image_type: 'Raw' },
          { path: files.cidata, readonly: true, image_type: 'Raw' },
        ],
        net: [{ mac: '02:00:00:aa:bb:01' }, { mac: '5a:11:22:33:44:55' }],
        serial: { mode: 'File', file: join(dir, 'console.log') },
        console: { mode: 'Off' },
      };
      assert.deepEqual(info.config, config);
      const spec = ApiSpec.load(specFile);
      assert.deepEqual(spec.validate(spec.schema('VmConfig'), info.config), []);
      // fd 3 in the VMM is the macvtap's tap node (the daemon kept no copy of it), fd 4 the tap,
      // opened by the launch chain: CH itself never opens /dev/net/tun.
      assert.deepEqual(info.fds, { '3': tapNode, '4': '/dev/net/tun (fltap0a1b2c)' });
      assert.equal(info.seccomp, 'true');
      assert.deepEqual(await openFdsOn(tapNode), []);

      // The API: the provider waited for the VM to run.
      const expected: RecordedRequest[] = [{ method: 'GET', path: '/api/v1/vm.info', status: 200 }];
      assert.deepEqual(await readRequestLog(requestLogPath(socket)), expected);

      // Pause and resume (our lifecycle extension): vm.pause, vm.resume, as the API document has them.
      await ch.pause(dir);
      await ch.resume(dir);
      assert.deepEqual((await readRequestLog(requestLogPath(socket))).slice(1), [
        { method: 'PUT', path: '/api/v1/vm.pause', status: 204 },
        { method: 'PUT', path: '/api/v1/vm.resume', status: 204 },
      ]);

      // Stop: ACPI power button; the guest powers off and CH exits (no SIGKILL).
      await ch.stop(dir, vmm, 5000);
      assert.equal(await processes.isAlive(vmm), false);
      assert.deepEqual(processes.signals, []);
      assert.deepEqual((await readRequestLog(requestLogPath(socket))).slice(3), [{ method: 'PUT', path: '/api/v1/vm.power-button', status: 204 }]);
    } finally {
      // Gone for good before the next test opens the same tap (a tap takes one holder).
      await killAndWait(processes, vmm);
    }
  });

  it('shuts the VMM down through the API when the guest ignores the power button', async () => {
    const processes = processTable();
    const ch = provider(processes, deafBin);
    const launch = await launchSpec({
      nics: [],
      initrdPath: undefined,
      cmdline: {},
      disks: [{ id: 'root', path: files.root, readOnly: true, root: true, format: 'raw' }],
    });
    const vmm = await ch.start(launch);
    const argv = processes.spawned[0]?.args ?? [];
    assert.equal(argv.includes('--initramfs') || argv.includes('--net'), false);
    assert.equal(argv[argv.indexOf('--cmdline') + 1], 'console=ttyS0 reboot=k panic=1 root=/dev/vda ro');
    await ch.stop(launch.vmDir, vmm, 200);
    assert.equal(await processes.isAlive(vmm), false);
    assert.deepEqual(processes.signals, []);
    assert.deepEqual(await readRequestLog(requestLogPath(join(launch.vmDir, CLOUD_HYPERVISOR_FILES.socket))), [
      { method: 'GET', path: '/api/v1/vm.info', status: 200 },
      { method: 'PUT', path: '/api/v1/vm.power-button', status: 204 },
      { method: 'PUT', path: '/api/v1/vm.shutdown', status: 204 },
      { method: 'PUT', path: '/api/v1/vmm.shutdown', status: 204 },
    ]);
  });

  it("sandboxed: joins its cgroup, then runs as the VM uid/gid with only /dev/kvm's group", async () => {
    const processes = nsProcessTable();
    const procs = join(tmp, 'cgroup.procs');
    const launch = await launchSpec({ sandbox: { identity: TEST_VMM, cgroupProcs: [procs] } });
    const vmm = await provider(processes).start(launch);
    try {
      const chain = processes.spawned[0];
      assert.equal(chain?.bin, 'sh');
      const args = chain?.args ?? [];
      assert.deepEqual(args.slice(0, 5), ['-c', CGROUP_JOIN_SCRIPT, 'flintlock-cgroup-join', procs, '--']);
      const setpriv = args.indexOf('setpriv');
      assert.deepEqual(args.slice(setpriv, setpriv + 8), [
        'setpriv',
        `--reuid=${TEST_VMM.uid}`,
        `--regid=${TEST_VMM.gid}`,
        '--groups=4242',
        '--no-new-privs',
        '--inh-caps=-all',
        '--',
        fakeBin,
      ]);
      // What the VMM process was: the joined "cgroup" got its pid; it ran as the VM's ids.
      assert.equal((await readFile(procs, 'utf8')).trim(), String(vmm.pid));
      const info = JSON.parse(await readFile(startInfoPath(join(launch.vmDir, CLOUD_HYPERVISOR_FILES.socket)), 'utf8')) as StartInfo;
      // Node counts the effective gid among the groups; the only supplementary one is kvm's.
      assert.deepEqual(
        { ...info.identity, groups: [...info.identity.groups].sort() },
        { uid: TEST_VMM.uid, gid: TEST_VMM.gid, groups: [TEST_VMM.gid, 4242].sort() },
      );
      assert.deepEqual(info.fds, { '3': launch.nics[1]?.tapNode, '4': '/dev/net/tun (fltap0a1b2c)' });
    } finally {
      // Gone for good before the next test opens the same tap (a tap takes one holder).
      await killAndWait(processes, vmm);
    }
  });

  it('kills the VMM when nothing else ends it', async () => {
    const processes = nsProcessTable();
    const ch = provider(processes, stuckBin);
    const launch = await launchSpec();
    const vmm = await ch.start(launch);
    await ch.stop(launch.vmDir, vmm, 100);
    assert.equal(await processes.isAlive(vmm), false);
    assert.deepEqual(processes.signals, [`SIGKILL ${vmm.pid}`]);
  });

  it('passes the vsock when the guest agent is allowed', async () => {
    const processes = nsProcessTable();
    const launch = await launchSpec({ vm: sampleVm({ spec: { provider: 'cloudhypervisor', allowGuestAgent: true } }) });
    const vmm = await provider(processes).start(launch);
    try {
      const argv = processes.spawned[0]?.args ?? [];
      assert.deepEqual(argv.slice(-4), ['--vsock', `cid=3,socket=${join(launch.vmDir, 'guest-agent.vsock')}`, '--seccomp', 'true']);
    } finally {
      // Gone for good before the next test opens the same tap (a tap takes one holder).
      await killAndWait(processes, vmm);
    }
  });

  it('refuses a macvtap interface without a tap node, spawning nothing', async () => {
    const processes = processTable();
    const launch = await launchSpec({ nics: [{ deviceId: 'eth0', type: 'macvtap', hostDevice: 'flvtap1', mac: '02:00:00:00:00:02' }] });
    await assert.rejects(provider(processes).start(launch), /macvtap interface eth0 has no tap device node/);
    assert.equal(processes.spawned.length, 0);
  });

  it('fails with the VMM log and leaves no process when cloud-hypervisor refuses its command line', async () => {
    const processes = nsProcessTable();
    const launch = await launchSpec({ kernelPath: join(tmp, 'missing-vmlinux') });
    await assert.rejects(
      provider(processes).start(launch),
      /cloud-hypervisor failed to start: cloud-hypervisor exited before its API socket .* vmm\.log ends with: fake-vmm: cloud-hypervisor: kernel .*missing-vmlinux does not exist/,
    );
    // The tap node fd was closed even though the start failed.
    assert.deepEqual(await openFdsOn(launch.nics[1]?.tapNode ?? ''), []);
  });
});

describeWith('the fake Cloud Hypervisor API validates against the spec', [vmmApiSpec('cloud-hypervisor-api.yaml')], {}, () => {
  let harness: FakeApiHarness;
  const config = { payload: { kernel: '/k', cmdline: 'console=ttyS0' }, cpus: { boot_vcpus: 1, max_vcpus: 1 }, memory: { size: 1 << 29 } };
  before(async () => {
    harness = await fakeApiHarness(specFile, 'ch-fake-');
  });
  after(() => harness.close());

  it('accepts a valid vm.create and vm.boot', async () => {
    assert.equal((await harness.api.request('PUT', '/api/v1/vm.create', { ...config, net: [{ tap: 'tap0', mac: '02:00:00:00:00:01' }] })).status, 204);
    assert.equal((await harness.api.request('PUT', '/api/v1/vm.boot')).status, 204);
  });

  it('refuses fds in a vm.create body: NetConfig has none (why the provider uses the command line)', () =>
    harness.refused('PUT', '/api/v1/vm.create', { ...config, net: [{ fds: [3], mac: '02:00:00:00:00:01' }] }, 400, /body\.net\[0\]: unknown property "fds"/));
  it('refuses a missing payload', () => harness.refused('PUT', '/api/v1/vm.create', { cpus: config.cpus }, 400, /missing required property "payload"/));
  it('refuses a wrong nested type', () =>
    harness.refused('PUT', '/api/v1/vm.create', { ...config, disks: [{ path: '/d', readonly: 'on' }] }, 400, /body\.disks\[0\]\.readonly: expected a boolean/));
  it('refuses an enum violation', () =>
    harness.refused('PUT', '/api/v1/vm.create', { ...config, serial: { mode: 'file' } }, 400, /body\.serial\.mode: "file" is not one of/));
  it('refuses a body on an operation without one', () => harness.refused('PUT', '/api/v1/vm.boot', { now: true }, 400, /takes no body/));
  it('answers 404 outside the API base path and for unknown paths', async () => {
    await harness.refused('PUT', '/vm.create', config, 404, /no such path/);
    await harness.refused('PUT', '/api/v1/vm.explode', undefined, 404, /no such path/);
  });
  it('answers 405 for a method the path lacks', () => harness.refused('PUT', '/api/v1/vm.info', undefined, 405, /allowed: GET/));
  it('answers vm.info with a VmInfo-shaped sample', async () => {
    const res = await harness.api.request('GET', '/api/v1/vm.info');
    const spec = ApiSpec.load(specFile);
    assert.deepEqual(spec.validate(spec.schema('VmInfo'), res.json, 'response', false), []);
  });
});
