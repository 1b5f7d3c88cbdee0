// The cgroup adapter (ADR 0009) against fake hierarchies in a temp dir (both layouts), then for
// real on this host's hierarchy: a process started through the launch chain is in its cgroup
// from its first instruction, with the limits set, and the cgroup goes once it has exited.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { detectCgroupLayout, HostVmmCgroups, NoVmmCgroups } from '../../src/adapters/cgroups/cgroups.js';
import { LinuxProcessTable, readProcStatSync } from '../../src/adapters/process/process-table.js';
import { sandboxedCommand } from '../../src/adapters/providers/sandbox.js';
import type { VmmProcess } from '../../src/core/ports.js';
import { describeWith } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { CGROUPS, HOST_CGROUP_ROOT, TEST_VMM, testCgroupParent } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const LIMITS = { memoryBytes: 320 * 1024 * 1024, pidsMax: 512 };
const NAME = '01HZZZZZZZZZZZZZZZZZZZZZZZ';

const read = (path: string): string => readFileSync(path, 'utf8');

describe('cgroup adapter on fake hierarchies', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  function fakeRoot(files: Record<string, string>): string {
    const root = mkdtempSync(join(tmpdir(), 'fl-cgroup-'));
    dirs.push(root);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), content);
    }
    return root;
  }
  /** rmdir(2) on cgroupfs takes the control files with it; a plain directory needs them gone first. */
  function dropControlFiles(dir: string): void {
    for (const name of readdirSync(dir)) unlinkSync(join(dir, name));
  }

  it('v1 (a hierarchy per controller, as here): memory and pids cgroups with their limits', async () => {
    const root = fakeRoot({
      'memory/memory.limit_in_bytes': '9223372036854771712\n',
      'memory/cgroup.procs': '',
      'pids/cgroup.procs': '',
      'unified/cgroup.procs': '',
    });
    const layout = await detectCgroupLayout(root);
    assert.deepEqual(layout, { version: 1, memory: join(root, 'memory'), pids: join(root, 'pids') });
    assert.ok(!('error' in layout));
    const cgroups = new HostVmmCgroups(layout, 'flintlock');
    assert.equal(await cgroups.exists(NAME), false);
    const procs = await cgroups.ensure(NAME, LIMITS);
    const memory = join(root, 'memory/flintlock', NAME);
    const pids = join(root, 'pids/flintlock', NAME);
    assert.deepEqual(procs, [join(memory, 'cgroup.procs'), join(pids, 'cgroup.procs')]);
    assert.equal(read(join(memory, 'memory.limit_in_bytes')), String(320 * 1024 * 1024));
    assert.equal(read(join(pids, 'pids.max')), '512');
    assert.equal(existsSync(join(root, 'unified/flintlock')), false, 'the empty v2 hierarchy of a hybrid host is not used');
    assert.equal(await cgroups.exists(NAME), true);
    // Ensure again (a VMM restart): the same cgroup, the limits rewritten.
    await cgroups.ensure(NAME, { memoryBytes: 1024, pidsMax: 16 });
    assert.equal(read(join(memory, 'memory.limit_in_bytes')), '1024');
    dropControlFiles(memory);
    dropControlFiles(pids);
    await cgroups.remove(NAME);
    assert.equal(await cgroups.exists(NAME), false);
    await cgroups.remove(NAME); // gone is not an error
    assert.ok(existsSync(join(root, 'memory/flintlock')), 'the parent stays (other VMs)');
  });

  it('v2 (unified): one cgroup, memory.max and pids.max, controllers enabled on the root and every parent level', async () => {
    const root = fakeRoot({ 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n', 'cgroup.subtree_control': 'cpu memory\n' });
    const layout = await detectCgroupLayout(root);
    assert.deepEqual(layout, { version: 2, root });
    assert.ok(!('error' in layout));
    const cgroups = new HostVmmCgroups(layout, 'machines/flintlock');
    const procs = await cgroups.ensure(NAME, LIMITS);
    const leaf = join(root, 'machines/flintlock', NAME);
    assert.deepEqual(procs, [join(leaf, 'cgroup.procs')]);
    assert.equal(read(join(leaf, 'memory.max')), String(320 * 1024 * 1024));
    assert.equal(read(join(leaf, 'pids.max')), '512');
    // Only what is missing is enabled (writing to subtree_control adds; it never replaces).
    assert.equal(read(join(root, 'cgroup.subtree_control')), '+pids');
    assert.equal(read(join(root, 'machines/cgroup.subtree_control')), '+memory +pids');
    assert.equal(read(join(root, 'machines/flintlock/cgroup.subtree_control')), '+memory +pids');
    assert.equal(existsSync(join(leaf, 'cgroup.subtree_control')), false, 'the VMM cgroup itself holds processes, it distributes nothing');
    dropControlFiles(leaf);
    await cgroups.remove(NAME);
    assert.equal(existsSync(leaf), false);
  });

  it('says why a host has no usable hierarchy', async () => {
    const noPids = fakeRoot({ 'cgroup.controllers': 'cpu memory io\n' });
    assert.deepEqual(await detectCgroupLayout(noPids), { error: `the cgroup v2 hierarchy at ${noPids} has no pids controller` });
    const nothing = fakeRoot({ 'unified/cgroup.controllers': '' });
    assert.match(JSON.stringify(await detectCgroupLayout(nothing)), /no cgroup hierarchy with the memory and pids controllers/);
  });

  it('refuses parents and names that are not plain relative paths', () => {
    const layout = { version: 2 as const, root: '/nonexistent' };
    for (const bad of ['', '/abs', '../up', 'a//b', 'a/./b']) assert.throws(() => new HostVmmCgroups(layout, bad), /invalid cgroup parent/, bad);
    const cgroups = new HostVmmCgroups(layout, 'flintlock');
    assert.throws(() => cgroups.dirs('../escape'), /invalid cgroup name/);
    assert.deepEqual(cgroups.dirs(NAME), [join('/nonexistent/flintlock', NAME)]);
  });

  it('disabled (vmm-cgroup-parent empty): no cgroup, nothing to join', async () => {
    const none = new NoVmmCgroups();
    assert.deepEqual(await none.ensure(), []);
    assert.equal(await none.exists(), false);
  });
});

describeWith('cgroup adapter on this host', [CGROUPS], {}, () => {
  const table = new LinuxProcessTable();
  const started: VmmProcess[] = [];
  atExit(() => {
    for (const p of started) if (readProcStatSync(p.pid)?.startTime === p.startTime) process.kill(p.pid, 'SIGKILL');
  });
  const parent = testCgroupParent('cg');
  const tmp = mkdtempSync(join(tmpdir(), 'fl-cgroup-real-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('a process started through the launch chain is in its cgroup with the limits; the cgroup goes after it exits', async () => {
    const layout = await detectCgroupLayout(HOST_CGROUP_ROOT);
    assert.ok(!('error' in layout), JSON.stringify(layout));
    const cgroups = new HostVmmCgroups(layout, parent);
    const procs = await cgroups.ensure(NAME, LIMITS);
    const command = sandboxedCommand({ bin: 'sleep', args: ['60'], cgroupProcs: procs, identity: TEST_VMM });
    const proc = await table.spawn(command.bin, command.args, { logPath: join(tmp, 'log') });
    started.push(proc);
    const status = await waitFor('the chain to reach sleep', () => {
      const text = read(`/proc/${proc.pid}/status`);
      return text.includes('Name:\tsleep') ? text : undefined;
    });
    assert.match(status, new RegExp(`^Uid:\\t${TEST_VMM.uid}\\t${TEST_VMM.uid}\\t${TEST_VMM.uid}\\t${TEST_VMM.uid}$`, 'm'));
    const cgroupLines = read(`/proc/${proc.pid}/cgroup`);
    if (layout.version === 1) {
      assert.match(cgroupLines, new RegExp(`^\\d+:memory:/${parent}/${NAME}$`, 'm'));
      assert.match(cgroupLines, new RegExp(`^\\d+:pids:/${parent}/${NAME}$`, 'm'));
      const memory = join(layout.memory, parent, NAME);
      assert.equal(read(join(memory, 'memory.limit_in_bytes')).trim(), String(LIMITS.memoryBytes));
      assert.equal(read(join(layout.pids, parent, NAME, 'pids.max')).trim(), '512');
      assert.deepEqual(read(join(memory, 'cgroup.procs')).trim().split('\n'), [String(proc.pid)]);
    } else {
      assert.match(cgroupLines, new RegExp(`^0::/${parent}/${NAME}$`, 'm'));
      const leaf = join(layout.root, parent, NAME);
      assert.equal(read(join(leaf, 'memory.max')).trim(), String(LIMITS.memoryBytes));
      assert.equal(read(join(leaf, 'pids.max')).trim(), '512');
      assert.deepEqual(read(join(leaf, 'cgroup.procs')).trim().split('\n'), [String(proc.pid)]);
    }
    await assert.rejects(cgroups.remove(NAME), /cannot remove cgroup .*(busy|Device or resource busy)/i, 'a cgroup with a process in it stays');
    await table.signal(proc, 'SIGKILL');
    await waitFor('the process to be gone', async () => !(await table.isAlive(proc)));
    await cgroups.remove(NAME);
    assert.equal(await cgroups.exists(NAME), false);
  });

  it('a cgroup that cannot be joined stops the chain before the command runs (exit 125)', async () => {
    const command = sandboxedCommand({ bin: 'sleep', args: ['60'], cgroupProcs: [join(tmp, 'no-such-dir', 'cgroup.procs')], identity: TEST_VMM });
    const proc = await table.spawn(command.bin, command.args, { logPath: join(tmp, 'log2') });
    started.push(proc);
    await waitFor('the chain to stop', async () => !(await table.isAlive(proc)));
    assert.equal(table.exitReason(proc), 'exited with code 125');
  });
});
