// End to end: OCI images from Debian's docker-registry, through the real daemon (bin/flintlockd),
// inside a network namespace this test makes and deletes (COMPAT §5, issue 3):
//   - a kernel + initrd image (the test guest) and a rootfs image of three layers with a whiteout
//     and an opaque directory are pushed to the registry;
//   - a VM created through the API gets HOSTPATH kernel/initrd mounts whose bytes are what was
//     pushed, and a root volume that is its own ext4 file in its VM dir, of `size_in_mb`, holding
//     the layers' result (read with debugfs: no mount, no loop device), each VM's volume a qcow2
//     overlay on the shared ext4 base (QEMU);
//   - a second VM from the same images downloads nothing and builds nothing, and gets its own copy;
//   - deleting the VMs lets garbage collection (image-keep-time 0s) empty the image cache.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { findExecutable } from '../../src/adapters/host/programs.js';
import {
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState as State,
  Mount_MountType as MountType,
  NetworkInterface_IfaceType as IfaceType,
  type MicroVM,
} from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient } from '../helpers/grpc-client.js';
import { ensureGuestImage, INITRD, KERNEL, pushGuest, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, programs, QEMU_DAEMON } from '../helpers/prerequisites.js';
import { buildImage, buildLayer, type BuiltImage } from '../helpers/oci-registry.js';
import { waitFor } from '../helpers/wait.js';

const DEBUGFS = findExecutable('debugfs');

const REGISTRY = '127.0.0.1:5000';
const GUEST = `${REGISTRY}/flintlock/guest:images-e2e`;
const ROOTFS = `${REGISTRY}/flintlock/rootfs:layers`;
const NS = 'e2e-img';
const SIZE_MB = 64;
const MiB = 1024 * 1024;

/**
 * Pushes a built image (its blobs and manifest, written under `dir`) with the distribution API's
 * monolithic upload. Plain JS for `node -e`, run inside the namespace where the registry listens.
 */
const PUSH_SCRIPT = `
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const [dir, host, repo, tag] = process.argv.slice(1);
const base = 'http://' + host;
const raw = readFileSync(join(dir, 'manifest.json'));
const manifest = JSON.parse(raw.toString());
for (const desc of [manifest.config, ...manifest.layers]) {
  const data = readFileSync(join(dir, desc.digest.replace(':', '-')));
  if ((await fetch(base + '/v2/' + repo + '/blobs/' + desc.digest, { method: 'HEAD' })).ok) continue;
  const start = await fetch(base + '/v2/' + repo + '/blobs/uploads/', { method: 'POST' });
  if (start.status !== 202) throw new Error('upload start ' + desc.digest + ': ' + start.status + ' ' + (await start.text()));
  const location = new URL(start.headers.get('location') ?? '', base);
  location.searchParams.set('digest', desc.digest);
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error('upload ' + desc.digest + ': ' + put.status + ' ' + (await put.text()));
}
const put = await fetch(base + '/v2/' + repo + '/manifests/' + tag, { method: 'PUT', body: raw, headers: { 'content-type': manifest.mediaType } });
if (put.status !== 201) throw new Error('manifest: ' + put.status + ' ' + (await put.text()));
process.stdout.write((put.headers.get('docker-content-digest') ?? '') + '\\n');
`;

function pushImage(ns: string, dir: string, ref: string, image: BuiltImage): string {
  const m = /^([^/]+)\/(.+):([\w][\w.-]*)$/.exec(ref);
  if (m === null) throw new Error(`bad test reference ${ref}`);
  const [, host = '', repo = '', tag = ''] = m;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), image.bytes);
  for (const [digest, data] of image.blobs) writeFileSync(join(dir, digest.replace(':', '-')), data);
  return execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', PUSH_SCRIPT, dir, host, repo, tag], {
    encoding: 'utf8',
  }).trim();
}

/** The backing file of a qcow2 overlay. */
function backingOf(overlay: string): string {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', overlay], { encoding: 'utf8' })) as { 'backing-filename'?: string };
  return info['backing-filename'] ?? '';
}

/** The raw disk a VM sees through its overlay (for debugfs, which reads raw images only). */
function flatten(overlay: string, raw: string): string {
  // -U: the running VMM holds the image lock; reading a consistent-enough snapshot is fine here.
  execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', overlay, raw]);
  return raw;
}

function debugfs(image: string, request: string): string {
  return execFileSync(DEBUGFS ?? 'debugfs', ['-R', request, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Names in a directory of an ext4 image (`ls -p`: /inode/mode/uid/gid/name/size/). */
function ext4List(image: string, dir: string): string[] {
  return debugfs(image, `ls -p ${dir}`)
    .split('\n')
    .map((l) => l.split('/')[5])
    .filter((n): n is string => n !== undefined && n !== '' && n !== '.' && n !== '..')
    .sort();
}

function ext4Cat(image: string, path: string): string {
  return debugfs(image, `cat ${path}`);
}

/** Filesystem size in bytes from the superblock. */
function ext4Bytes(image: string): number {
  const stats = debugfs(image, 'stats -h');
  const count = Number(/^Block count:\s+(\d+)/m.exec(stats)?.[1]);
  const size = Number(/^Block size:\s+(\d+)/m.exec(stats)?.[1]);
  return count * size;
}

function listFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** Blob names and mtimes: a download would add a name or rewrite a file. */
function blobSnapshot(stateDir: string): string[] {
  const dir = join(stateDir, 'images', 'blobs', 'sha256');
  return listFiles(dir).map((n) => `${n}@${statSync(join(dir, n)).mtimeMs}`);
}

/** Messages of the daemon's JSON log lines. */
function logMessages(output: string): string[] {
  const out: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const msg = (JSON.parse(line) as { msg?: unknown }).msg;
      if (typeof msg === 'string') out.push(msg);
    } catch {
      // a partial line
    }
  }
  return out;
}

/** On failure, the daemon's last log lines go with the error (what a CI log needs). */
async function withDaemonLog(output: () => string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof Error) e.message += `\n--- daemon log, last 40 lines ---\n${output().trimEnd().split('\n').slice(-40).join('\n')}`;
    throw e;
  }
}

function isQemu(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('qemu');
  } catch {
    return false;
  }
}

describeWith('OCI images end to end (docker-registry, real daemon)', [...QEMU_DAEMON, ...programs('debugfs', 'busybox')], { timeout: 240_000 }, () => {
  let netns: TestNetns;
  let dir: string;
  let daemon: DaemonHandle;
  let client: TestClient;
  let stopRegistry: (() => void) | undefined;
  let rootfsDigest = '';
  const blob = randomBytes(2 * MiB);
  const pids = new Set<number>();

  function spec(name: string, explicitFilenames: boolean): ReturnType<typeof create<typeof MicroVMSpecSchema>> {
    return create(MicroVMSpecSchema, {
      id: name,
      namespace: NS,
      vcpu: 1,
      memoryInMb: 256,
      // The second VM leaves the names empty: the COMPAT §2.3 defaults find boot/vmlinuz and boot/initrd.
      kernel: { image: GUEST, filename: explicitFilenames ? 'boot/vmlinuz' : '', addNetworkConfig: false, cmdline: {} },
      initrd: { image: GUEST, filename: explicitFilenames ? 'boot/initrd' : '' },
      rootVolume: { id: 'root', isReadOnly: false, sizeInMb: SIZE_MB, source: { containerSource: ROOTFS } },
      interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP }],
    });
  }

  /** Creates a VM and waits until its kernel, initrd and root volume are in the status. */
  async function createWithImages(name: string, explicitFilenames: boolean): Promise<MicroVM> {
    const uid = (await client.create(spec(name, explicitFilenames))).spec?.uid ?? '';
    const vm = await waitFor(
      `${name}'s image mounts in the status`,
      async () => {
        const got = await client.get(uid);
        const s = got.status;
        if (s?.state === State.FAILED && (s.kernelMount === undefined || s.volumes.root === undefined)) throw new Error(`${name} FAILED: ${s.failureReason}`);
        return s?.kernelMount !== undefined && s.initrdMount !== undefined && s.volumes.root?.mount !== undefined ? got : undefined;
      },
      90_000,
      100,
    );
    if ((vm.status?.vmmPid ?? 0) > 0) pids.add(vm.status?.vmmPid ?? 0);
    return vm;
  }

  async function deleteAndWait(uid: string): Promise<void> {
    const before = await client.get(uid).catch(() => undefined);
    if ((before?.status?.vmmPid ?? 0) > 0) pids.add(before?.status?.vmmPid ?? 0);
    await client.delete(uid);
    await waitFor(`${uid} removed`, async () => (await client.list(NS)).every((v) => v.spec?.uid !== uid), 30_000, 100);
  }

  before(async () => {
    ensureGuestImage();
    dir = makeTempDir('fl-img-e2e-');
    chmodSync(dir, 0o755);
    netns = createTestNetns('flimg');
    netns.ip('addr', 'add', '10.79.0.1/24', 'dev', 'br0');
    const registry = await startRegistry(netns.name, dir);
    stopRegistry = registry.stop;
    pushGuest(netns.name, GUEST);
    // Three layers: a whiteout in the second, an opaque directory in the third (its marker after
    // the directory's new entry, which the spec allows and must not remove).
    const rootfs = buildImage([
      buildLayer({
        'etc/hostname': 'flintlock-e2e\n',
        'data/a.txt': 'a from layer 1\n',
        'data/b.txt': 'b from layer 1\n',
        'data/blob.bin': blob,
        'opt/sub/deep.txt': 'deep from layer 1\n',
      }),
      buildLayer({ 'data/.wh.a.txt': '', 'data/c.txt': 'c from layer 2\n', 'opt/old.txt': 'old from layer 2\n' }),
      buildLayer({ 'opt/new.txt': 'new from layer 3\n', 'opt/.wh..wh..opq': '' }),
    ]);
    rootfsDigest = rootfs.digest;
    assert.equal(pushImage(netns.name, join(dir, 'push-rootfs'), ROOTFS, rootfs), rootfs.digest);
    daemon = await startDaemon({
      netns: netns.name,
      dir: join(dir, 'daemon'),
      config: {
        'bridge-name': 'br0',
        'default-provider': 'qemu',
        'image-keep-time': '0s',
        'maximum-retry': 3,
        'retry-backoff-base': '200ms',
        'delete-vm-timeout': '2s',
      },
    });
    client = new TestClient(daemon.endpoint);
  });

  after(async () => {
    try {
      for (const vm of (await client?.list(''))?.filter((v) => v.spec !== undefined) ?? []) await deleteAndWait(vm.spec?.uid ?? '').catch(() => undefined);
    } finally {
      client?.close();
      await daemon?.stop();
      // Safety net: no VMM this test caused may outlive it.
      for (const pid of pids) if (isQemu(pid)) process.kill(pid, 'SIGKILL');
      stopRegistry?.();
      netns?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('pulls kernel, initrd and a layered root volume, reuses the cache, and collects it after delete', () => withDaemonLog(() => daemon.output(), scenario));

  async function scenario(): Promise<void> {
    // ---- first VM: everything pulled, unpacked and built
    const vm1 = await createWithImages('img-1', true);
    const s1 = vm1.status;
    assert.ok(s1 !== undefined);
    assert.equal(s1.kernelMount?.type, MountType.HOSTPATH);
    assert.equal(s1.initrdMount?.type, MountType.HOSTPATH);
    assert.ok(readFileSync(s1.kernelMount?.source ?? '').equals(readFileSync(KERNEL)), 'kernel bytes are the pushed vmlinuz');
    assert.ok(readFileSync(s1.initrdMount?.source ?? '').equals(readFileSync(INITRD)), 'initrd bytes are the pushed initramfs');
    // A copy VMMs (their own uids) can read; the unpacked image itself stays the daemon's.
    assert.ok(s1.kernelMount?.source.startsWith(join(daemon.stateDir, 'images', 'files')), s1.kernelMount?.source);
    assert.equal(statSync(s1.kernelMount?.source ?? '').mode & 0o777, 0o644);
    assert.equal(s1.images['volume:root'], rootfsDigest, 'the status records the rootfs digest');

    const root1 = s1.volumes.root?.mount;
    assert.equal(root1?.type, MountType.HOSTPATH);
    const vmDir1 = join(daemon.stateDir, 'vm', NS, 'img-1', vm1.spec?.uid ?? '');
    // QEMU opens qcow2 overlays: each VM's volume is an overlay on the shared ext4 base.
    assert.equal(root1?.source, join(vmDir1, 'volumes', 'root.qcow2'), 'the root volume is a per-VM overlay in the VM dir');
    const ext4Dir = join(daemon.stateDir, 'images', 'ext4');
    const shared = listFiles(ext4Dir).filter((n) => n.endsWith('.img'));
    assert.equal(shared.length, 1, `one shared ext4 image: ${shared.join(', ')}`);
    const sharedPath = join(ext4Dir, shared[0] ?? '');
    assert.notEqual(statSync(root1?.source ?? '').ino, statSync(sharedPath).ino, 'its own file, not the shared cache file');
    assert.equal(backingOf(root1?.source ?? ''), sharedPath, 'backed by the shared ext4 image');
    assert.ok(statSync(root1?.source ?? '').size < MiB, 'the overlay holds no copy of the data');

    // The layers' result, read from the ext4 filesystem the VM sees (the overlay, flattened).
    const img1 = flatten(root1?.source ?? '', join(dir, 'img1.raw'));
    assert.deepEqual(ext4List(img1, '/'), ['data', 'etc', 'lost+found', 'opt']);
    assert.deepEqual(ext4List(img1, '/data'), ['b.txt', 'blob.bin', 'c.txt'], 'a.txt whited out, c.txt added');
    assert.equal(ext4Cat(img1, '/data/c.txt'), 'c from layer 2\n');
    assert.equal(ext4Cat(img1, '/data/b.txt'), 'b from layer 1\n');
    assert.equal(ext4Cat(img1, '/etc/hostname'), 'flintlock-e2e\n');
    assert.deepEqual(ext4List(img1, '/opt'), ['new.txt'], 'the opaque /opt holds only the top layer entry');
    assert.equal(ext4Cat(img1, '/opt/new.txt'), 'new from layer 3\n');
    const dumped = join(dir, 'blob.out');
    debugfs(img1, `dump /data/blob.bin ${dumped}`);
    assert.ok(readFileSync(dumped).equals(blob), 'a 2 MiB binary file survives byte for byte');
    // size_in_mb sizes the filesystem (and so the file).
    assert.equal(ext4Bytes(img1), SIZE_MB * MiB);
    assert.equal(statSync(img1).size, SIZE_MB * MiB);

    // Progress per layer was logged on the first pull.
    const messages = (): string[] => logMessages(daemon.output());
    assert.ok(
      messages().some((m) => new RegExp(`^pulling ${ROOTFS.replace(/[.]/g, '\\.')}: layer sha256:[0-9a-f]{12} (\\d+)/\\1$`).test(m)),
      'layer progress (bytes/total) in the log',
    );
    const pulled = (): string[] => messages().filter((m) => m.startsWith('pulled '));
    const built = (): string[] => messages().filter((m) => m.startsWith('built ext4 image'));
    assert.equal(pulled().length, 2, `each image pulled once: ${pulled().join('; ')}`);
    assert.equal(built().length, 1);

    // ---- second VM: same images, nothing downloaded or built, its own copy
    const blobsBefore = blobSnapshot(daemon.stateDir);
    const partialsBefore = listFiles(join(daemon.stateDir, 'images', 'tmp'));
    const vm2 = await createWithImages('img-2', false);
    const s2 = vm2.status;
    assert.deepEqual(blobSnapshot(daemon.stateDir), blobsBefore, 'no blob downloaded or rewritten');
    assert.deepEqual(listFiles(join(daemon.stateDir, 'images', 'tmp')), partialsBefore, 'no download started');
    assert.equal(pulled().length, 2, 'no new pull');
    assert.equal(built().length, 1, 'no new ext4 build');
    assert.equal(s2?.kernelMount?.source, s1.kernelMount?.source, 'the default kernel name finds boot/vmlinuz in the same cached image');
    assert.equal(s2?.initrdMount?.source, s1.initrdMount?.source);
    const overlay2 = s2?.volumes.root?.mount?.source ?? '';
    const vmDir2 = join(daemon.stateDir, 'vm', NS, 'img-2', vm2.spec?.uid ?? '');
    assert.equal(overlay2, join(vmDir2, 'volumes', 'root.qcow2'));
    assert.notEqual(statSync(overlay2).ino, statSync(root1?.source ?? '').ino, 'each VM has its own overlay');
    assert.equal(backingOf(overlay2), sharedPath);
    assert.deepEqual(ext4List(flatten(overlay2, join(dir, 'img2.raw')), '/data'), ['b.txt', 'blob.bin', 'c.txt']);
    assert.deepEqual(
      listFiles(ext4Dir).filter((n) => n.endsWith('.img')),
      shared,
    );

    // ---- delete: the first deletion leaves what the second VM uses; the second frees everything
    await deleteAndWait(vm1.spec?.uid ?? '');
    assert.equal(existsSync(vmDir1), false, 'VM dir (and its volume copy) removed');
    await new Promise((r) => setTimeout(r, 3500)); // the janitor runs ~2 s after a removal
    assert.deepEqual(blobSnapshot(daemon.stateDir), blobsBefore, 'images still referenced by img-2 are kept');
    assert.equal(listFiles(join(daemon.stateDir, 'images', 'rootfs')).length, 2);
    assert.ok(existsSync(sharedPath));
    assert.ok(existsSync(s1.kernelMount?.source ?? ''), 'the kernel copy img-2 uses is kept');

    await deleteAndWait(vm2.spec?.uid ?? '');
    assert.equal(existsSync(vmDir2), false);
    const images = join(daemon.stateDir, 'images');
    await waitFor(
      'garbage collection to empty the image cache',
      () =>
        listFiles(join(images, 'rootfs')).length === 0 &&
        listFiles(join(images, 'ext4')).length === 0 &&
        listFiles(join(images, 'files')).length === 0 &&
        listFiles(join(images, 'blobs', 'sha256')).length === 0,
      15_000,
      100,
    );
    const index = JSON.parse(readFileSync(join(images, 'refs.json'), 'utf8')) as { refs: object; images: object };
    assert.deepEqual(index.refs, {});
    assert.deepEqual(index.images, {});
    assert.ok(
      messages().some((m) => m === 'removed 2 unused cached images'),
      `GC logged: ${messages()
        .filter((m) => m.includes('cached'))
        .join('; ')}`,
    );
  }
});
