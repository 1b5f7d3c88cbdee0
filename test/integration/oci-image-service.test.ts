// OciImageService against the in-process registry: reference → manifest → rootfs, platforms,
// auth, registry errors, digest checks, resume, de-duplication, crash leftovers, ext4 volumes,
// garbage collection, hostile layers (device nodes, setuid bits, gzip bombs) and the kernel and
// initrd steps taking files out of pulled images through the real filesystem adapter (symlinks
// kept inside the image). Real files, real HTTP, real mkfs.ext4/debugfs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { NodeVmFilesystem } from '../../src/adapters/fs/vm-filesystem.js';
import { OciImageService, type OciImageServiceOptions } from '../../src/adapters/images/oci-image-service.js';
import { hostArchitecture } from '../../src/adapters/images/registry-client.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import type { MicroVMSpec } from '../../src/core/model.js';
import type { ImageProgress } from '../../src/core/ports.js';
import { initrdStep, kernelStep } from '../../src/core/steps/images.js';
import { StepContext } from '../../src/core/steps/step.js';
import { makeTempDir } from '../helpers/daemon.js';
import { MemoryCgroups, MemoryNetwork, MemoryProcesses, MemoryProvider } from '../helpers/doubles.js';
import { sampleVm } from '../helpers/fixtures.js';
import { MT, RecordingLogger, TestRegistry, buildImage, buildIndex, buildLayer, buildTar, sha256, type BuiltImage } from '../helpers/oci-registry.js';
import { waitFor } from '../helpers/wait.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Setup {
  readonly svc: OciImageService;
  readonly log: RecordingLogger;
  readonly stateDir: string;
  readonly images: string;
}

function setup(options: Partial<OciImageServiceOptions> = {}, stateDir?: string): Setup {
  const dir = stateDir ?? makeTempDir('fl-oci-');
  if (stateDir === undefined) dirs.push(dir);
  const log = new RecordingLogger();
  const svc = new OciImageService({ stateDir: dir, log, store: { retryDelayMs: 5, idleTimeoutMs: 5000 }, ...options });
  return { svc, log, stateDir: dir, images: join(dir, 'images') };
}

const hex = (digest: string): string => digest.slice('sha256:'.length);

function twoLayerImage(tag: string): BuiltImage {
  return buildImage([
    buildLayer({ 'etc/': { dir: true }, 'etc/os-release': 'ID=test\n', 'boot/': { dir: true }, 'boot/vmlinux': `kernel ${tag}` }),
    buildLayer({ 'etc/hello': `hello ${tag}\n`, 'etc/localtime': { symlink: '/usr/share/zoneinfo/UTC' } }),
  ]);
}

function debugfs(image: string, request: string): string {
  return execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('OciImageService: pulling', () => {
  let registry: TestRegistry;
  const simple = twoLayerImage('v1');

  before(async () => {
    registry = await TestRegistry.start();
    registry.push('test/img', 'v1', simple);
  });
  after(() => registry.close());

  it('pulls a reference into an unpacked rootfs named by the manifest digest', async () => {
    const { svc, images } = setup();
    const ref = `${registry.host}/test/img:v1`;
    const image = await svc.pull(ref);
    assert.equal(image.ref, ref);
    assert.equal(image.digest, simple.digest);
    assert.equal(image.rootfs, join(images, 'rootfs', hex(simple.digest)));
    assert.equal(readFileSync(join(image.rootfs, 'boot/vmlinux'), 'utf8'), 'kernel v1');
    assert.equal(readFileSync(join(image.rootfs, 'etc/hello'), 'utf8'), 'hello v1\n');
    for (const d of [simple.digest, simple.configDigest, ...simple.layerDigests]) assert.ok(existsSync(join(images, 'blobs/sha256', hex(d))), d);
    const index = JSON.parse(readFileSync(join(images, 'refs.json'), 'utf8')) as { refs: Record<string, { digest: string }> };
    assert.equal(index.refs[ref]?.digest, simple.digest);
  });

  it('reads Docker v2 manifests too', async () => {
    const docker = buildImage([buildLayer({ 'docker.txt': 'd' })], { docker: true });
    registry.push('test/docker', 'latest', docker);
    const { svc } = setup();
    const image = await svc.pull(`${registry.host}/test/docker`);
    assert.equal(image.digest, docker.digest);
    assert.equal(readFileSync(join(image.rootfs, 'docker.txt'), 'utf8'), 'd');
  });

  it("picks the host's platform from an index, or the configured one", async () => {
    const byArch = (arch: string): BuiltImage => buildImage([buildLayer({ arch: arch })], { architecture: arch });
    const amd64 = byArch('amd64');
    const arm64 = byArch('arm64');
    const unknown = byArch('unknown');
    const index = buildIndex([
      { image: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { image: amd64, platform: { os: 'linux', architecture: 'amd64' } },
      { image: unknown, platform: { os: 'unknown', architecture: 'unknown' } },
    ]);
    registry.push('test/multi', 'v1', index);
    const ref = `${registry.host}/test/multi:v1`;

    const host = await setup().svc.pull(ref);
    const want = hostArchitecture() === 'arm64' ? arm64 : amd64;
    assert.equal(host.digest, want.digest, 'the platform manifest digest, not the index digest');
    assert.equal(readFileSync(join(host.rootfs, 'arch'), 'utf8'), hostArchitecture() === 'arm64' ? 'arm64' : 'amd64');

    const arm = await setup({ platform: { os: 'linux', architecture: 'arm64' } }).svc.pull(ref);
    assert.equal(arm.digest, arm64.digest);
    assert.equal(readFileSync(join(arm.rootfs, 'arch'), 'utf8'), 'arm64');

    await assert.rejects(
      setup({ platform: { os: 'linux', architecture: 's390x' } }).svc.pull(ref),
      /pulling .*: the image index has no manifest for linux\/s390x \(it has: linux\/arm64\/v8, linux\/amd64\)/,
    );
    // Pulling by the index digest lands on the same platform manifest.
    const byIndexDigest = await setup().svc.pull(`${registry.host}/test/multi@${index.digest}`);
    assert.equal(byIndexDigest.digest, want.digest);
  });

  it("fails with the registry's message and status", async () => {
    const { svc } = setup();
    await assert.rejects(svc.pull(`${registry.host}/nope/missing:1`), {
      message: `pulling ${registry.host}/nope/missing:1: repository name not known to registry (404)`,
    });
    await assert.rejects(svc.pull(`${registry.host}/test/img:nope`), { message: `pulling ${registry.host}/test/img:nope: manifest unknown (404)` });
    await assert.rejects(svc.pull('Not A Ref'), /invalid image reference "Not A Ref"/);
  });

  it('fails on a blob whose bytes do not match its digest and trusts nothing of it', async () => {
    const bad = buildImage([buildLayer({ ok: 'fine' }), buildLayer({ corrupt: randomBytes(4096) })]);
    const layer = bad.layerDigests[1] as string;
    registry.push('test/corrupt', 'v1', bad);
    registry.setBlobBehaviour(layer, { corrupt: true });
    const { svc, images } = setup();
    const err = await svc.pull(`${registry.host}/test/corrupt:v1`).then(
      () => assert.fail('pull succeeded'),
      (e: Error) => e,
    );
    assert.match(
      err.message,
      new RegExp(`^pulling ${registry.host}/test/corrupt:v1: digest mismatch for blob ${layer}: expected ${layer}, got sha256:[a-f0-9]{64}$`),
    );
    assert.equal(existsSync(join(images, 'blobs/sha256', hex(layer))), false, 'no verified blob');
    assert.equal(existsSync(join(images, 'tmp', `${hex(layer)}.partial`)), false, 'no partial kept');
    assert.deepEqual(readdirSync(join(images, 'rootfs')), [], 'no rootfs entry, no temp dir');
    assert.equal(existsSync(join(images, 'blobs/sha256', hex(bad.layerDigests[0] as string))), true, 'the good layer stays cached');
  });

  it('checks a manifest pulled by digest against that digest', async () => {
    const claimed = twoLayerImage('claimed');
    const served = twoLayerImage('served');
    // The registry answers the claimed digest with other bytes.
    registry.push('test/lie', claimed.digest, served);
    const ref = `${registry.host}/test/lie@${claimed.digest}`;
    await assert.rejects(setup().svc.pull(ref), {
      message: `pulling ${ref}: digest mismatch for manifest ${claimed.digest}: expected ${claimed.digest}, got ${served.digest}`,
    });
  });

  it('refuses zstd layers before downloading anything', async () => {
    const zstdLayer = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(32)]);
    const img = buildImage([{ data: zstdLayer, mediaType: MT.ociLayerZstd, diffId: sha256(Buffer.from('x')) }]);
    registry.push('test/zstd', 'v1', img);
    await assert.rejects(setup().svc.pull(`${registry.host}/test/zstd:v1`), {
      message: `pulling ${registry.host}/test/zstd:v1: zstd-compressed layers are not supported yet (layer ${img.layerDigests[0]})`,
    });
    assert.equal(registry.blobGets(img.layerDigests[0] as string).length, 0);
  });

  it('reports progress per layer to the caller and the log', async () => {
    const img = buildImage([buildLayer({ a: randomBytes(100_000) }), buildLayer({ b: 'small' })]);
    registry.push('test/progress', 'v1', img);
    const { svc, log } = setup();
    const events: ImageProgress[] = [];
    const ref = `${registry.host}/test/progress:v1`;
    await svc.pull(ref, { onProgress: (p) => events.push(p) });
    for (const digest of img.layerDigests) {
      const last = events.filter((e) => e.layer === digest).at(-1);
      assert.ok(last !== undefined, `progress for ${digest}`);
      assert.equal(last.bytes, last.total);
      assert.equal(last.ref, ref);
      const line = `pulling ${ref}: layer ${digest.slice(0, 19)} ${last.total}/${last.total}`;
      assert.equal(log.messages('info').filter((m) => m === line).length, 1, line);
    }
    // The whole image too (status.pull_progress): the sum of the layers, against the manifest's total.
    const layersTotal = img.layerDigests.reduce((n, d) => n + (img.blobs.get(d)?.length ?? 0), 0);
    assert.ok(events.every((e) => e.imageTotal === layersTotal));
    const done = events.map((e) => e.imageBytes ?? -1);
    assert.deepEqual(
      done,
      [...done].sort((a, b) => a - b),
      'only grows',
    );
    assert.equal(done.at(-1), layersTotal);
  });
});

describe('OciImageService: tags, digests and the cache', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
  });

  it('re-resolves a tag on every pull, and falls back to the cached resolution when the registry is down', async () => {
    const v1 = twoLayerImage('one');
    const v2 = twoLayerImage('two');
    registry.push('test/moving', 'latest', v1);
    const { svc, log } = setup();
    const ref = `${registry.host}/test/moving:latest`;
    assert.equal((await svc.pull(ref)).digest, v1.digest);
    const before = registry.manifestGets().length;
    assert.equal((await svc.pull(ref)).digest, v1.digest);
    assert.equal(registry.manifestGets().length, before + 1, 'the tag was asked again');

    registry.push('test/moving', 'latest', v2);
    const moved = await svc.pull(ref);
    assert.equal(moved.digest, v2.digest);
    assert.equal(readFileSync(join(moved.rootfs, 'etc/hello'), 'utf8'), 'hello two\n');

    // Pinned by digest: no registry needed once cached.
    const pinned = `${registry.host}/test/moving@${v1.digest}`;
    assert.equal((await svc.pull(pinned)).digest, v1.digest);

    await registry.close();
    const offline = await svc.pull(ref);
    assert.equal(offline.digest, v2.digest);
    assert.ok(log.records.some((r) => r.level === 'warn' && r.msg.startsWith(`pulling ${ref}: registry unavailable`)));
    assert.equal((await svc.pull(pinned)).digest, v1.digest);
    await assert.rejects(svc.pull(`${registry.host}/test/never-pulled:1`), /cannot reach 127\.0\.0\.1:\d+: ECONNREFUSED/);
  });
});

describe('OciImageService: authentication', () => {
  const img = twoLayerImage('auth');

  it('gets an anonymous bearer token from the realm and reuses it', async () => {
    const registry = await TestRegistry.start({ auth: 'bearer' });
    try {
      registry.push('test/img', 'v1', img);
      const { svc } = setup();
      await svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(registry.tokenRequests.length, 1);
      assert.deepEqual(registry.tokenRequests[0], { scope: 'repository:test/img:pull', service: 'test-registry' });
      await svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(registry.tokenRequests.length, 1, 'cached token');
    } finally {
      await registry.close();
    }
  });

  it('sends configured username and password to the token realm', async () => {
    const registry = await TestRegistry.start({ auth: 'bearer', users: { alice: 's3cret' } });
    try {
      registry.push('test/img', 'v1', img);
      const ref = `${registry.host}/test/img:v1`;
      await assert.rejects(setup().svc.pull(ref), { message: `pulling ${ref}: getting a token from ${registry.host}: incorrect username or password (401)` });
      const wrong = setup({ credentials: { [registry.host]: { username: 'alice', password: 'nope' } } });
      await assert.rejects(wrong.svc.pull(ref), /incorrect username or password \(401\)/);
      const { svc } = setup({ credentials: { [registry.host]: { username: 'alice', password: 's3cret' } } });
      assert.equal((await svc.pull(ref)).digest, img.digest);
      assert.equal(registry.tokenRequests.at(-1)?.authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    } finally {
      await registry.close();
    }
  });

  it('answers a Basic challenge with the configured credentials', async () => {
    const registry = await TestRegistry.start({ auth: 'basic', users: { bob: 'pw' } });
    try {
      registry.push('test/img', 'v1', img);
      const ref = `${registry.host}/test/img:v1`;
      await assert.rejects(setup().svc.pull(ref), /wants a username and password and none is configured/);
      const { svc } = setup({ credentials: { [`http://${registry.host}/`]: { username: 'bob', password: 'pw' } } });
      assert.equal((await svc.pull(ref)).digest, img.digest);
      const basic = `Basic ${Buffer.from('bob:pw').toString('base64')}`;
      assert.ok(registry.blobGets(img.configDigest).every((r) => r.authorization === basic));
    } finally {
      await registry.close();
    }
  });

  it('sends a configured token as a bearer token without asking the realm', async () => {
    const registry = await TestRegistry.start({ auth: 'bearer', staticTokens: ['pre-issued'] });
    try {
      registry.push('test/img', 'v1', img);
      const { svc } = setup({ credentials: { [registry.host]: { token: 'pre-issued' } } });
      assert.equal((await svc.pull(`${registry.host}/test/img:v1`)).digest, img.digest);
      assert.equal(registry.tokenRequests.length, 0);
    } finally {
      await registry.close();
    }
  });
});

describe('OciImageService: interrupted downloads', () => {
  it('resumes with a Range request after the connection is cut', async () => {
    const registry = await TestRegistry.start();
    try {
      const img = buildImage([buildLayer({ big: randomBytes(600_000) })]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { cutOnce: true });
      const image = await setup().svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(statSync(join(image.rootfs, 'big')).size, 600_000);
      const gets = registry.blobGets(layer);
      assert.equal(gets.length, 2);
      assert.equal(gets[0]?.range, undefined);
      const from = Number(/^bytes=(\d+)-$/.exec(gets[1]?.range ?? '')?.[1]);
      assert.ok(from > 0, `resumed from ${from}`);
      assert.equal(gets[1]?.status, 206);
    } finally {
      await registry.close();
    }
  });

  it('aborts a stalled download and resumes it', async () => {
    const registry = await TestRegistry.start();
    try {
      const img = buildImage([buildLayer({ big: randomBytes(300_000) })]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { stallOnce: true });
      const { svc } = setup({ store: { idleTimeoutMs: 200, retryDelayMs: 1 } });
      const image = await svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(statSync(join(image.rootfs, 'big')).size, 300_000);
      const ranges = registry.blobGets(layer).map((r) => r.range);
      assert.ok(ranges.length >= 2, `several attempts: ${ranges.join(' ')}`);
      assert.equal(ranges[0], undefined);
      assert.ok(
        ranges.slice(1).every((r) => r !== undefined && /^bytes=[1-9]\d*-$/.test(r)),
        ranges.join(' '),
      );
    } finally {
      await registry.close();
    }
  });

  it('starts over when the server ignores Range', async () => {
    const registry = await TestRegistry.start({ ignoreRange: true });
    try {
      const img = buildImage([buildLayer({ big: randomBytes(400_000) })]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { cutOnce: true });
      const image = await setup().svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(statSync(join(image.rootfs, 'big')).size, 400_000);
      const gets = registry.blobGets(layer);
      assert.equal(gets.length, 2);
      assert.match(gets[1]?.range ?? '', /^bytes=\d+-$/);
      assert.equal(gets[1]?.status, 200);
    } finally {
      await registry.close();
    }
  });

  it('a caller that aborts stops waiting at once; the transfer stops when no caller waits, and the next pull resumes it', async () => {
    const registry = await TestRegistry.start();
    try {
      const img = buildImage([buildLayer({ big: randomBytes(400_000) })]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { stallOnce: true }); // half the blob, then silence (idle timeout 5 s)
      const { svc, images } = setup();
      const ref = `${registry.host}/test/img:v1`;
      const [first, second] = [new AbortController(), new AbortController()];
      const outcome = (p: Promise<unknown>): Promise<string> =>
        p.then(
          () => 'pulled',
          (e: unknown) => String(e instanceof Error ? e.message : e),
        );
      const a = outcome(svc.pull(ref, { signal: first.signal }));
      const b = outcome(svc.pull(ref, { signal: second.signal }));
      const partial = join(images, 'tmp', `${hex(layer)}.partial`);
      await waitFor('half the layer', () => existsSync(partial) && statSync(partial).size > 0);
      const started = Date.now();
      first.abort(new Error('the microvm is being deleted'));
      assert.match(await a, /the microvm is being deleted/);
      const stillWaiting = await Promise.race([b, new Promise((r) => setTimeout(() => r('waiting'), 200))]);
      assert.equal(stillWaiting, 'waiting', 'the other caller still waits: the transfer goes on for it');
      second.abort(new Error('the daemon is shutting down'));
      assert.match(await b, /the daemon is shutting down/);
      assert.ok(Date.now() - started < 2000, 'neither waited for the stalled transfer');
      const kept = statSync(partial).size;
      assert.ok(kept > 0, 'what arrived is kept');
      const again = Date.now();
      const image = await svc.pull(ref);
      assert.ok(Date.now() - again < 2000, 'a new transfer at once: the stalled one was stopped, not left to its 5 s idle timeout');
      assert.equal(statSync(join(image.rootfs, 'big')).size, 400_000);
      assert.equal(registry.blobGets(layer).length, 2);
      assert.equal(registry.blobGets(layer).at(-1)?.range, `bytes=${kept}-`, 'the next pull resumed after the kept bytes');
    } finally {
      await registry.close();
    }
  });

  it('a pull that gave up is resumed by the next pull', async () => {
    const registry = await TestRegistry.start();
    try {
      const img = buildImage([buildLayer({ big: randomBytes(400_000) })]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { cutOnce: true });
      const first = setup({ store: { maxAttempts: 1, retryDelayMs: 1 } });
      await assert.rejects(first.svc.pull(`${registry.host}/test/img:v1`), /download of sha256:[a-f0-9]+ interrupted after \d+ of \d+ bytes/);
      const partial = join(first.images, 'tmp', `${hex(layer)}.partial`);
      const kept = statSync(partial).size;
      assert.ok(kept > 0);
      // A new process on the same state dir.
      const second = setup({}, first.stateDir);
      await second.svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(registry.blobGets(layer).at(-1)?.range, `bytes=${kept}-`);
      assert.equal(existsSync(partial), false);
    } finally {
      await registry.close();
    }
  });

  it('a partial from a crash is re-verified, and a corrupt one is thrown away', async () => {
    const registry = await TestRegistry.start();
    try {
      const good = buildImage([buildLayer({ big: randomBytes(300_000) })]);
      const goodLayer = good.layerDigests[0] as string;
      const bad = buildImage([buildLayer({ big: randomBytes(300_000) })]);
      const badLayer = bad.layerDigests[0] as string;
      registry.push('test/good', 'v1', good);
      registry.push('test/bad', 'v1', bad);
      const { svc, images } = setup();
      mkdirSync(join(images, 'tmp'), { recursive: true });
      writeFileSync(join(images, 'tmp', `${hex(goodLayer)}.partial`), (good.blobs.get(goodLayer) as Buffer).subarray(0, 100_000));
      writeFileSync(join(images, 'tmp', `${hex(badLayer)}.partial`), randomBytes(100_000));

      await svc.pull(`${registry.host}/test/good:v1`);
      assert.deepEqual(
        registry.blobGets(goodLayer).map((r) => r.range),
        ['bytes=100000-'],
      );
      const image = await svc.pull(`${registry.host}/test/bad:v1`);
      assert.equal(statSync(join(image.rootfs, 'big')).size, 300_000);
      assert.deepEqual(
        registry.blobGets(badLayer).map((r) => r.range),
        ['bytes=100000-', undefined],
      );
    } finally {
      await registry.close();
    }
  });
});

describe('OciImageService: layers unpacked as they download', () => {
  /** Files of incompressible bytes: the first half of the blob holds the first half of them. */
  const files = (n: number, size: number): Record<string, Buffer> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`data/f${String(i).padStart(2, '0')}`, randomBytes(size)]));
  const tempTrees = (images: string): string[] =>
    existsSync(join(images, 'rootfs')) ? readdirSync(join(images, 'rootfs')).filter((n) => n.startsWith('.tmp-')) : [];
  const sha = (path: string): string => sha256(readFileSync(path));

  it('writes the first files of a layer while the rest is still downloading, and trusts them only once it verified', async () => {
    const registry = await TestRegistry.start();
    try {
      const content = files(40, 16_384);
      const img = buildImage([buildLayer(content)]);
      const layer = img.layerDigests[0] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { stallOnce: true }); // half the blob, then silence until the idle timeout
      const { svc, images } = setup({ streamLayers: true, store: { idleTimeoutMs: 1500, retryDelayMs: 1 } });
      const pull = svc.pull(`${registry.host}/test/img:v1`);
      const partial = join(images, 'tmp', `${hex(layer)}.partial`);
      // Mid-stream: the download is stalled at half, and the temp tree already holds its first file.
      await waitFor('the first file unpacked from the stalled download', () => {
        const tree = tempTrees(images)[0];
        return tree !== undefined && existsSync(join(images, 'rootfs', tree, 'data/f00'));
      });
      assert.ok(existsSync(partial) && statSync(partial).size < (img.blobs.get(layer) as Buffer).length, 'the download is not done');
      assert.equal(existsSync(join(images, 'blobs/sha256', hex(layer))), false, 'no verified blob yet');
      assert.equal(existsSync(join(images, 'rootfs', hex(img.digest))), false, 'nothing under the trusted name yet');
      const image = await pull;
      for (const [path, data] of Object.entries(content)) assert.equal(sha(join(image.rootfs, path)), sha256(data), path);
      assert.deepEqual(tempTrees(images), []);
      assert.equal(registry.blobGets(layer).at(-1)?.range?.startsWith('bytes='), true, 'resumed, not restarted');
    } finally {
      await registry.close();
    }
  });

  it('a layer whose bytes turn out not to match its digest leaves nothing trusted, though its tar unpacked fine', async () => {
    const registry = await TestRegistry.start();
    try {
      // Uncompressed, and no diff_ids in the config: a flipped byte in the middle lands in a file's
      // content, so only the layer's digest tells.
      const img = buildImage(
        [
          buildLayer({ 'etc/base': 'base\n' }),
          { data: buildLayer({ 'big/a': randomBytes(200_000), 'big/b': randomBytes(200_000) }, { compression: 'none' }), mediaType: MT.ociLayerTar },
        ],
        { noDiffIds: true },
      );
      const layer = img.layerDigests[1] as string;
      registry.push('test/flipped', 'v1', img);
      registry.setBlobBehaviour(layer, { corrupt: true });
      const { svc, images } = setup({ streamLayers: true });
      await assert.rejects(svc.pull(`${registry.host}/test/flipped:v1`), new RegExp(`digest mismatch for blob ${layer}`));
      assert.deepEqual(readdirSync(join(images, 'rootfs')), [], 'no rootfs, no temp tree');
      assert.equal(existsSync(join(images, 'blobs/sha256', hex(layer))), false, 'no verified blob');
      assert.equal(existsSync(join(images, 'tmp', `${hex(layer)}.partial`)), false, 'no partial kept');
    } finally {
      await registry.close();
    }
  });

  it('an abort mid-stream stops the unpack at once and removes its temp tree; the next pull resumes the download', async () => {
    const registry = await TestRegistry.start();
    try {
      const content = files(40, 16_384);
      const img = buildImage([buildLayer({ 'etc/base': 'base\n' }), buildLayer(content)]);
      const layer = img.layerDigests[1] as string;
      registry.push('test/img', 'v1', img);
      registry.setBlobBehaviour(layer, { stallOnce: true });
      const { svc, images } = setup({ streamLayers: true }); // idle timeout 5 s: the abort, not the timeout, ends it
      const controller = new AbortController();
      const pull = svc.pull(`${registry.host}/test/img:v1`, { signal: controller.signal });
      pull.catch(() => undefined);
      await waitFor('the stalled layer being unpacked', () => {
        const tree = tempTrees(images)[0];
        return tree !== undefined && existsSync(join(images, 'rootfs', tree, 'data/f00'));
      });
      const started = Date.now();
      controller.abort(new Error('the microvm is being deleted'));
      await assert.rejects(pull, /the microvm is being deleted/);
      assert.ok(Date.now() - started < 1000, 'did not wait for the stalled transfer');
      await waitFor('the temp tree removed', () => tempTrees(images).length === 0);
      assert.equal(existsSync(join(images, 'rootfs', hex(img.digest))), false);
      const kept = statSync(join(images, 'tmp', `${hex(layer)}.partial`)).size;
      assert.ok(kept > 0, 'what arrived is kept');

      const image = await svc.pull(`${registry.host}/test/img:v1`);
      assert.equal(registry.blobGets(layer).at(-1)?.range, `bytes=${kept}-`);
      for (const [path, data] of Object.entries(content)) assert.equal(sha(join(image.rootfs, path)), sha256(data), path);
    } finally {
      await registry.close();
    }
  });

  it('unpacks a layer resumed after a partial from its kept bytes and the rest; a corrupt partial is unpacked again from the verified blob', async () => {
    const registry = await TestRegistry.start();
    try {
      const good = files(20, 16_384);
      const bad = files(20, 16_384);
      const goodImg = buildImage([buildLayer(good)]);
      const badImg = buildImage([buildLayer(bad)]);
      const goodLayer = goodImg.layerDigests[0] as string;
      const badLayer = badImg.layerDigests[0] as string;
      registry.push('test/good', 'v1', goodImg);
      registry.push('test/bad', 'v1', badImg);
      const { svc, images, log } = setup({ streamLayers: true });
      mkdirSync(join(images, 'tmp'), { recursive: true });
      writeFileSync(join(images, 'tmp', `${hex(goodLayer)}.partial`), (goodImg.blobs.get(goodLayer) as Buffer).subarray(0, 150_000));
      // A gzip stream that unpacks (a few files of its own), then not this blob's bytes at all.
      writeFileSync(join(images, 'tmp', `${hex(badLayer)}.partial`), buildLayer({ 'data/f00': 'not the image', 'data/stray': 'stray' }));

      const a = await svc.pull(`${registry.host}/test/good:v1`);
      assert.deepEqual(
        registry.blobGets(goodLayer).map((r) => r.range),
        ['bytes=150000-'],
      );
      for (const [path, data] of Object.entries(good)) assert.equal(sha(join(a.rootfs, path)), sha256(data), path);

      const b = await svc.pull(`${registry.host}/test/bad:v1`);
      for (const [path, data] of Object.entries(bad)) assert.equal(sha(join(b.rootfs, path)), sha256(data), path);
      assert.equal(existsSync(join(b.rootfs, 'data/stray')), false, 'nothing of the corrupt partial is in the image');
      assert.ok(
        log.records.some((r) => r.level === 'warn' && /unpacking every layer again from the verified blobs/.test(r.msg)),
        'said so',
      );
    } finally {
      await registry.close();
    }
  });
});

describe('OciImageService: concurrency and crash leftovers', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
  });
  after(() => registry.close());

  it('concurrent pulls of one image, by tag and by digest, download each blob once', async () => {
    const img = buildImage([buildLayer({ a: randomBytes(50_000) }), buildLayer({ b: randomBytes(50_000) })]);
    registry.push('test/shared', 'v1', img);
    for (const d of img.layerDigests) registry.setBlobBehaviour(d, { slow: { chunks: 5, delayMs: 20 } });
    const { svc } = setup();
    const tag = `${registry.host}/test/shared:v1`;
    const seen: string[] = [];
    const results = await Promise.all([
      svc.pull(tag, { onProgress: (p) => seen.push(`a ${p.layer}`) }),
      svc.pull(tag, { onProgress: (p) => seen.push(`b ${p.layer}`) }),
      svc.pull(tag),
      svc.pull(`${registry.host}/test/shared@${img.digest}`, { onProgress: (p) => seen.push(`c ${p.layer}`) }),
    ]);
    assert.ok(results.every((r) => r.digest === img.digest && r.rootfs === results[0]?.rootfs));
    assert.equal(results[3]?.ref, `${registry.host}/test/shared@${img.digest}`);
    for (const d of [img.configDigest, ...img.layerDigests]) assert.equal(registry.blobGets(d).length, 1, d);
    for (const who of ['a', 'b', 'c'])
      assert.ok(
        seen.some((s) => s.startsWith(`${who} `)),
        `${who} got progress`,
      );
  });

  it('never trusts a leftover unpack directory or ext4 partial, and re-unpacks from cached blobs', async () => {
    const img = twoLayerImage('crash');
    registry.push('test/crash', 'v1', img);
    const first = setup();
    const image = await first.svc.pull(`${registry.host}/test/crash:v1`);
    const blobGetsBefore = img.layerDigests.map((d) => registry.blobGets(d).length);

    // Simulate a crash mid-unpack of the same image and mid-mkfs: the rootfs is gone, temp leftovers remain.
    rmSync(image.rootfs, { recursive: true });
    const leftover = join(first.images, 'rootfs', `.tmp-${hex(img.digest)}-0badf00d`);
    mkdirSync(join(leftover, 'etc'), { recursive: true });
    writeFileSync(join(leftover, 'etc/hello'), 'half');
    const ext4Partial = join(first.images, 'ext4', `${hex(img.digest)}-auto.img.partial`);
    writeFileSync(ext4Partial, 'garbage');

    const second = setup({}, first.stateDir);
    const again = await second.svc.pull(`${registry.host}/test/crash:v1`);
    assert.equal(readFileSync(join(again.rootfs, 'etc/hello'), 'utf8'), 'hello crash\n');
    assert.deepEqual(readdirSync(join(first.images, 'rootfs')), [hex(img.digest)]);
    assert.equal(existsSync(ext4Partial), false);
    assert.deepEqual(
      img.layerDigests.map((d) => registry.blobGets(d).length),
      blobGetsBefore,
      'layers came from the cache',
    );
  });
});

describe('OciImageService: ext4 volumes', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
  });
  after(() => registry.close());

  it('builds an ext4 image holding the files, once per digest and size', async () => {
    const img = buildImage([
      buildLayer({ 'etc/': { dir: true }, 'etc/hello': 'hello ext4\n', 'home/u/': { dir: true, mode: 0o700, uid: 1000, gid: 1000 } }),
      buildLayer({ 'etc/localtime': { symlink: '/usr/share/zoneinfo/UTC' } }),
    ]);
    registry.push('test/vol', 'v1', img);
    const { svc, log, images } = setup();
    const image = await svc.pull(`${registry.host}/test/vol:v1`);
    const [a, b] = await Promise.all([svc.ext4(image), svc.ext4(image)]);
    assert.equal(a, join(images, 'ext4', `${hex(img.digest)}-auto.img`));
    assert.equal(a, b);
    assert.equal(log.messages('info').filter((m) => m.startsWith('built ext4 image')).length, 1);
    assert.equal(debugfs(a, 'cat /etc/hello'), 'hello ext4\n');
    assert.match(debugfs(a, 'stat /etc/localtime'), /Fast link dest: "\/usr\/share\/zoneinfo\/UTC"/);
    assert.match(debugfs(a, 'stat /home/u'), /User:\s+1000\s+Group:\s+1000/);
    assert.equal(statSync(a).size, 17 * 1024 * 1024, 'tiny content: 16 MiB of headroom, rounded up');

    const mtime = statSync(a).mtimeMs;
    assert.equal(await svc.ext4(image), a);
    assert.equal(statSync(a).mtimeMs, mtime, 'reused, not rebuilt');

    const sized = await svc.ext4(image, 40);
    assert.equal(sized, join(images, 'ext4', `${hex(img.digest)}-40.img`));
    assert.equal(statSync(sized).size, 40 * 1024 * 1024);
    assert.match(execFileSync('dumpe2fs', ['-h', sized], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /Filesystem volume name:\s+rootfs/);
  });

  it('refuses a size smaller than the content', async () => {
    const img = buildImage([buildLayer({ big: randomBytes(3 * 1024 * 1024) })]);
    registry.push('test/big', 'v1', img);
    const { svc, images } = setup();
    const image = await svc.pull(`${registry.host}/test/big:v1`);
    await assert.rejects(svc.ext4(image, 2), {
      message: `building the ext4 volume of ${image.ref}: size_in_mb 2 is smaller than the image content (4 MiB)`,
    });
    assert.deepEqual(readdirSync(join(images, 'ext4')), []);
    await assert.rejects(svc.ext4(image, -5), /size_in_mb must be a positive whole number/);
  });
});

describe('OciImageService: garbage collection', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
  });
  after(() => registry.close());

  it('removes unreferenced images older than the keep time, with their blobs, and keeps the rest', async () => {
    const base = buildLayer({ 'etc/base': 'shared base layer' });
    const a = buildImage([base, buildLayer({ which: 'a' })]);
    const b = buildImage([base, buildLayer({ which: 'b' })]);
    registry.push('test/gc', 'a', a);
    registry.push('test/gc', 'b', b);
    let now = Date.now();
    const { svc, images } = setup({ keepMs: 60_000, clock: { now: () => now } });
    const imgA = await svc.pull(`${registry.host}/test/gc:a`);
    const imgB = await svc.pull(`${registry.host}/test/gc:b`);
    const volB = await svc.ext4(imgB);

    assert.deepEqual(await svc.collectGarbage(new Set([imgA.digest])), [], 'B is unreferenced but recent');

    now += 120_000;
    assert.deepEqual(await svc.collectGarbage(new Set([imgA.digest])), [imgB.digest]);
    const blob = (d: string): string => join(images, 'blobs/sha256', hex(d));
    for (const d of [b.digest, b.configDigest, b.layerDigests[1] as string]) assert.equal(existsSync(blob(d)), false, `removed ${d}`);
    assert.equal(existsSync(imgB.rootfs), false);
    assert.equal(existsSync(volB), false);
    assert.equal(existsSync(imgA.rootfs), true);
    for (const d of [a.digest, a.configDigest, ...a.layerDigests]) assert.equal(existsSync(blob(d)), true, `kept ${d}`);
    const index = JSON.parse(readFileSync(join(images, 'refs.json'), 'utf8')) as { refs: Record<string, unknown>; images: Record<string, unknown> };
    assert.deepEqual(Object.keys(index.refs), [`${registry.host}/test/gc:a`]);
    assert.deepEqual(Object.keys(index.images), [a.digest]);

    // Referenced images survive any age; an unreferenced one goes once old.
    now += 120_000;
    assert.deepEqual(await svc.collectGarbage(new Set([imgA.digest])), []);
    // Leftovers no image owns (an abandoned download, a blob of a failed pull) go once old too.
    writeFileSync(join(images, 'tmp', `${'9'.repeat(64)}.partial`), 'abandoned');
    writeFileSync(join(images, 'blobs/sha256', '8'.repeat(64)), 'orphan');
    assert.deepEqual(await svc.collectGarbage(new Set()), [imgA.digest]);
    assert.deepEqual(readdirSync(join(images, 'rootfs')), []);
    assert.deepEqual(readdirSync(join(images, 'blobs/sha256')), []);
    assert.deepEqual(readdirSync(join(images, 'tmp')), []);

    // And it can be pulled again.
    const back = await svc.pull(`${registry.host}/test/gc:b`);
    assert.equal(readFileSync(join(back.rootfs, 'which'), 'utf8'), 'b');
  });
});

describe('OciImageService: tag resolution TTL', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
    registry.push('test/ttl', 'v1', twoLayerImage('ttl'));
  });
  after(() => registry.close());

  const manifestGets = (): number => registry.requests.filter((r) => r.path.includes('/manifests/')).length;

  it('trusts a tag resolved within tagTtlMs, and asks again after it (or always, by default)', async () => {
    let now = 1_000_000;
    const { svc } = setup({ tagTtlMs: 5000, clock: { now: () => now } });
    const ref = `${registry.host}/test/ttl:v1`;
    const first = await svc.pull(ref);
    const afterFirst = manifestGets();
    assert.ok(afterFirst > 0);
    now += 4000;
    assert.deepEqual(await svc.pull(ref), first, 'same image, from the cache');
    assert.equal(manifestGets(), afterFirst, 'the registry was not asked within the TTL');
    now += 2000;
    await svc.pull(ref);
    assert.ok(manifestGets() > afterFirst, 'asked again once the TTL passed');

    const { svc: always } = setup();
    await always.pull(ref);
    const before = manifestGets();
    await always.pull(ref);
    assert.ok(manifestGets() > before, 'with no TTL every pull re-resolves the tag');
  });
});

describe('OciImageService: hostile layers', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start();
  });
  after(() => registry.close());

  it('creates no device nodes and keeps no setuid/setgid bits on the host, and logs each once per layer', async () => {
    const img = buildImage([
      buildLayer({
        'dev/': { dir: true },
        'dev/sda': { device: 'block', major: 8, minor: 0, mode: 0o666 },
        'dev/mem': { device: 'char', major: 1, minor: 1, mode: 0o666 },
        'usr/bin/su': { content: 'su', mode: 0o4755 },
      }),
    ]);
    registry.push('test/hostile', 'v1', img);
    const { svc, log } = setup();
    const ref = `${registry.host}/test/hostile:v1`;
    const image = await svc.pull(ref);
    assert.equal(lstatSync(join(image.rootfs, 'dev/sda'), { throwIfNoEntry: false }), undefined);
    assert.equal(lstatSync(join(image.rootfs, 'dev/mem'), { throwIfNoEntry: false }), undefined);
    assert.equal(statSync(join(image.rootfs, 'usr/bin/su')).mode & 0o7777, 0o755);
    const layer = img.layerDigests[0] ?? '';
    assert.deepEqual(log.messages('warn'), [
      `pulling ${ref}: layer ${layer}: skipped 2 device nodes (dev/sda, dev/mem): layers never create device nodes on the host`,
      `pulling ${ref}: layer ${layer}: cleared the setuid/setgid bits of 1 entry (usr/bin/su): unpacked images never keep them`,
    ]);
  });

  it('fails an image that unpacks past maxUnpackedBytes, says how to raise it, and keeps no partial rootfs', async () => {
    const MiB = 1024 * 1024;
    // 32 MiB of zeros compress to ~32 KiB: the layer is small and verified, its content is not.
    const bombLayer = gzipSync(buildTar({ 'var/zeros': Buffer.alloc(32 * MiB) }));
    assert.ok(bombLayer.length < MiB);
    const bomb = buildImage([bombLayer]);
    registry.push('test/bomb', 'v1', bomb);
    registry.push('test/small', 'v1', twoLayerImage('small'));
    const { svc, images } = setup({ maxUnpackedBytes: 2 * MiB });
    const ref = `${registry.host}/test/bomb:v1`;
    await assert.rejects(svc.pull(ref), {
      message: `pulling ${ref}: layer ${bomb.layerDigests[0] ?? ''}: the image unpacks to more than 2 MiB, the limit per image; raise image-max-unpacked-size (now 2 MiB) to pull it`,
    });
    assert.deepEqual(readdirSync(join(images, 'rootfs')), [], 'the partial unpack is gone');
    // Images within the limit still pull.
    const small = await svc.pull(`${registry.host}/test/small:v1`);
    assert.equal(readFileSync(join(small.rootfs, 'etc/hello'), 'utf8'), 'hello small\n');
  });
});

describe('kernel and initrd steps on pulled images: symlinks stay inside the image', () => {
  let registry: TestRegistry;
  let stateDir: string;
  let repo: SqliteMicroVMRepository;
  let svc: OciImageService;
  let fs: NodeVmFilesystem;
  let vms = 0;

  before(async () => {
    registry = await TestRegistry.start();
    stateDir = makeTempDir('fl-oci-steps-');
    dirs.push(stateDir);
    repo = SqliteMicroVMRepository.open(stateDir);
    svc = setup({}, stateDir).svc;
    fs = new NodeVmFilesystem(stateDir);
    const boot = { 'boot/': { dir: true } } as const;
    registry.push(
      'test/kernel-link',
      'v1',
      buildImage([buildLayer({ ...boot, 'boot/vmlinuz-6.1': 'kernel 6.1', 'boot/vmlinuz': { symlink: 'vmlinuz-6.1' } })]),
    );
    registry.push('test/initrd-abs', 'v1', buildImage([buildLayer({ ...boot, 'boot/initrd': { symlink: '/etc/hostname' } })]));
    // Enough `..` to reach the host's / from the cache at any depth, had the link been followed there.
    registry.push('test/initrd-rel', 'v1', buildImage([buildLayer({ ...boot, 'boot/initrd': { symlink: `${'../'.repeat(28)}etc/hostname` } })]));
    registry.push('test/initrd-dir', 'v1', buildImage([buildLayer({ ...boot, 'boot/initrd/': { dir: true }, initrd: { symlink: 'boot/initrd' } })]));
    registry.push('test/boot-etc', 'v1', buildImage([buildLayer({ boot: { symlink: '/etc' }, 'etc/': { dir: true }, 'etc/kernel': 'image kernel' })]));
  });
  after(() => {
    repo.close();
    return registry.close();
  });

  /** A VM using the images, stored, and a step context over the real filesystem adapter. */
  function context(spec: Partial<MicroVMSpec>): StepContext {
    const vm = sampleVm({ id: { name: `vm${++vms}` }, spec });
    assert.ok(repo.insertUnlessExists(vm).inserted);
    const processes = new MemoryProcesses();
    return new StepContext(
      vm,
      {
        repo,
        network: new MemoryNetwork(),
        images: svc,
        fs,
        providers: new StaticProviderRegistry([new MemoryProvider(processes)], 'qemu'),
        clock: { now: () => Date.now() },
        ids: { next: () => 'unused' },
        hostNetwork: { deviceOwner: '0123456789ab' },
        processes,
        cidata: { build: () => Promise.reject(new Error('no cidata in this test')) },
        deleteVmTimeoutMs: 1000,
        sandbox: { cgroups: new MemoryCgroups(), limits: { memoryOverheadMb: 64, pidsMax: 512 } },
      },
      silentLogger(),
    );
  }
  const image = (repo: string): string => `${registry.host}/test/${repo}:v1`;
  /** VMMs get copies of kernels and initrds (ADR 0009), named after the file the lookup resolved to. */
  const filesDir = (): string => join(stateDir, 'images', 'files');

  it('follows an in-image link (boot/vmlinuz -> vmlinuz-6.1) to the real file', async () => {
    const ctx = context({ kernel: { image: image('kernel-link'), cmdline: {}, addNetworkConfig: false } });
    await kernelStep(ctx, svc).do();
    const source = ctx.status.kernelMount?.source ?? '';
    const pulled = await svc.pull(image('kernel-link'));
    // A copy of the real file (boot/vmlinuz-6.1) in the cache's files/, readable by the VMMs' uids.
    assert.equal(dirname(source), filesDir());
    assert.match(basename(source), new RegExp(`^${hex(pulled.digest)}-[0-9a-f]{12}-vmlinuz-6\\.1$`));
    assert.equal(lstatSync(source).isFile(), true, 'the VMM gets the file itself, not a link');
    assert.equal(statSync(source).mode & 0o7777, 0o644);
    assert.equal(readFileSync(source, 'utf8'), 'kernel 6.1');
    // The link and its target are one file in the image, so one copy.
    assert.equal(await svc.vmmFile(pulled, 'boot/vmlinuz'), source);
    assert.equal(await svc.vmmFile(pulled, '/boot/../boot/vmlinuz-6.1'), source);
  });

  it("the image service's copy resolves inside the image too: a link out of it is refused, nothing is copied", async () => {
    const pulled = await svc.pull(image('initrd-abs'));
    const before = readdirSync(filesDir());
    await assert.rejects(svc.vmmFile(pulled, 'boot/initrd'), {
      message: `not copying a file out of image ${pulled.ref} (${pulled.digest}): boot/initrd resolves through symbolic links inside the image to /etc/hostname, which does not exist`,
    });
    await assert.rejects(svc.vmmFile(pulled, 'boot'), /: boot is a directory$/);
    assert.deepEqual(readdirSync(filesDir()), before);
  });

  for (const [repoName, how] of [
    ['initrd-abs', 'absolute'],
    ['initrd-rel', 'relative, climbing'],
  ] as const) {
    it(`refuses an initrd that is a ${how} link to /etc/hostname, and never hands out the host's file`, async () => {
      const ref = image(repoName);
      const ctx = context({ initrd: { image: ref } });
      const step = initrdStep(ctx, svc);
      assert.ok(step);
      await assert.rejects(step.do(), {
        message: `initrd boot/initrd or initrd or boot/initrd.img or initrd.img not found in image ${ref} (boot/initrd resolves through symbolic links inside the image to /etc/hostname, which does not exist); its boot/ directory holds: initrd`,
      });
      assert.equal(ctx.status.initrdMount, undefined);
    });
  }

  it("refuses a client's kernel.filename that is a link out of the image, and a directory", async () => {
    const abs = context({ kernel: { image: image('initrd-abs'), filename: 'boot/initrd', cmdline: {}, addNetworkConfig: false } });
    await assert.rejects(
      kernelStep(abs, svc).do(),
      /^Error: kernel boot\/initrd not found in image .* \(boot\/initrd resolves through symbolic links inside the image to \/etc\/hostname, which does not exist\)/,
    );
    assert.equal(abs.status.kernelMount, undefined);

    const dir = context({ initrd: { image: image('initrd-dir'), filename: 'initrd' } });
    await assert.rejects(
      initrdStep(dir, svc)?.do() ?? Promise.resolve(),
      /\(initrd resolves through symbolic links inside the image to \/boot\/initrd, which is a directory\)/,
    );
  });

  it('an initrd path recorded as a link (by a daemon before this check) is looked up again', async () => {
    const ref = image('initrd-abs');
    const rootfs = (await svc.pull(ref)).rootfs;
    const ctx = context({ initrd: { image: ref } });
    ctx.saveStatus({ ...ctx.status, initrdMount: { type: 'hostpath', source: join(rootfs, 'boot/initrd') } });
    const step = initrdStep(ctx, svc);
    assert.ok(step);
    assert.equal(await step.shouldDo(), true, 'a mount whose path is a symlink counts as missing');
    await assert.rejects(step.do(), /boot\/initrd resolves through symbolic links inside the image to \/etc\/hostname, which does not exist/);
  });

  it('a boot/ that links to /etc means the image /etc: its kernel is found and the host /etc is never listed', async () => {
    const ok = context({ kernel: { image: image('boot-etc'), filename: 'boot/kernel', cmdline: {}, addNetworkConfig: false } });
    await kernelStep(ok, svc).do();
    const source = ok.status.kernelMount?.source ?? '';
    assert.equal(dirname(source), filesDir());
    assert.match(basename(source), /-kernel$/);
    assert.equal(readFileSync(source, 'utf8'), 'image kernel', "the image's etc/kernel, copied");

    const missing = context({ kernel: { image: image('boot-etc'), filename: 'boot/hostname', cmdline: {}, addNetworkConfig: false } });
    await assert.rejects(kernelStep(missing, svc).do(), /; its boot\/ directory holds: kernel$/);
  });
});
