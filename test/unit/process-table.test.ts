// LinuxProcessTable against real child processes (`sleep`, `sh -c 'exit 3'`). Every child is
// killed by pid in after().
import assert from 'node:assert/strict';
import { spawn as spawnChild } from 'node:child_process';
import { chownSync, closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { LinuxProcessTable, parseProcStat, readProcStatSync } from '../../src/adapters/process/process-table.js';
import type { VmmProcess } from '../../src/core/ports.js';
import { waitFor } from '../helpers/wait.js';

describe('parseProcStat', () => {
  it('splits after the last parenthesis, so comm may hold spaces and parentheses', () => {
    const fields = Array.from({ length: 52 - 2 }, (_, i) => String(i + 3));
    fields[0] = 'S';
    const stat = parseProcStat(`1234 (we (ird) ) name) ${fields.join(' ')}\n`);
    assert.deepEqual(stat, { state: 'S', session: 6, startTime: 22, userTicks: 14, systemTicks: 15 });
  });

  it('rejects garbage', () => {
    assert.equal(parseProcStat('nonsense'), undefined);
    assert.equal(parseProcStat('1 (x) S 1'), undefined);
  });
});

describe('LinuxProcessTable', () => {
  const table = new LinuxProcessTable();
  let dir: string;
  const started: VmmProcess[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fl-proctable-'));
  });

  after(() => {
    for (const p of started) {
      // Only our own children, and only while they are still the same process.
      if (readProcStatSync(p.pid)?.startTime === p.startTime) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  async function spawn(bin: string, args: string[], extraFds?: number[]): Promise<VmmProcess> {
    const p = await table.spawn(bin, args, { logPath: join(dir, 'child.log'), cwd: dir, ...(extraFds ? { extraFds } : {}) });
    started.push(p);
    return p;
  }

  it('records the start time and sees the process alive, detached in its own session', async () => {
    const p = await spawn('sleep', ['30']);
    const stat = readProcStatSync(p.pid);
    assert.ok(stat);
    assert.ok(p.startTime > 0);
    assert.equal(stat.startTime, p.startTime);
    assert.equal(stat.session, p.pid, 'session leader (setsid)');
    assert.notEqual(stat.session, readProcStatSync(process.pid)?.session);
    assert.equal(await table.isAlive(p), true);
    assert.equal(table.exitReason(p), undefined);
  });

  it('records the process in its pid file the moment it exists, and reads back only a live one', async () => {
    const pidFile = join(dir, 'vmm.pid');
    const p = await table.spawn('sleep', ['30'], { logPath: join(dir, 'child.log'), pidFile });
    started.push(p);
    assert.equal(readFileSync(pidFile, 'utf8'), `${p.pid} ${p.startTime}\n`);
    assert.deepEqual(await table.recorded(pidFile), p);
    await table.signal(p, 'SIGKILL');
    await waitFor('exit', async () => !(await table.isAlive(p)), 5000);
    assert.equal(await table.recorded(pidFile), undefined, 'a dead process is not recorded as running');
    writeFileSync(pidFile, 'garbage');
    assert.equal(await table.recorded(pidFile), undefined);
    assert.equal(await table.recorded(join(dir, 'missing.pid')), undefined);
  });

  it('pid files in a VM dir the VMM may write to: never through its symlinks, never one it made', async () => {
    // ADR 0009: the VM dir is group-writable for the VMM's sockets; whatever it plants is not followed.
    const pidFile = join(dir, 'vmm-hostile.pid');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep me\n');
    symlinkSync(victim, `${pidFile}.partial`);
    symlinkSync(victim, pidFile);
    const p = await table.spawn('sleep', ['30'], { logPath: join(dir, 'child.log'), pidFile });
    started.push(p);
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n', 'the planted links were not written through');
    assert.equal(lstatSync(pidFile).isFile(), true, 'the pid file replaced the link');
    assert.deepEqual(await table.recorded(pidFile), p);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.startsWith('vmm-hostile.pid.') && n !== 'vmm-hostile.pid.partial'),
      [],
      'no partial left',
    );

    // A pid file that is a link, or not the daemon's, names nothing (it could name any process).
    const link = join(dir, 'link.pid');
    symlinkSync(pidFile, link);
    assert.equal(await table.recorded(link), undefined);
    const foreign = join(dir, 'foreign.pid');
    writeFileSync(foreign, `${p.pid} ${p.startTime}\n`);
    chownSync(foreign, 65534, 65534);
    assert.equal(await table.recorded(foreign), undefined);
    await table.signal(p, 'SIGKILL');
  });

  it('reports the exit code of a process that ended', async () => {
    const p = await spawn('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    const reason = await waitFor('exit reason', () => table.exitReason(p), 5000);
    assert.equal(reason, 'exited with code 3');
    assert.equal(await table.isAlive(p), false);
    const log = readFileSync(join(dir, 'child.log'), 'utf8');
    assert.match(log, /out\n/);
    assert.match(log, /err\n/);
  });

  it('reports a kill by signal, and signal() reaches a live process', async () => {
    const p = await spawn('sleep', ['30']);
    await table.signal(p, 'SIGKILL');
    const reason = await waitFor('exit reason', () => table.exitReason(p), 5000);
    assert.equal(reason, 'killed by SIGKILL');
    await waitFor('process gone', async () => !(await table.isAlive(p)), 5000);
    // Signalling a gone process is not an error.
    await table.signal(p, 'SIGTERM');
  });

  it('knows the exit reason as soon as isAlive() says a child is gone', async () => {
    for (let i = 0; i < 5; i++) {
      const p = await spawn('sleep', ['30']);
      process.kill(p.pid, 'SIGKILL');
      while (await table.isAlive(p)) await new Promise((r) => setImmediate(r));
      assert.equal(table.exitReason(p), 'killed by SIGKILL');
    }
  });

  it('never takes a live pid with another start time for the process, nor signals it', async () => {
    const real = await spawn('sleep', ['30']);
    const impostor: VmmProcess = { pid: real.pid, startTime: real.startTime - 1 };
    assert.equal(await table.isAlive(impostor), false);
    await table.signal(impostor, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await table.isAlive(real), true, 'the real process was not signalled');
    assert.equal(table.exitReason(real), undefined);
  });

  it('a pid that does not exist is not alive', async () => {
    assert.equal(await table.isAlive({ pid: 2 ** 22 + 12345, startTime: 1 }), false);
  });

  it('returns for a process that exits at once (the caller checks)', async () => {
    const p = await spawn('sh', ['-c', 'exit 1']);
    assert.ok(p.pid > 0);
    await waitFor('exit reason', () => table.exitReason(p), 5000);
    assert.equal(table.exitReason(p), 'exited with code 1');
  });

  it('fails for a binary that does not exist', async () => {
    await assert.rejects(table.spawn(join(dir, 'no-such-binary'), [], { logPath: join(dir, 'x.log') }), /cannot start .*ENOENT/);
  });

  it('hands extra fds over as fd 3, 4, ...', async () => {
    const a = join(dir, 'fd3.txt');
    const b = join(dir, 'fd4.txt');
    const fa = openSync(a, 'w');
    const fb = openSync(b, 'w');
    try {
      const p = await spawn('sh', ['-c', 'echo three >&3; echo four >&4'], [fa, fb]);
      await waitFor('exit', () => table.exitReason(p), 5000);
      assert.equal(table.exitReason(p), 'exited with code 0');
    } finally {
      closeSync(fa);
      closeSync(fb);
    }
    assert.equal(readFileSync(a, 'utf8'), 'three\n');
    assert.equal(readFileSync(b, 'utf8'), 'four\n');
  });

  it('lists the processes it spawned that name a path under a dir (argument or cwd), and no other', async () => {
    const vms = join(dir, 'vms');
    mkdirSync(join(vms, 'vm1'), { recursive: true });
    // sh -c: the path is $0, where sleep would take it for a bad interval and exit.
    const byArg = await spawn('sh', ['-c', 'sleep 30; :', `${vms}/vm1/console.log`]);
    const byCwd = await table.spawn('sleep', ['31'], { logPath: join(dir, 'child.log'), cwd: join(vms, 'vm1') });
    started.push(byCwd);
    const prefixOnly = await spawn('sh', ['-c', 'sleep 32; :', `${vms}x/vm1/console.log`]);
    // Names the dir but leads no session of its own: not started as a VMM is (an operator's tail -f).
    const attached = spawnChild('sh', ['-c', 'sleep 33; :', `${vms}/vm1/console.log`], { stdio: 'ignore' });
    try {
      const listed = await table.listMentioning(vms);
      const pids = listed.map((p) => p.pid);
      assert.ok(pids.includes(byArg.pid) && pids.includes(byCwd.pid), JSON.stringify(listed));
      assert.ok(!pids.includes(prefixOnly.pid), 'a sibling dir sharing the prefix is not under it');
      assert.ok(!pids.includes(attached.pid ?? -1), 'not a session leader');
      assert.deepEqual(
        listed.find((p) => p.pid === byArg.pid),
        { ...byArg, names: ['sh', '-c', 'sleep 30; :', `${vms}/vm1/console.log`, dir, '/'] },
      );
    } finally {
      attached.kill('SIGKILL');
    }
  });
});
