// The VMM sandbox (ADR 0009): the pure parts (uid range, allocation, limits, the files a VMM
// reaches, the launch chain's argv, NIC fds, /dev/kvm's group), then the chain for real: what a
// process started through it is (uid, groups, no new privileges, no capabilities, PATH only, only
// the fds handed to it) and the tap stage against a tap in a namespace of this test's.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { LinuxProcessTable, readProcStatSync, vmmEnvironment } from '../../src/adapters/process/process-table.js';
import { CGROUP_JOIN_SCRIPT, kvmGroupFor, nicFdPlan, sandboxedCommand, FD_STAGE_SCRIPT } from '../../src/adapters/providers/sandbox.js';
import { vmmFiles } from '../../src/core/launch.js';
import type { LaunchSpec, VmmProcess } from '../../src/core/ports.js';
import { allocateVmmIdentity, parseVmmIdRange, validCgroupParent, vmmCgroupLimits } from '../../src/core/sandbox.js';
import { sampleVm } from '../helpers/fixtures.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, NETNS, ROOT } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { TEST_VMM } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

describe('VMM sandbox, pure parts', () => {
  it('parses vmm-uid-range START:COUNT; empty is no range; uid 0 and overflow are refused', () => {
    assert.deepEqual(parseVmmIdRange('1879048192:65536'), { start: 1_879_048_192, count: 65_536 });
    assert.equal(parseVmmIdRange(' '), undefined);
    assert.match(JSON.stringify(parseVmmIdRange('0:10')), /must not include uid 0/);
    assert.match(JSON.stringify(parseVmmIdRange('100:0')), /at least one uid/);
    assert.match(JSON.stringify(parseVmmIdRange('4294967290:10')), /ends above 4294967294/);
    assert.match(JSON.stringify(parseVmmIdRange('nobody')), /is not START:COUNT/);
  });

  it('allocates the lowest uid no other VM holds, gid = uid', () => {
    const range = { start: 1000, count: 3 };
    const inUse =
      (...uids: number[]) =>
      (uid: number) =>
        uids.includes(uid);
    assert.deepEqual(allocateVmmIdentity(range, inUse()), { uid: 1000, gid: 1000 });
    assert.deepEqual(allocateVmmIdentity(range, inUse(1000, 1002)), { uid: 1001, gid: 1001 });
    assert.match(JSON.stringify(allocateVmmIdentity(range, inUse(1000, 1001, 1002))), /1000:3 has no free uid left/);
  });

  it('derives the cgroup limits from memory_in_mb plus the overhead; pids fixed', () => {
    assert.deepEqual(vmmCgroupLimits(256, { memoryOverheadMb: 256, pidsMax: 1024 }), { memoryBytes: 512 * 1024 * 1024, pidsMax: 1024 });
    assert.equal(validCgroupParent('flintlock'), true);
    assert.equal(validCgroupParent('system.slice/flintlock-vmms'), true);
    for (const bad of ['', '/flintlock', 'a/../b', 'a//b']) assert.equal(validCgroupParent(bad), false, bad);
  });

  it('lists the VM-dir files the VMM opens, with the directories on the way; shared image files are not its to grant', () => {
    const dir = '/state/vm/ns/vm1/uid1';
    const launch: LaunchSpec = {
      vm: sampleVm(),
      vmDir: dir,
      vcpu: 1,
      memoryMb: 256,
      kernelPath: '/state/images/files/abc-kernel',
      initrdPath: '/state/images/files/abc-initrd',
      cmdline: {},
      disks: [
        { id: 'root', path: `${dir}/volumes/root.qcow2`, readOnly: false, root: true, format: 'qcow2' },
        { id: 'ro', path: '/state/images/ext4/abc-auto.img', readOnly: true, root: false, format: 'raw' },
        { id: 'cidata', path: `${dir}/cidata.img`, readOnly: true, root: false, format: 'raw' },
      ],
      nics: [],
      cloudInit: { 'meta-data': '' },
      consoleLogPath: `${dir}/console.log`,
      // The daemon's (0600): the VMM never opens it, so it is not listed.
      pidFile: `${dir}/vmm.pid`,
    };
    assert.deepEqual(vmmFiles(launch), [
      { path: `${dir}/volumes`, access: 'dir' },
      { path: `${dir}/console.log`, access: 'read-write' },
      { path: `${dir}/volumes/root.qcow2`, access: 'read-write' },
      { path: `${dir}/cidata.img`, access: 'read' },
    ]);
  });

  it('builds the launch chain: join the cgroup, [netns], open taps, drop to the VM uid, exec the VMM', () => {
    const command = sandboxedCommand({
      bin: 'qemu-system-x86_64',
      args: ['-M', 'microvm'],
      cgroupProcs: ['/sys/fs/cgroup/memory/flintlock/U/cgroup.procs', '/sys/fs/cgroup/pids/flintlock/U/cgroup.procs'],
      netns: 'ns1',
      taps: [{ name: 'fltap1', fd: 4 }],
      handedFds: 1,
      identity: { uid: 1_879_048_193, gid: 1_879_048_193 },
      groups: [994],
    });
    assert.equal(command.bin, 'sh');
    assert.deepEqual(command.args, [
      '-c',
      CGROUP_JOIN_SCRIPT,
      'flintlock-cgroup-join',
      '/sys/fs/cgroup/memory/flintlock/U/cgroup.procs',
      '/sys/fs/cgroup/pids/flintlock/U/cgroup.procs',
      '--',
      'ip',
      'netns',
      'exec',
      'ns1',
      'perl',
      '-e',
      FD_STAGE_SCRIPT,
      '1',
      '4=fltap1',
      '--',
      'setpriv',
      '--reuid=1879048193',
      '--regid=1879048193',
      '--groups=994',
      '--no-new-privs',
      '--inh-caps=-all',
      '--',
      'qemu-system-x86_64',
      '-M',
      'microvm',
    ]);
    // Nothing to do: the VMM itself (the old behaviour, for a daemon without vmm-uid-range or cgroups).
    assert.deepEqual(sandboxedCommand({ bin: 'vmm', args: ['a'], cgroupProcs: [] }), { bin: 'vmm', args: ['a'] });
    assert.ok(sandboxedCommand({ bin: 'vmm', args: [], cgroupProcs: [], identity: TEST_VMM }).args.includes('--clear-groups'));
  });

  it('puts macvtap fds first (handed over by the daemon), then taps (opened by the chain), each in NIC order', () => {
    const plan = nicFdPlan([
      { deviceId: 'eth0', type: 'tap', hostDevice: 'fltap0', mac: '02:00:00:00:00:01' },
      { deviceId: 'eth1', type: 'macvtap', hostDevice: 'flvtap1', mac: '02:00:00:00:00:02', tapNode: '/v/tap-eth1' },
      { deviceId: 'eth2', type: 'tap', hostDevice: 'fltap2', mac: '02:00:00:00:00:03' },
      { deviceId: 'eth3', type: 'macvtap', hostDevice: 'flvtap3', mac: '02:00:00:00:00:04', tapNode: '/v/tap-eth3' },
    ]);
    assert.deepEqual(plan, {
      fds: [5, 3, 6, 4],
      macvtapNodes: ['/v/tap-eth1', '/v/tap-eth3'],
      taps: [
        { name: 'fltap0', fd: 5 },
        { name: 'fltap2', fd: 6 },
      ],
    });
    assert.throws(() => nicFdPlan([{ deviceId: 'eth0', type: 'macvtap', hostDevice: 'x', mac: 'm' }]), /macvtap interface eth0 has no tap device node/);
  });

  it("keeps /dev/kvm's group when the group may open it, none when everyone may, and says when only root can", () => {
    assert.deepEqual(kvmGroupFor({ mode: 0o20660, gid: 994 }), { usable: true, groups: [994] });
    assert.deepEqual(kvmGroupFor({ mode: 0o20666, gid: 994 }), { usable: true, groups: [] });
    assert.deepEqual(kvmGroupFor({ mode: 0o20600, gid: 0 }), { usable: false, groups: [] });
    assert.deepEqual(kvmGroupFor(undefined), { usable: false, groups: [] });
  });

  it('gives a VMM PATH and nothing else of the daemon environment', () => {
    assert.deepEqual(vmmEnvironment({ PATH: '/usr/bin', FLINTLOCKD_BASIC_AUTH_TOKEN: 'secret', HOME: '/root' }), { PATH: '/usr/bin' });
  });
});

describeWith('VMM launch chain, for real', [ROOT], {}, () => {
  const table = new LinuxProcessTable();
  const started: VmmProcess[] = [];
  atExit(() => {
    for (const p of started) if (readProcStatSync(p.pid)?.startTime === p.startTime) process.kill(p.pid, 'SIGKILL');
  });
  const tmp = mkdtempSync(join(tmpdir(), 'fl-sandbox-'));
  chmodSync(tmp, 0o711);
  after(() => rmSync(tmp, { recursive: true, force: true }));

  /** Runs `sh -c script` through the chain and returns what it printed. */
  async function runInChain(script: string, extra: { netns?: string; taps?: { name: string; fd: number }[]; extraFds?: number[] } = {}): Promise<string> {
    const out = join(tmp, `out-${started.length}`);
    const command = sandboxedCommand({
      bin: 'sh',
      args: ['-c', script],
      cgroupProcs: [join(tmp, `procs-${started.length}`)],
      ...(extra.netns !== undefined ? { netns: extra.netns } : {}),
      ...(extra.taps !== undefined ? { taps: extra.taps } : {}),
      handedFds: extra.extraFds?.length ?? 0,
      identity: TEST_VMM,
    });
    const proc = await table.spawn(command.bin, command.args, { logPath: out, ...(extra.extraFds !== undefined ? { extraFds: extra.extraFds } : {}) });
    started.push(proc);
    await waitFor('the chain to finish', async () => !(await table.isAlive(proc)), 10_000);
    assert.equal(table.exitReason(proc), 'exited with code 0', readFileSync(out, 'utf8'));
    // The "cgroup" here is a plain file: the join stage wrote the pid, which every exec kept.
    assert.equal(readFileSync(join(tmp, `procs-${started.length - 1}`), 'utf8').trim(), String(proc.pid));
    return readFileSync(out, 'utf8');
  }

  it('runs as the VM uid/gid with no supplementary groups, no new privileges, no capabilities, PATH only, only its fds', async () => {
    const handed = join(tmp, 'handed');
    writeFileSync(handed, '');
    const fd = openSync(handed, 'r');
    let out: string;
    try {
      out = await runInChain('grep -E "^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb):" /proc/self/status; env; ls /proc/self/fd', {
        extraFds: [fd],
      });
    } finally {
      closeSync(fd);
    }
    const id = String(TEST_VMM.uid);
    assert.match(out, new RegExp(`^Uid:\\t${id}\\t${id}\\t${id}\\t${id}$`, 'm'));
    assert.match(out, new RegExp(`^Gid:\\t${id}\\t${id}\\t${id}\\t${id}$`, 'm'));
    assert.match(out, /^Groups:\s*$/m);
    assert.match(out, /^NoNewPrivs:\t1$/m);
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) assert.match(out, new RegExp(`^${cap}:\\t0000000000000000$`, 'm'));
    const env = out.split('\n').filter((l) => /^[A-Z_]+=/.test(l) && !l.startsWith('PWD=') && !l.startsWith('SHLVL=') && !l.startsWith('_='));
    assert.deepEqual(
      env.map((l) => l.split('=')[0]),
      ['PATH'],
      'the daemon environment stays with the daemon',
    );
    // stdin, the log (stdout, stderr), the one fd handed over, and the fd ls itself opens:
    // nothing the test runner (the daemon here) inherited from its own parent.
    const fds = out
      .split('\n')
      .filter((l) => /^\d+$/.test(l))
      .map(Number);
    assert.deepEqual(fds, [0, 1, 2, 3, 4]);
  });

  describeWith('the tap stage', [NETNS], {}, () => {
    let ns: TestNetns;
    const destroy = atExit(() => ns?.destroy());
    after(() => destroy());

    it('opens an existing tap by name at the given fd (the VMM needs no /dev/net/tun), and never creates one', async () => {
      ns = createTestNetns('flsbx', { bare: true });
      ns.ip('tuntap', 'add', 'dev', 'fltapsbx0', 'mode', 'tap');
      const out = await runInChain('cat /proc/self/fdinfo/5; readlink /proc/self/fd/5', { netns: ns.name, taps: [{ name: 'fltapsbx0', fd: 5 }] });
      assert.match(out, /^iff:\tfltapsbx0$/m, 'fd 5 is attached to the tap');
      assert.match(out, /^\/dev\/net\/tun$/m);

      const missing = sandboxedCommand({ bin: 'true', args: [], cgroupProcs: [], netns: ns.name, taps: [{ name: 'fltapnone', fd: 3 }], identity: TEST_VMM });
      const proc = await table.spawn(missing.bin, missing.args, { logPath: join(tmp, 'missing.log') });
      started.push(proc);
      await waitFor('the chain to stop', async () => !(await table.isAlive(proc)));
      assert.notEqual(table.exitReason(proc), 'exited with code 0');
      assert.match(readFileSync(join(tmp, 'missing.log'), 'utf8'), /fltapnone is not a tap device here/);
      assert.equal(ns.link('fltapnone'), undefined, 'no tap was created under that name');
      assert.doesNotMatch(execFileSync('ip', ['-n', ns.name, 'link', 'show'], { encoding: 'utf8' }), /fltapnone/);
    });
  });
});
