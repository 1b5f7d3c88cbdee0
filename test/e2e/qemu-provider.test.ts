// QemuProvider for real: boots the test guest (scripts/build-guest-image.sh) under QEMU -M microvm
// (TCG when KVM can't run a guest here) inside network namespaces this file creates:
//   1. tap on a bridge with dnsmasq: DHCP lease, ping from the bridge, graceful stop;
//   2. guest device order: two taps and three disks (one a cidata FAT disk with a netplan
//      network-config giving eth1 a static address) come up as eth0/eth1 and vda/vdb/vdc in
//      LaunchSpec order;
//   3. macvtap by fd: veth parent in namespace A, dnsmasq on the peer in namespace B; QEMU runs in
//      the root namespace, the macvtap fd carries the network.
// Every boot has a deadline; every process started here is killed by pid in after(); every
// namespace is deleted in after() (which removes its devices too).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';

import { LinuxProcessTable, readProcStatSync } from '../../src/adapters/process/process-table.js';
import { QemuProvider, hostTscKhz, qemuArgs } from '../../src/adapters/providers/qemu.js';
import { guestDiskName, renderCmdline } from '../../src/core/guest.js';
import type { LaunchDisk, LaunchNic, LaunchSpec, Logger, VmmProcess } from '../../src/core/ports.js';
import { sampleVm } from '../helpers/fixtures.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { ensureGuestImage, guestAddress, INITRD, KERNEL, pingFrom, QEMU, startDnsmasq } from '../helpers/guest-lab.js';

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

  it('builds a microvm command line with disks and NICs in LaunchSpec order, macvtaps by fd 3, 4, ...', () => {
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
    assert.match(line, /-M microvm -accel tcg -smp 1 -m 256M -nodefaults -no-user-config -nographic -no-reboot/);
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
      'tap,id=net1,ifname=fltap2,script=no,downscript=no',
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

const MAC_TAP = '02:fe:00:00:01:01';

describeWith('QemuProvider boots the test guest', GUEST_LAB, { timeout: 240_000 }, () => {
  const table = new LinuxProcessTable();
  const log = new CaptureLogger();
  const started: VmmProcess[] = [];
  const cleanups: Array<() => void> = [];
  // QEMU runs detached (it outlives its starter by design): killed when this file's process ends,
  // however it ends, if after() didn't get to it. Same pid and start time: never a reused pid.
  atExit(() => {
    for (const p of started) if (readProcStatSync(p.pid)?.startTime === p.startTime) process.kill(p.pid, 'SIGKILL');
  });

  before(
    () => {
      ensureGuestImage();
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

  it('tap on a bridge: DHCP lease, ping from the bridge, graceful stop', { timeout: 90_000 }, async (t) => {
    const ns = makeNetns('tap');
    track(ns.destroy);
    const dir = vmDirFor('tap');
    track(() => rmSync(dir, { recursive: true, force: true }));
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('addr', 'add', '192.168.77.1/24', 'dev', 'br0');
    ns.ip('link', 'set', 'br0', 'up');
    ns.ip('tuntap', 'add', 'dev', 'fltap0', 'mode', 'tap');
    ns.ip('link', 'set', 'fltap0', 'master', 'br0', 'up');
    const dns = startDnsmasq(ns.name, 'br0', '192.168.77.50,192.168.77.150', dir);
    track(dns.stop);

    const provider = new QemuProvider({ bin: QEMU, processes: table, log, netns: ns.name });
    assert.deepEqual(provider.availability(), { available: true });
    const nic: LaunchNic = { deviceId: 'eth0', type: 'tap', hostDevice: 'fltap0', mac: MAC_TAP };
    const launch = baseLaunch({
      vmDir: dir,
      kernelPath: KERNEL,
      initrdPath: INITRD,
      nics: [nic],
      consoleLogPath: join(dir, 'console.log'),
      pidFile: join(dir, 'vmm.pid'),
    });
    const { proc, t0 } = await boot(t, launch, provider);
    assert.equal(await table.isAlive(proc), true);
    const addr = await guestAddress(launch.consoleLogPath, 'eth0', MAC_TAP);
    t.diagnostic(`guest eth0 ${addr} ${Date.now() - t0} ms after start()`);
    const ip = addr.split('/')[0] ?? '';
    assert.match(ip, /^192\.168\.77\.\d+$/);
    const leases = readFileSync(dns.leases, 'utf8');
    assert.match(leases, new RegExp(`${MAC_TAP} ${ip.replaceAll('.', '\\.')} `));
    pingFrom(ns.name, ip);
    assert.match(readFileSync(join(dir, 'vmm.log'), 'utf8'), /tsc_early_khz=\d+|-accel kvm/);
    await stopAndCheck(t, provider, launch, proc);
  });

  it('guest order: eth0/eth1 and vda/vdb/vdc follow the LaunchSpec; cidata network-config static address', { timeout: 90_000 }, async (t) => {
    const ns = makeNetns('ord');
    track(ns.destroy);
    const dir = vmDirFor('ord');
    track(() => rmSync(dir, { recursive: true, force: true }));
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('addr', 'add', '192.168.79.1/24', 'dev', 'br0');
    ns.ip('link', 'set', 'br0', 'up');
    for (const tap of ['fltapa', 'fltapb']) {
      ns.ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
      ns.ip('link', 'set', tap, 'master', 'br0', 'up');
    }
    const dns = startDnsmasq(ns.name, 'br0', '192.168.79.50,192.168.79.150', dir);
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
    writeFileSync(join(dir, 'meta-data'), 'instance_id: order-test\n');
    writeFileSync(join(dir, 'network-config'), networkConfig);
    execFileSync('mkfs.vfat', ['-n', 'cidata', '-C', cidata, '1024'], {
      stdio: 'ignore',
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
    });
    execFileSync('mcopy', ['-i', cidata, join(dir, 'meta-data'), join(dir, 'network-config'), '::']);

    const nsProvider = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger(), netns: ns.name });
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
      consoleLogPath: join(dir, 'console.log'),
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
      'FLINTLOCK-GUEST-DISK vdc serial=cidata size=2048 ro=1',
    ]);
    assert.deepEqual(lines('FLINTLOCK-GUEST-CIDATA '), ['FLINTLOCK-GUEST-CIDATA /dev/vdc']);
    assert.deepEqual(lines('FLINTLOCK-GUEST-META '), ['FLINTLOCK-GUEST-META instance-id order-test']);
    // Exactly the static address on eth1, nothing from DHCP there.
    assert.deepEqual(lines('FLINTLOCK-GUEST eth1 '), [`FLINTLOCK-GUEST eth1 ${macB} 192.168.79.9/24`]);
    assert.match(readFileSync(join(dir, 'vmm.log'), 'utf8'), / root=\/dev\/vda rw/);
    pingFrom(ns.name, '192.168.79.9');
    pingFrom(ns.name, dhcpAddr.split('/')[0] ?? '');
    await stopAndCheck(t, nsProvider, launch, proc);
  });

  it('macvtap by fd: lease from dnsmasq on the far side of the veth parent', { timeout: 90_000 }, async (t) => {
    const host = makeNetns('mvh');
    track(host.destroy);
    const lan = makeNetns('mvl');
    track(lan.destroy);
    const dir = vmDirFor('mvt');
    track(() => rmSync(dir, { recursive: true, force: true }));
    host.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan.name);
    lan.ip('addr', 'add', '192.168.78.1/24', 'dev', 'lan0');
    lan.ip('link', 'set', 'lan0', 'up');
    host.ip('link', 'set', 'eth0', 'up');
    host.ip('link', 'add', 'link', 'eth0', 'name', 'flvtap0', 'type', 'macvtap', 'mode', 'bridge');
    host.ip('link', 'set', 'flvtap0', 'up');
    const dns = startDnsmasq(lan.name, 'lan0', '192.168.78.50,192.168.78.150', dir);
    track(dns.stop);

    // Facts from sysfs inside the namespace; the node is made in the VM dir (never /dev/tapN).
    const rd = (f: string): string => host.exec('cat', `/sys/class/net/flvtap0/${f}`).trim();
    const ifindex = rd('ifindex');
    const mac = rd('address');
    const [major, minor] = rd(`macvtap/tap${ifindex}/dev`).split(':');
    const tapNode = join(dir, `tap${ifindex}`);
    sh('mknod', [tapNode, 'c', major ?? '', minor ?? '']);

    // No netns: QEMU runs in the root namespace, the fd carries the network.
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger() });
    const launch = baseLaunch({
      vmDir: dir,
      kernelPath: KERNEL,
      initrdPath: INITRD,
      nics: [{ deviceId: 'eth0', type: 'macvtap', hostDevice: 'flvtap0', mac, tapNode }],
      consoleLogPath: join(dir, 'console.log'),
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

  it('stop() kills a guest that ignores the power button after the timeout (VM dir too long for a socket path)', { timeout: 60_000 }, async (t) => {
    // Stopped right after start(), long before the guest's init listens for the power button,
    // with a 1 ms grace period: the power-down request goes unanswered and SIGKILL follows.
    // The VM dir is longer than sun_path allows, so QMP goes through the relative path.
    const base = vmDirFor('kill');
    track(() => rmSync(base, { recursive: true, force: true }));
    const dir = join(base, 'd'.repeat(110));
    mkdirSync(dir);
    assert.ok(Buffer.byteLength(join(dir, 'qmp.sock')) > 107);
    const p = new QemuProvider({ bin: QEMU, processes: table, log: new CaptureLogger() });
    const launch = baseLaunch({ vmDir: dir, kernelPath: KERNEL, initrdPath: INITRD, consoleLogPath: join(dir, 'console.log') });
    const { proc } = await boot(t, launch, p);
    const s0 = Date.now();
    await p.stop(dir, proc, 1);
    t.diagnostic(`stop(timeout 1 ms) took ${Date.now() - s0} ms`);
    assert.equal(await table.isAlive(proc), false);
    assert.equal(table.exitReason(proc), 'killed by SIGKILL');
  });
});
