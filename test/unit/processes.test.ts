// The test helper that ends every process a test file started, however the file's process ends:
// a failed hook that started a server must not keep the run alive (it once hung the suite).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { readProcStatSync } from '../../src/adapters/process/process-table.js';
import { waitFor } from '../helpers/wait.js';

const HELPER = new URL('../helpers/processes.ts', import.meta.url).href;

/** A child node process that starts `sleep` through spawnTracked, prints its pid, then `then`. */
async function runStarter(then: string): Promise<{ sleepPid: number; exit: Promise<unknown>; kill: (s: NodeJS.Signals) => void }> {
  const script = `
    const { spawnTracked, atExit } = await import(${JSON.stringify(HELPER)});
    const child = spawnTracked('sleep', ['1000'], { stdio: 'ignore' });
    atExit(() => {}); // several cleanups registered: all must run
    console.log(child.pid);
    ${then}
  `;
  const starter = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = once(starter, 'exit');
  let out = '';
  starter.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const sleepPid = await waitFor('the sleep pid', () => (/^(\d+)\n/.exec(out) ? Number(/^(\d+)\n/.exec(out)?.[1]) : undefined), 20_000, 20);
  return { sleepPid, exit, kill: (s) => starter.kill(s) };
}

const gone = (pid: number): boolean => {
  const stat = readProcStatSync(pid);
  return stat === undefined || stat.state === 'Z';
};

describe('spawnTracked', () => {
  it('kills what it started when the process exits on its own (a test file done, --test-force-exit)', async () => {
    const { sleepPid, exit } = await runStarter('setTimeout(() => process.exit(0), 100);');
    await exit;
    await waitFor('sleep to be killed', () => gone(sleepPid), 5000, 20);
  });

  it('kills what it started when the process is terminated (the runner timing a file out)', async () => {
    const { sleepPid, exit, kill } = await runStarter('setInterval(() => {}, 1000);');
    assert.equal(gone(sleepPid), false);
    kill('SIGTERM');
    const [code, signal] = (await exit) as [number | null, string | null];
    assert.equal(signal, 'SIGTERM', `died of the signal it got (code ${code})`);
    await waitFor('sleep to be killed', () => gone(sleepPid), 5000, 20);
  });

  it('kills what it started when a hook throws', async () => {
    const { sleepPid, exit } = await runStarter("setTimeout(() => { throw new Error('hook failed'); }, 100);");
    await exit;
    await waitFor('sleep to be killed', () => gone(sleepPid), 5000, 20);
  });
});
