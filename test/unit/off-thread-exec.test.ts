// execFile from a worker thread (src/adapters/host/off-thread-exec.ts): the same results and
// errors as execFile, and the event loop keeps running while processes start.
import assert from 'node:assert/strict';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { describe, it } from 'node:test';
import { execFileOffThread } from '../../src/adapters/host/off-thread-exec.js';

describe('execFileOffThread', () => {
  it('gives stdout and stderr, writes the input to stdin, and closes it', async () => {
    const { stdout, stderr } = await execFileOffThread('sh', ['-c', 'cat; echo oops >&2'], { input: 'hello\n' });
    assert.equal(stdout, 'hello\n');
    assert.equal(stderr, 'oops\n');
    // No input: stdin is closed at once, so a reader sees EOF rather than hanging.
    assert.equal((await execFileOffThread('cat', [])).stdout, '');
  });

  it('rejects like execFile: the exit code, the output so far, a missing program, a timeout', async () => {
    await assert.rejects(execFileOffThread('sh', ['-c', 'echo partial; echo bad >&2; exit 3']), (e: Error & Record<string, unknown>) => {
      assert.equal(e.code, 3);
      assert.equal(e.stdout, 'partial\n');
      assert.equal(e.stderr, 'bad\n');
      return true;
    });
    await assert.rejects(execFileOffThread('/nonexistent/program', []), (e: Error & Record<string, unknown>) => e.code === 'ENOENT');
    await assert.rejects(
      execFileOffThread('sleep', ['5'], { timeoutMs: 100, killSignal: 'SIGKILL' }),
      (e: Error & Record<string, unknown>) => e.signal === 'SIGKILL',
    );
  });

  it('starts the process from another thread: this one may not spawn at all', async () => {
    const cp = createRequire(import.meta.url)('node:child_process') as Record<string, unknown>;
    const original = { spawn: cp.spawn, execFile: cp.execFile };
    cp.spawn = cp.execFile = () => {
      throw new Error('spawned on the main thread');
    };
    syncBuiltinESMExports();
    try {
      assert.equal((await execFileOffThread('echo', ['elsewhere'])).stdout, 'elsewhere\n');
    } finally {
      Object.assign(cp, original);
      syncBuiltinESMExports();
    }
  });

  it('runs many at once, each answered with its own output', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => execFileOffThread('echo', [String(i)])));
    assert.deepEqual(
      results.map((r) => r.stdout),
      Array.from({ length: 20 }, (_, i) => `${i}\n`),
    );
  });
});
