// QemuProvider for real: boots the test guest (scripts/build-guest-image.sh) under QEMU -M microvm
// (TCG when KVM can't run a guest here) inside network namespaces this file creates:
//   1. tap on a bridge with dnsmasq: DHCP lease, ping from the bridge, graceful stop;
//   2. guest device order: two taps and three disks (one the daemon's cidata FAT disk with a netplan
//      network-config giving eth1 a static address) come up as eth0/eth1 and vda/vdb/vdc in
//      LaunchSpec order;
//   3. macvtap by fd: veth parent in namespace A, dnsmasq on the peer in namespace B; QEMU runs in
//      the root namespace, the macvtap fd carries the network.
// The boots run sandboxed as the daemon runs them (ADR 0009): as a uid/gid of their own, in a
// cgroup of this host's hierarchy with memory and pids limits, under QEMU's seccomp filter; the
// first checks all of that in /proc and the cgroup files of the running QEMU.
// Every boot has a deadline; every process started here is killed by pid in after(); every
// namespace is deleted in after() (which removes its devices too); every cgroup is removed
// after its QEMU ends (at the latest when this file's process ends).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';

import { detectCgroupLayout, HostVmmCgroups } from '../../src/adapters/cgroups/cgroups.js';
import { FatCidataDiskBuilder } from '../../src/adapters/cloud-init/cidata-disk.js';
import { NodeVmFilesystem } from '../../src/adapters/fs/vm-filesystem.js';
import { LinuxProcessTable, readProcStatSync } from '../../src/adapters/process/process-table.js';
import { QEMU_SANDBOX, QemuProvider, hostTscKhz, qemuArgs } from '../../src/adapters/providers/qemu.js';
import { guestDiskName, renderCmdline } from '../../src/core/guest.js';
import type { LaunchDisk, LaunchNic, LaunchSpec, Logger, VmmIdentity, VmmProcess, VmmSandbox } from '../../src/core/ports.js';
import { vmmCgroupLimits } from '../../src/core/sandbox.js';
import { sampleVm } from '../helpers/fixtures.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { CGROUPS, HOST_CGROUP_ROOT, makeVmmDir, TEST_VMM, testCgroupParent } from '../helpers/sandbox.js';
import { ensureGuestImage, guestAddress, INITRD, KERNEL, pingFrom, QEMU, startDnsmasq } from '../helpers/guest-lab.js';
import { waitFor } from '../helpers/wait.js';

/** Records what the provider logs, to check the KVM/TCG start-up line. */
class CaptureLogger implements Logger {
  constructor(readonly lines: Array<{ level: string; msg: string; obj: object }> = []) {}
  trace(obj: object, msg: string): void {
    this.lines.push({ level: 'trace', obj, msg });
  }
  debug(obj: object, msg: string): void {
    this.lines.push({ level: 'debug', obj, msg });
  }
  info(obj: object, msg: string): void {
    this.lines.push({ level: 'info', obj, msg });
  }
  warn(obj: object, msg: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: 'error', obj, msg });
  }
  child(): Logger {
    return this;
  }
}

function baseLaunch(overrides: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    vm: sampleVm({ id: { name: 'qemu-e2e' } }),
    vmDir: '/var/lib/flintlock/vm/ns1/vm1/uid',
    vcpu: 1,
    memoryMb: 256,
    kernelPath: '/k/vmlinuz',
    cmdline: {},
    disks: [],
    nics: [],
    cloudInit: { 'meta-data': '' },
    consoleLogPath: '/var/lib/flintlock/vm/ns1/vm1/uid/console.log',
    ...overrides,
    // Beside the VM dir the test gave, like buildLaunchSpec does.
    pidFile: overrides.pidFile ?? `${overrides.vmDir ?? '/var/lib/flintlock/vm/ns1/vm1/uid'}/vmm.pid`,
  };
}

// ---------------------------------------------------------------------------------------------
// Command line (no root, no QEMU needed)

describe('QemuProvider command line', () => {
  const log = new CaptureLogger();
  const tcg = new QemuProvider({ bin: QEMU, processes: new LinuxProcessTable(), log, kvm: false, tscKhz: 2_600_000 });

  it('logs once at construction whether it uses KVM or TCG', () => {
    const infos = log.lines.filter((l) => l.level === 'info');
    assert.equal(infos.length, 1);
    assert.match(infos[0]?.msg ?? '', /TCG/);
    const kvmLog = new CaptureLogger();
    new QemuProvider({ bin: QEMU, processes: new LinuxProcessTable(), log: kvmLog, kvm: true });
    assert.match(kvmLog.lines.map((l) => l.msg).join('\n'), /KVM/);
  });

  it('default cmdline: serial console, no reboot, quiet, tsc_early_khz under TCG, root disk by its guest name', () => {
    const disks: LaunchDisk[] = [
      { id: 'root', path: '/r.img', readOnly: false, root: true, format: 'raw' },
      { id: 'data', path: '/d.img', readOnly: false, root: false, format: 'raw' },
    ];
    assert.deepEqual(tcg.defaultCmdline(baseLaunch({ disks })), {
      console: 'ttyS0',
      reboot: 'k',
      panic: '-1',
      quiet: '',
      tsc_early_khz: '2600000',
      root: '/dev/vda',
      rw: '',
    });
    assert.deepEqual(tcg.defaultCmdline(baseLaunch({ disks: [{ id: 'root', path: '/r.img', readOnly: true, root: true, format: 'raw' }] })).ro, '');
    assert.equal(tcg.defaultCmdline(baseLaunch()).root, undefined);
    const kvm = new QemuProvider({ bin: QEMU, processes: new LinuxProcessTable(), log: new CaptureLogger(), kvm: true, tscKhz: 1 });
    assert.equal(kvm.defaultCmdline(baseLaunch()).tsc_early_khz, undefined);
  });

  it('merges the user cmdline over the defaults: defaults in order, user values win, then the rest sorted', () => {
    const merged = renderCmdline({ console: 'ttyS0', quiet: '', panic: '-1' }, { zeta: '1', panic: '5', alpha: '', 'init.msg': 'hello world' });
    assert.equal(merged, 'console=ttyS0 quiet panic=5 alpha init.msg="hello world" zeta=1');
  });

  it('names disks like the kernel', () => {
    assert.deepEqual([0, 1, 25, 26, 27].map(guestDiskName), ['vda', 'vdb', 'vdz', 'vdaa', 'vdab']);
  });

  it('builds a microvm command line with disks and NICs in LaunchSpec order, every NIC by fd (macvtaps 3, 4, ..., then taps)', () => {
    const launch = baseLaunch({
      initrdPath: '/k/initrd.gz',
      disks: [
        { id: 'root', path: '/v/root,1.img', readOnly: false, root: true, format: 'raw' },
        { id: 'a-very-long-volume-identifier', path: '/v/data.img', readOnly: true, root: false, format: 'raw' },
        { id: 'cidata', path: '/v/cidata.img', readOnly: true, root: false, format: 'raw' },
      ],
      nics: [
        { deviceId: 'eth0', type: 'macvtap', hostDevice: 'flvtap1', mac: '02:00:00:00:00:01', tapNode: '/v/tap7' },
        { deviceId: 'eth1', type: 'tap', hostDevice: 'fltap2', mac: '02:00:00:00:00:02' },
        { deviceId: 'eth2', type: 'macvtap', hostDevice: 'flvtap3', mac: '02:00:00:00:00:03', tapNode: '/v/tap9' },
      ],
    });
    const args = qemuArgs(launch, { kvm: false, append: 'console=ttyS0', qmpPath: '/v/qmp.sock' });
    const line = args.join(' ');
    assert.match(line, /-M microvm -accel tcg,tb-size=64 -smp 1 -m 256M -nodefaults -no-user-config -nographic -no-reboot/);
    assert.equal(args[args.indexOf('-sandbox') + 1], 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    assert.equal(QEMU_SANDBOX, 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    assert.ok(!line.includes('-cpu host'));
    assert.match(line, /-chardev file,id=console,path=\/var\/lib\/flintlock\/vm\/ns1\/vm1\/uid\/console\.log,append=on -serial chardev:console/);
    assert.match(line, /-kernel \/k\/vmlinuz -initrd \/k\/initrd\.gz -append console=ttyS0/);
    const devices = args.filter((_, i) => args[i - 1] === '-device' || args[i - 1] === '-drive' || args[i - 1] === '-netdev');
    assert.deepEqual(devices, [
      'if=none,format=raw,file=/v/root,,1.img,id=disk0,readonly=off',
      'virtio-blk-device,drive=disk0,serial=root',
      'if=none,format=raw,file=/v/data.img,id=disk1,readonly=on',
      'virtio-blk-device,drive=disk1,serial=a-very-long-volume-i',
      'if=none,format=raw,file=/v/cidata.img,id=disk2,readonly=on',
      'virtio-blk-device,drive=disk2,serial=cidata',
      'tap,id=net0,fd=3',
      'virtio-net-device,netdev=net0,mac=02:00:00:00:00:01',
      // Opened by the launch chain (TUNSETIFF as root): QEMU, under its own uid, needs no /dev/net/tun.
      'tap,id=net1,fd=5',
      'virtio-net-device,netdev=net1,mac=02:00:00:00:00:02',
      'tap,id=net2,fd=4',
      'virtio-net-device,netdev=net2,mac=02:00:00:00:00:03',
    ]);
    assert.ok(!line.includes('vhost'));
    assert.equal(args.at(-2), '-qmp');
    assert.equal(args.at(-1), 'unix:/v/qmp.sock,server=on,wait=off');
    assert.match(qemuArgs(launch, { kvm: true, append: '', qmpPath: 'q' }).join(' '), /-accel kvm -cpu host/);
  });

  it('reads the host TSC frequency from cpuinfo', () => {
    assert.equal(hostTscKhz('processor\t: 0\ncpu MHz\t\t: 2096.029\n'), 2_096_029);
    assert.equal(hostTscKhz('nothing'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Real boots

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

/** A uniquely named namespace, deleted by the returned function. */
function makeNetns(tag: string): { name: string; ip: (...a: string[]) => string; exec: (...a: string[]) => string; destroy: () => void } {
  const name = `flq${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
  sh('ip', ['netns', 'add', name]);
  const ip = (...a: string[]): string => sh('ip', ['-n', name, ...a]);
  ip('link', 'set', 'lo', 'up');
  return {
    name,
    ip,
    exec: (...a: string[]) => sh('ip', ['netns', 'exec', name, ...a]),
    destroy: () => {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
}

function vmDirFor(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `flq-${name}-`));
  chmodSync(dir, 0o755); // dnsmasq drops to nobody
  return dir;
}

/** The VM dir inside a test dir, laid out as the core lays it out for a sandboxed VMM. */
function sandboxedVmDir(parent: string, identity: VmmIdentity): { dir: string; consoleLogPath: string } {
  const dir = join(parent, 'vm');
  mkdirSync(dir);
  makeVmmDir(dir, identity);
  const consoleLogPath = join(dir, 'console.log');
  writeFileSync(consoleLogPath, '');
  chownSync(consoleLogPath, 0, identity.gid);
  chmodSync(consoleLogPath, 0o660);
  return { dir, consoleLogPath };
}

const MAC_TAP = '02:fe:00:00:01:01';

describeWith('QemuProvider boots the test guest', [...GUEST_LAB, CGROUPS], { timeout: 240_000 }, () => {
  const table = new LinuxProcessTable();
  const log = new CaptureLogger();
  const started: VmmProcess[] = [];
  const cleanups: Array<() => void> = [];
  let cgroups: HostVmmCgroups;
  const vmFs = new NodeVmFilesystem('/nonexistent');
  /** As the core's default (`vmm-memory-overhead-mb`, `vmm-pids-max`). */
  const LIMITS = { memoryOverheadMb: 256, pidsMax: 1024 };

  /** The VM's cgroup, made as the daemon's vmm_start step makes it; removed by the test once QEMU is gone. */
  async function sandboxFor(name: string, memoryMb: number, identity: VmmIdentity = TEST_VMM): Promise<VmmSandbox> {
    const cgroupProcs = await cgroups.ensure(name, vmmCgroupLimits(memoryMb, LIMITS));
    return { identity, cgroupProcs };
  }
  // QEMU runs detached (it outlives its starter by design): killed when this file's process ends,
  // however it ends, if after() didn't get to it. Same pid and start time: never a reused pid.
  atExit(() => {
    for (const p of started) if (readProcStatSync(p.pid)?.startTime === p.startTime) process.kill(p.pid, 'SIGKILL');
  });
  // After the kill above: a cgroup goes once its QEMU has.
  const cgroupParent = testCgroupParent('qemu');

  before(
    async () => {
      ensureGuestImage();
      const layout = await detectCgroupLayout(HOST_CGROUP_ROOT);
      if ('error' in layout) throw new Error(layout.error);
      cgroups = new HostVmmCgroups(layout, cgroupParent);
    },
    { timeout: 200_000 },
  );

  after(async () => {
    for (const p of started) {
      if (await table.isAlive(p)) await table.signal(p, 'SIGKILL');
    }
    for (const c of cleanups.reverse()) c();
  });

  function track(c: () => void): void {
    cleanups.push(c);
  }

  async function boot(t: TestContext, launch: LaunchSpec, p: QemuProvider): Promise<{ proc: VmmProcess; t0: number }> {
    const t0 = Date.now();
    const proc = await p.start(launch);
    started.push(proc);
    t.diagnostic(`start() returned after ${Date.now() - t0} ms (QEMU ${p.accel}, pid ${proc.pid})`);
    return { proc, t0 };
  }

  async function stopAndCheck(t: TestContext, p: QemuProvider, launch: LaunchSpec, proc: VmmProcess): Promise<void> {
    const s0 = Date.now();
    await p.stop(launch.vmDir, proc, 10_000);
    t.diagnostic(`stop() took ${Date.now() - s0} ms`);
    assert.equal(await table.isAlive(proc), false);
    assert.equal(readProcStatSync(proc.pid)?.startTime === proc.startTime, false, 'process gone');
    assert.match(readFileSync(launch.consoleLogPath, 'utf8'), /FLINTLOCK-GUEST-POWEROFF/, 'graceful ACPI power-off');
    await p.stop(launch.vmDir, proc, 1000); // a gone process is not an error
  }

  it('tap on a bridge, sandboxed: own uid/gid, seccomp, cgroup limits; DHCP lease, ping, graceful stop, cgroup removed', { timeout: 90_000 }, async (t) => {
    const ns = makeNetns('tap');
    track(ns.destroy);
    const base = vmDirFor('tap');
    track(() => rmSync(base, { recursive: true, force: true }));
    const { dir, consoleLogPath } = sandboxedVmDir(base, TEST_VMM);
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('addr', 'add', '192.168.77.1/24', 'dev', 'br0');
    ns.ip('link', 'set', 'br0', 'up');
    ns.ip('tuntap', 'add', 'dev', 'fltap0', 'mode', 'tap');
    ns.ip('link', 'set', 'fltap0', 'master', 'br0', 'up');
    const dns = startDnsmasq(ns.name, 'br0', '192.168.77.50,192.168.77.150', base);
    track(dns.stop);

    const provider = new QemuProvider({ bin: QEMU, processes: table, log, netns: ns.name, sandboxed: true });
    assert.deepEqual(provider.availability(), { available: true });
    const nic: LaunchNic = { deviceId: 'eth0', type: 'tap', hostDevice: 'fltap0', mac: MAC_TAP };
    const cgroupName = `qemu-tap-${process.pid}`;
    const launch = baseLaunch({
      vmDir: dir,
      kernelPath: KERNEL,
      initrdPath: INITRD,
      nics: [nic],
      consoleLogPath,
      sandbox: await sandboxFor(cgroupName, 256),
      pidFile: join(dir, 'vmm.pid'),
    });
    const { proc, t0 } = await boot(t, launch, provider);
    assert.equal(await table.isAlive(proc), true);

    // The running QEMU, as /proc and the cgroup files show it.
    const status = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
    const line = (key: string): string => new RegExp(`^${key}:[ \\t]*(.*)$`, 'm').exec(status)?.[1] ?? '';
    const shown = ['Name', 'Uid', 'Gid', 'Groups', 'NoNewPrivs', 'Seccomp', 'CapEff'].map((k) => `${k}: ${line(k).replaceAll('\t', ' ')}`);
    t.diagnostic(`/proc/${proc.pid}/status: ${shown.join(' | ')}`);
    assert.match(line('Name'), /^qemu-system-x86/);
    // The pid file names QEMU itself: the launch chain (sh, perl, setpriv) execs its way there.
    assert.equal(readFileSync(launch.pidFile, 'utf8'), `${proc.pid} ${proc.startTime}\n`);
    assert.deepEqual(await table.recorded(launch.pidFile), { pid: proc.pid, startTime: proc.startTime });
    const id = TEST_VMM.uid;
    assert.equal(line('Uid'), `${id}\t${id}\t${id}\t${id}`);
    assert.equal(line('Gid'), `${TEST_VMM.gid}\t${TEST_VMM.gid}\t${TEST_VMM.gid}\t${TEST_VMM.gid}`);
    assert.equal(line('Groups'), '', 'no supplementary groups (TCG: no /dev/kvm group either)');
    assert.equal(line('Seccomp'), '2', "QEMU's seccomp filter is on");
    assert.equal(line('NoNewPrivs'), '1');
    assert.equal(line('CapEff'), '0000000000000000');
    // v1: the memory and the pids hierarchy; v2: one cgroup for both.
    const cgroupDirs = cgroups.dirs(cgroupName);
    const memoryDir = cgroupDirs[0] ?? '';
    const memoryFile = cgroups.version === 1 ? 'memory.limit_in_bytes' : 'memory.max';
    const memoryLimit = readFileSync(join(memoryDir, memoryFile), 'utf8').trim();
    const pidsMax = readFileSync(join(cgroupDirs.at(-1) ?? '', 'pids.max'), 'utf8').trim();
    const members = readFileSync(join(memoryDir, 'cgroup.procs'), 'utf8').trim().split('\n');
    t.diagnostic(`cgroup v${cgroups.version} ${memoryDir}: ${memoryFile} ${memoryLimit}, pids.max ${pidsMax}, cgroup.procs ${members.join(',')}`);
    assert.equal(memoryLimit, String((256 + 256) * 1024 * 1024), 'memory_in_mb + the VMM overhead');
    assert.equal(pidsMax, '1024');
    assert.deepEqual(members, [String(proc.pid)], 'QEMU, and nothing else, in its cgroup');
    for (const dirOf of cgroupDirs) {
      assert.match(readFileSync(join(dirOf, 'cgroup.procs'), 'utf8'), new RegExp(`^${proc.pid}$`, 'm'));
    }
    assert.match(readFileSync(`/proc/${proc.pid}/cgroup`, 'utf8'), new RegExp(`/${cgroupParent}/${cgroupName}$`, 'm'));

    const addr = await guestAddress(launch.consoleLogPath, 'eth0', MAC_TAP);
    t.diagnostic(`guest eth0 ${addr} ${Date.now() - t0} ms after start()`);
    const ip = addr.split('/')[0] ?? '';
    assert.match(ip, /^192\.168\.77\.\d+$/);
    const leases = readFileSync(dns.leases, 'utf8');
    assert.match(leases, new RegExp(`${MAC_TAP} ${ip.replaceAll('.', '\\.')} `));
    pingFrom(ns.name, ip);
    assert.match(readFileSync(join(dir, 'vmm.log'), 'utf8'), /tsc_early_khz=\d+|-accel kvm/);
    assert.match(readFileSync(join(dir, 'vmm.log'), 'utf8'), new RegExp(` as uid ${id} gid ${TEST_VMM.gid} in `));
    await stopAndCheck(t, provider, launch, proc);
    await cgroups.remove(cgroupName);
    assert.equal(await cgroups.exists(cgroupName), false);
  });

  it('guest order: eth0/eth1 and vda/vdb/vdc follow the LaunchSpec; cidata network-config static address', { timeout: 90_000 }, async (t) => {
    const ns = makeNetns('ord');
    track(ns.destroy);
    const base = vmDirFor('ord');
    track(() => rmSync(base, { recursive: true, force: true }));
    const { dir, consoleLogPath } = sandboxedVmDir(base, TEST_VMM);
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('addr', 'add', '192.168.79.1/24', 'dev', 'br0');
    ns.ip('link', 'set', 'br0', 'up');
    for (const tap of ['fltapa', 'fltapb']) {
      ns.ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
      ns.ip('link', 'set', tap, 'master', 'br0', 'up');
    }
    const dns = startDnsmasq(ns.name, 'br0', '192.168.79.50,192.168.79.150', base);
    track(dns.stop);

    const macA = '02:fe:00:00:02:0a';
    const macB = '02:fe:00:00:02:0b';
    // Disks of different sizes so a mix-up would show; the cidata disk last, as the core orders it.
    for (const [f, mb] of [
      ['root.img', 3],
      ['data.img', 2],
    ] as const) {
      execFileSync('truncate', ['-s', `${mb}M`, join(dir, f)]);
    }
    const cidata = join(dir, 'cidata.img');
    const networkConfig = [
      'version: 2',
      'ethernets:',
      '  eth0:',
      '    match:',
      `      macaddress: ${macA}`,
      '    dhcp4: true',
      '    dhcp6: true',
      '    dhcp-identifier: mac',
      '  eth1:',
      '    match:',
      `      macaddress: ${macB}`,
      '    addresses:',
      '      - 192.168.79.9/24',
      '    routes:',
      '      - to: 10.99.0.0/16',
      '        via: 192.168.79.1',
      '    nameservers:',
      '      addresses:',
      '        - 192.168.79.1',
      '',
    ].join('\n');
    // Written as the daemon writes it (in-process FAT12): the guest's kernel mounts it, reads the
    // long names and finds it by its label.
    await new FatCidataDiskBuilder().build(cidata, { 'meta-data': 'instance_id: order-test\n', 'network-config': networkConfig });
    const cidataSectors = statSync(cidata).size / 512;
    // As the core's vmm_files_access step grants them: the root volume writable, the others read-only.
    await vmFs.grantVmmAccess(join(dir, 'root.img'), TEST_VMM.gid, 'read-write');
    await vmFs.grantVmmAccess(join(dir, 'data.img'), TEST_VMM.gid, 'read');
    await vmFs.grantVmmAccess(cidata, TEST_VMM.gid, 'read');

    const nsProvider = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), netns: ns.name, sandboxed: true });
    const cgroupName = `qemu-ord-${process.pid}`;
    const launch = baseLaunch({
      vmDir: dir,
      kernelPath: KERNEL,
      initrdPath: INITRD,
      disks: [
        { id: 'root', path: join(dir, 'root.img'), readOnly: false, root: true, format: 'raw' },
        { id: 'data', path: join(dir, 'data.img'), readOnly: true, root: false, format: 'raw' },
        { id: 'cidata', path: cidata, readOnly: true, root: false, format: 'raw' },
      ],
      nics: [
        { deviceId: 'eth0', type: 'tap', hostDevice: 'fltapa', mac: macA },
        { deviceId: 'eth1', type: 'tap', hostDevice: 'fltapb', mac: macB },
      ],
      cloudInit: { 'meta-data': 'instance_id: order-test\n', 'network-config': networkConfig },
      consoleLogPath,
      sandbox: await sandboxFor(cgroupName, 256),
      pidFile: join(dir, 'vmm.pid'),
    });
    const { proc, t0 } = await boot(t, launch, nsProvider);
    const staticAddr = await guestAddress(launch.consoleLogPath, 'eth1', macB);
    assert.equal(staticAddr, '192.168.79.9/24');
    const dhcpAddr = await guestAddress(launch.consoleLogPath, 'eth0', macA);
    t.diagnostic(`guest eth0 ${dhcpAddr} (DHCP), eth1 ${staticAddr} (static) ${Date.now() - t0} ms after start()`);
    const text = readFileSync(launch.consoleLogPath, 'utf8');
    const lines = (prefix: string): string[] =>
      text
        .split('\n')
        .filter((l) => l.startsWith(prefix))
        .map((l) => l.trim());
    assert.deepEqual(lines('FLINTLOCK-GUEST-NIC '), [`FLINTLOCK-GUEST-NIC eth0 ${macA}`, `FLINTLOCK-GUEST-NIC eth1 ${macB}`]);
    assert.deepEqual(lines('FLINTLOCK-GUEST-DISK '), [
      'FLINTLOCK-GUEST-DISK vda serial=root size=6144 ro=0',
      'FLINTLOCK-GUEST-DISK vdb serial=data size=4096 ro=1',
      `FLINTLOCK-GUEST-DISK vdc serial=cidata size=${cidataSectors} ro=1`,
    ]);
    assert.deepEqual(lines('FLINTLOCK-GUEST-CIDATA '), ['FLINTLOCK-GUEST-CIDATA /dev/vdc']);
    assert.deepEqual(lines('FLINTLOCK-GUEST-META '), ['FLINTLOCK-GUEST-META instance-id order-test']);
    // Exactly the static address on eth1, nothing from DHCP there.
    assert.deepEqual(lines('FLINTLOCK-GUEST eth1 '), [`FLINTLOCK-GUEST eth1 ${macB} 192.168.79.9/24`]);
    assert.match(readFileSync(join(dir, 'vmm.log'), 'utf8'), / root=\/dev\/vda rw/);
    pingFrom(ns.name, '192.168.79.9');
    pingFrom(ns.name, dhcpAddr.split('/')[0] ?? '');
    await stopAndCheck(t, nsProvider, launch, proc);
    await cgroups.remove(cgroupName);
  });

  it('macvtap by fd: lease from dnsmasq on the far side of the veth parent', { timeout: 90_000 }, async (t) => {
    const host = makeNetns('mvh');
    track(host.destroy);
    const lan = makeNetns('mvl');
    track(lan.destroy);
    const base = vmDirFor('mvt');
    track(() => rmSync(base, { recursive: true, force: true }));
    const { dir, consoleLogPath } = sandboxedVmDir(base, TEST_VMM);
    host.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan.name);
    lan.ip('addr', 'add', '192.168.78.1/24', 'dev', 'lan0');
    lan.ip('link', 'set', 'lan0', 'up');
    host.ip('link', 'set', 'eth0', 'up');
    host.ip('link', 'add', 'link', 'eth0', 'name', 'flvtap0', 'type', 'macvtap', 'mode', 'bridge');
    host.ip('link', 'set', 'flvtap0', 'up');
    const dns = startDnsmasq(lan.name, 'lan0', '192.168.78.50,192.168.78.150', base);
    track(dns.stop);

    // Facts from sysfs inside the namespace; the node is made in the VM dir (never /dev/tapN).
    const rd = (f: string): string => host.exec('cat', `/sys/class/net/flvtap0/${f}`).trim();
    const ifindex = rd('ifindex');
    const mac = rd('address');
    const [major, minor] = rd(`macvtap/tap${ifindex}/dev`).split(':');
    const tapNode = join(dir, `tap${ifindex}`);
    sh('mknod', [tapNode, 'c', major ?? '', minor ?? '']);

    // No netns: QEMU runs in the root namespace, the fd carries the network. The node stays
    // root's (0600): QEMU, under its own uid, only ever gets the fd the provider opened.
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), sandboxed: true });
    const cgroupName = `qemu-mvt-${process.pid}`;
    const launch = baseLaunch({
      vmDir: dir,
      kernelPath: KERNEL,
      initrdPath: INITRD,
      nics: [{ deviceId: 'eth0', type: 'macvtap', hostDevice: 'flvtap0', mac, tapNode }],
      consoleLogPath,
      sandbox: await sandboxFor(cgroupName, 256),
      pidFile: join(dir, 'vmm.pid'),
    });
    const { proc, t0 } = await boot(t, launch, p);
    const addr = await guestAddress(launch.consoleLogPath, 'eth0', mac);
    t.diagnostic(`guest eth0 ${addr} via macvtap ${Date.now() - t0} ms after start()`);
    const ip = addr.split('/')[0] ?? '';
    assert.match(ip, /^192\.168\.78\.\d+$/);
    assert.match(readFileSync(dns.leases, 'utf8'), new RegExp(`${mac} ${ip.replaceAll('.', '\\.')} `));
    pingFrom(lan.name, ip);
    await stopAndCheck(t, p, launch, proc);
    await cgroups.remove(cgroupName);
  });

  it('start() fails, leaving no process, when QEMU exits at once; the error carries vmm.log', { timeout: 30_000 }, async () => {
    const dir = vmDirFor('bad');
    track(() => rmSync(dir, { recursive: true, force: true }));
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), kvm: false, tscKhz: 1 });
    const launch = baseLaunch({ vmDir: dir, kernelPath: join(dir, 'no-such-kernel'), consoleLogPath: join(dir, 'console.log') });
    await assert.rejects(p.start(launch), (e: Error) => {
      assert.match(e.message, /QEMU exited with code 1 before the guest ran/);
      assert.match(e.message, /no-such-kernel/);
      return true;
    });
  });

  it('an aborted start() (a delete, a shutdown) stops the QEMU it spawned at once and rejects with the reason', { timeout: 30_000 }, async (t) => {
    const dir = vmDirFor('aborted');
    track(() => rmSync(dir, { recursive: true, force: true }));
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), kvm: false, tscKhz: 1 });
    const launch = baseLaunch({ vmDir: dir, consoleLogPath: join(dir, 'console.log') });
    const controller = new AbortController();
    // Abort the moment the VMM exists (its pid file), before QEMU can report the guest running.
    const spawned = waitFor('the pid file', () => table.recorded(launch.pidFile), 10_000, 1).then((proc) => {
      controller.abort(new Error('the microvm is being deleted'));
      return proc;
    });
    const t0 = Date.now();
    await assert.rejects(p.start(launch, controller.signal), /the microvm is being deleted/);
    t.diagnostic(`start() rejected ${Date.now() - t0} ms after it was called`);
    const proc = await spawned;
    started.push(proc);
    assert.equal(await table.isAlive(proc), false, 'the QEMU it spawned is gone');
  });

  it('stop() kills a guest that ignores the power button after the timeout (VM dir too long for a socket path)', { timeout: 60_000 }, async (t) => {
    // Stopped right after start(), long before the guest's init listens for the power button,
    // with a 1 ms grace period: the power-down request goes unanswered and SIGKILL follows.
    // The VM dir is longer than sun_path allows, so QMP goes through the relative path.
    const base = vmDirFor('kill');
    track(() => rmSync(base, { recursive: true, force: true }));
    // Sandboxed too: the daemon reaches the socket of a QEMU running as another uid through
    // /proc/<pid>/cwd.
    const long = join(base, 'd'.repeat(110));
    mkdirSync(long);
    const { dir, consoleLogPath } = sandboxedVmDir(long, TEST_VMM);
    assert.ok(Buffer.byteLength(join(dir, 'qmp.sock')) > 107);
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), sandboxed: true });
    const cgroupName = `qemu-kill-${process.pid}`;
    const launch = baseLaunch({ vmDir: dir, kernelPath: KERNEL, initrdPath: INITRD, consoleLogPath, sandbox: await sandboxFor(cgroupName, 256) });
    const { proc } = await boot(t, launch, p);
    const s0 = Date.now();
    await p.stop(dir, proc, 1);
    t.diagnostic(`stop(timeout 1 ms) took ${Date.now() - s0} ms`);
    assert.equal(await table.isAlive(proc), false);
    assert.equal(table.exitReason(proc), 'killed by SIGKILL');
    await cgroups.remove(cgroupName);
  });
});
