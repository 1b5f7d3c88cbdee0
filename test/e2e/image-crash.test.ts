// Kill the daemon during a pull: on restart the pull completes and no corrupt cache entry is used.
//
// The real daemon (bin/flintlockd) runs in a test namespace (bridge br0, so it starts and the VM's
// tap NIC comes before the image steps); the in-process test registry (test/helpers/oci-registry.ts)
// runs in a child node inside the same namespace, serving the kernel layer slowly. The test:
//   1. SIGKILLs the daemon once the log shows part of the layer, and finds a partial download
//      and no blob under the layer's name;
//   2. restarts it: the download resumes with a Range request after the partial; SIGKILLs it again
//      part-way;
//   3. garbles the kept partial (what a torn write could leave) and restarts: the resumed bytes
//      fail verification, the layer is fetched again from byte 0;
//   4. the VM's kernel mount appears with the exact bytes, and every cached blob hashes to its name.
// The provider is unavailable on purpose (no VMM process is ever started).
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MicroVMSpecSchema, NetworkInterface_IfaceType as IfaceType } from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, REPO_ROOT, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient } from '../helpers/grpc-client.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, QEMU_DAEMON } from '../helpers/prerequisites.js';
import { spawnTracked } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const NS = 'e2e-crash';
const KERNEL_BYTES = 6 * 1024 * 1024;
/** Each blob response is sent in this many chunks, this far apart: ~4 s per response. */
const CHUNKS = 40;
const CHUNK_DELAY_MS = 100;

/**
 * The registry child: serves `boot/vmlinux` and `boot/initrd` (bytes from files) as a one-layer image, the layer
 * slowly; prints `READY {json}` and then `REQ {json}` per request as it arrives.
 */
const REGISTRY_SCRIPT = `
import { readFileSync } from 'node:fs';
const [helpers, kernelFile, initrdFile, chunks, delayMs] = process.argv.slice(1);
const { TestRegistry, buildImage, buildLayer } = await import(helpers);
const registry = await TestRegistry.start();
const image = buildImage([buildLayer({ 'boot/vmlinux': readFileSync(kernelFile), 'boot/initrd': readFileSync(initrdFile) })]);
registry.push('flintlock/kernel', 'crash', image);
const layer = image.layerDigests[0];
registry.setBlobBehaviour(layer, { slow: { chunks: Number(chunks), delayMs: Number(delayMs) } });
let seen = 0;
setInterval(() => {
  for (; seen < registry.requests.length; seen++) {
    const r = registry.requests[seen];
    process.stdout.write('REQ ' + JSON.stringify({ method: r.method, path: r.path, range: r.range ?? null }) + '\\n');
  }
}, 20);
process.on('SIGTERM', () => void registry.close().then(() => process.exit(0)));
process.stdout.write('READY ' + JSON.stringify({ host: registry.host, manifest: image.digest, layer, size: image.blobs.get(layer).length }) + '\\n');
`;

interface Served {
  readonly host: string;
  readonly manifest: string;
  readonly layer: string;
  readonly size: number;
}

interface Req {
  readonly method: string;
  readonly path: string;
  readonly range: string | null;
}

interface Progress {
  readonly layer: string;
  readonly bytes: number;
  readonly total: number;
}

/** `pulling <ref>: layer … <bytes>/<total>` records of the daemon's JSON log. */
function progressOf(output: string, layer: string): Progress[] {
  const out: Progress[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as Partial<Progress> & { msg?: string };
      if (rec.layer === layer && typeof rec.bytes === 'number' && typeof rec.total === 'number' && rec.msg?.startsWith('pulling ') === true) {
        out.push({ layer, bytes: rec.bytes, total: rec.total });
      }
    } catch {
      // a partial line
    }
  }
  return out;
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function sizeOrUndefined(path: string): number | undefined {
  return existsSync(path) ? statSync(path).size : undefined;
}

describeWith('a daemon killed during a pull', QEMU_DAEMON, { timeout: 180_000 }, () => {
  let netns: TestNetns;
  let dir: string;
  let registry: ChildProcess | undefined;
  let registryOut = '';
  let served: Served;
  let daemon: DaemonHandle | undefined;
  let client: TestClient | undefined;
  const kernel = randomBytes(KERNEL_BYTES);
  const initrd = randomBytes(64 * 1024);
  const config = {
    'bridge-name': 'br0',
    // The VM asks for Firecracker, installed nowhere: it stops at its VMM step, after the images,
    // and no VMM ever runs. (The default provider must be able to run, or the daemon refuses to start.)
    'default-provider': 'qemu',
    'firecracker-bin': '/nonexistent/firecracker',
    'maximum-retry': 3,
    'retry-backoff-base': '200ms',
  };

  const requests = (): Req[] =>
    registryOut
      .split('\n')
      .filter((l) => l.startsWith('REQ '))
      .map((l) => JSON.parse(l.slice(4)) as Req);
  const layerGets = (): Req[] => requests().filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${served.layer}`));

  /** Every daemon run's output, for the failure message. */
  const outputs: Array<() => string> = [];

  async function start(): Promise<DaemonHandle> {
    daemon = await startDaemon({ netns: netns.name, dir: join(dir, 'daemon'), config });
    outputs.push(daemon.output);
    client = new TestClient(daemon.endpoint);
    return daemon;
  }

  async function crash(): Promise<void> {
    client?.close();
    client = undefined;
    await daemon?.kill();
    daemon = undefined;
  }

  before(async () => {
    dir = makeTempDir('fl-img-crash-');
    netns = createTestNetns('flcrash');
    const kernelFile = join(dir, 'kernel.bin');
    writeFileSync(kernelFile, kernel);
    const initrdFile = join(dir, 'initrd.bin');
    writeFileSync(initrdFile, initrd);
    const helpers = `file://${join(REPO_ROOT, 'test/helpers/oci-registry.ts')}`;
    const child = spawnTracked(
      'ip',
      [
        'netns',
        'exec',
        netns.name,
        process.execPath,
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        REGISTRY_SCRIPT,
        helpers,
        kernelFile,
        initrdFile,
        String(CHUNKS),
        String(CHUNK_DELAY_MS),
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    registry = child;
    child.stdout?.on('data', (d: Buffer) => (registryOut += d.toString()));
    let errors = '';
    child.stderr?.on('data', (d: Buffer) => (errors += d.toString()));
    const ready = await waitFor(
      'the test registry',
      () => {
        if (child.exitCode !== null) throw new Error(`registry exited with ${child.exitCode}: ${errors}`);
        return /^READY (.*)$/m.exec(registryOut)?.[1];
      },
      20_000,
      25,
    );
    served = JSON.parse(ready) as Served;
  });

  after(async () => {
    try {
      if (client !== undefined) {
        for (const vm of await client.list(NS).catch(() => [])) await client.delete(vm.spec?.uid ?? '').catch(() => undefined);
        await waitFor('VMs removed', async () => (await client?.list(NS))?.length === 0, 15_000, 100).catch(() => undefined);
      }
    } finally {
      client?.close();
      await daemon?.stop();
      // `ip netns exec` execs node: the pid is the registry's.
      if (registry?.exitCode === null && registry.pid !== undefined) {
        const exited = new Promise((r) => registry?.once('exit', r));
        process.kill(registry.pid, 'SIGTERM');
        await exited;
      }
      netns?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resumes after a kill, restarts from zero after a garbled partial, and caches only verified blobs', async () => {
    try {
      await scenario();
    } catch (e) {
      const tail = outputs.map((o, i) => `--- daemon run ${i + 1}, last 25 lines ---\n${o().trimEnd().split('\n').slice(-25).join('\n')}`);
      if (e instanceof Error) e.message += `\n${tail.join('\n')}\n--- registry ---\n${registryOut.trimEnd().split('\n').slice(-20).join('\n')}`;
      throw e;
    }
  });

  async function scenario(): Promise<void> {
    const ref = `${served.host}/flintlock/kernel:crash`;
    const layerHex = served.layer.slice('sha256:'.length);
    const first = await start();
    const imagesDir = join(first.stateDir, 'images');
    const partial = join(imagesDir, 'tmp', `${layerHex}.partial`);
    const blob = join(imagesDir, 'blobs', 'sha256', layerHex);

    const created = await client?.create(
      create(MicroVMSpecSchema, {
        id: 'crash-1',
        namespace: NS,
        provider: 'firecracker',
        vcpu: 1,
        memoryInMb: 256,
        kernel: { image: ref, filename: 'boot/vmlinux', addNetworkConfig: false, cmdline: {} },
        initrd: { image: ref, filename: 'boot/initrd' },
        interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP }],
      }),
    );
    const uid = created?.spec?.uid ?? '';
    assert.notEqual(uid, '');

    // ---- 1. killed with part of the layer downloaded
    await waitFor(
      'a quarter of the layer in the log',
      () => progressOf(first.output(), served.layer).some((p) => p.bytes >= served.size / 4 && p.bytes < p.total),
      30_000,
      20,
    );
    await crash();
    const kept = sizeOrUndefined(partial) ?? 0;
    assert.ok(kept > 0 && kept < served.size, `a partial download is kept (${kept} of ${served.size} bytes)`);
    assert.equal(existsSync(blob), false, 'no blob under the layer digest before it is complete');
    assert.equal(layerGets().length, 1);
    assert.equal(layerGets()[0]?.range, null);

    // ---- 2. restart: the download resumes after the partial; killed again part-way
    const second = await start();
    await waitFor(
      'the resumed download to pass what was kept',
      () => progressOf(second.output(), served.layer).some((p) => p.bytes > kept + served.size / 8 && p.bytes < p.total),
      30_000,
      20,
    );
    const resumed = layerGets()[1];
    assert.equal(resumed?.range, `bytes=${kept}-`, 'resumed with a Range request after the kept bytes');
    await crash();
    const keptAgain = sizeOrUndefined(partial) ?? 0;
    assert.ok(keptAgain > kept && keptAgain < served.size, `the partial grew (${kept} -> ${keptAgain})`);
    assert.equal(existsSync(blob), false);

    // ---- 3. a garbled partial (a torn write): must never become the cached blob
    const fd = openSync(partial, 'r+');
    try {
      writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(keptAgain / 2));
    } finally {
      closeSync(fd);
    }
    const third = await start();
    const vm = await waitFor(
      'the kernel mount',
      async () => {
        const got = await client?.get(uid);
        return got?.status?.kernelMount !== undefined ? got : undefined;
      },
      60_000,
      100,
    );

    // ---- 4. exact bytes; every cached blob is what its name says
    const source = vm.status?.kernelMount?.source ?? '';
    assert.ok(source.startsWith(join(imagesDir, 'files')), source);
    assert.ok(readFileSync(source).equals(kernel), 'the kernel file is byte for byte what was pushed');
    assert.equal(vm.status?.images.kernel, served.manifest);
    const initrdMount = await waitFor('the initrd mount', async () => (await client?.get(uid))?.status?.initrdMount?.source, 10_000, 50);
    assert.ok(readFileSync(initrdMount).equals(initrd), 'the initrd from the same pull is exact too');
    // The registry child prints its request log every 20 ms.
    const gets = await waitFor('the registry log of the last request', () => (layerGets().length >= 4 ? layerGets() : undefined), 5_000, 20);
    assert.equal(gets[2]?.range, `bytes=${keptAgain}-`, 'the third start resumed first');
    assert.equal(gets[3]?.range, null, 'after the failed verification, the layer came again from byte 0');
    assert.equal(gets.length, 4, `layer requests: ${JSON.stringify(gets)}`);

    const blobsDir = join(imagesDir, 'blobs', 'sha256');
    const names = readdirSync(blobsDir);
    assert.ok(names.includes(layerHex), 'the layer is cached');
    assert.ok(names.includes(served.manifest.slice('sha256:'.length)), 'the manifest is cached');
    for (const name of names) assert.equal(sha256Hex(readFileSync(join(blobsDir, name))), name, `blob ${name} hashes to its name`);
    assert.deepEqual(
      readdirSync(join(imagesDir, 'tmp')).filter((n) => n.startsWith(layerHex)),
      [],
      'no partial left for the layer',
    );
    assert.deepEqual(
      readdirSync(join(imagesDir, 'rootfs')).filter((n) => n.startsWith('.')),
      [],
      'no unfinished unpack left',
    );
    assert.ok(third.output().includes('"msg":"pulled '), 'the restarted daemon finished the pull');
  }
});
