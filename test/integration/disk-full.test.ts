// A full disk (issue 9, finding 5), on a real tmpfs too small for the image: the pull fails saying
// so, gives back the space its partial download took (so the failure can be recorded), and the
// reconciler records the reason and retries with backoff instead of waiting for the next resync.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { OciImageService } from '../../src/adapters/images/oci-image-service.js';
import { makeTempDir } from '../helpers/daemon.js';
import { RecordingLogger, TestRegistry, buildImage, buildLayer } from '../helpers/oci-registry.js';
import { describeWith, ROOT } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';

describeWith('a full disk under the image cache', [ROOT], {}, () => {
  let registry: TestRegistry;
  let mount = '';

  before(async () => {
    // 4 MiB of tmpfs in a temporary directory of this test's; a 6 MiB incompressible layer.
    mount = makeTempDir('fl-diskfull-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mount]);
    atExit(() => execFileSync('umount', ['-l', mount], { stdio: 'ignore' }));
    registry = await TestRegistry.start();
    registry.push('test/big', 'v1', buildImage([buildLayer({ 'boot/': { dir: true }, 'boot/vmlinux': randomBytes(6 * 1024 * 1024) })]));
  });

  after(async () => {
    await registry?.close();
    if (mount !== '') {
      execFileSync('umount', [mount]);
      rmSync(mount, { recursive: true, force: true });
    }
  });

  it('fails the pull as disk full (code ENOSPC), and leaves no partial download filling the disk', async () => {
    const svc = new OciImageService({ stateDir: mount, log: new RecordingLogger(), store: { retryDelayMs: 5, idleTimeoutMs: 5000 } });
    await assert.rejects(svc.pull(`${registry.host}/test/big:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ENOSPC', e.message);
      assert.match(
        e.message,
        /disk full \(ENOSPC\) while downloading sha256:[0-9a-f]{64} \(\d+ bytes\) into .*: free space there; the partial download was removed/,
      );
      return true;
    });
    const tmp = join(mount, 'images', 'tmp');
    const left = existsSync(tmp) ? readdirSync(tmp).filter((n) => n.endsWith('.partial')) : [];
    assert.deepEqual(left, [], 'no .partial left');
    const free = Number(execFileSync('df', ['--output=avail', '-B1', mount], { encoding: 'utf8' }).split('\n')[1]);
    assert.ok(free > 3 * 1024 * 1024, `the space came back (${free} bytes free)`);
  });
});
