// Layer unpacking: whiteouts, symlinks kept verbatim, paths kept inside the root, owners and
// modes (never setuid/setgid), no device nodes, the bound on unpacked bytes, compression
// detection, and the temp-dir-then-rename discipline.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

import { cleanEntryPath, layerCompression, unpackImage, type LayerSource, type UnpackOptions } from '../../src/adapters/images/unpack.js';
import { makeTempDir } from '../helpers/daemon.js';
import { MT, buildLayer, buildTar, sha256, type LayerEntry } from '../helpers/oci-registry.js';

let dir: string;
let counter = 0;

function layerFile(data: Buffer, mediaType: string = MT.ociLayerGzip, diffId?: string): LayerSource {
  const path = join(dir, `layer-${++counter}`);
  writeFileSync(path, data);
  return { digest: sha256(data), mediaType, path, ...(diffId !== undefined ? { diffId } : {}) };
}

function layer(files: Record<string, LayerEntry>): LayerSource {
  return layerFile(buildLayer(files));
}

async function unpack(layers: LayerSource[], options?: UnpackOptions): Promise<string> {
  const hex = `${++counter}`.padStart(64, '0');
  return unpackImage(join(dir, 'rootfs'), hex, layers, options);
}

/** Relative paths of everything under root, sorted (directories end with /). */
function tree(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(root, p));
    if (st.isDirectory()) out.push(`${p}/`, ...tree(root, p));
    else out.push(p);
  }
  return out;
}

/** A tar whose single entry has a raw (unsanitised) path, as a hostile archive would. */
function rawEntryTar(path: string, content: string): Buffer {
  const data = Buffer.from(content);
  const h = new Header({ path, type: 'File', mode: 0o644, size: data.length, mtime: new Date(0), uid: 0, gid: 0 });
  h.encode();
  const padded = Buffer.concat([data, Buffer.alloc(512 - data.length)]);
  return gzipSync(Buffer.concat([h.block as Buffer, padded, Buffer.alloc(1024)]));
}

before(() => {
  dir = makeTempDir('fl-unpack-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('cleanEntryPath and layerCompression', () => {
  it('normalises ./ and leading slashes, refuses ..', () => {
    assert.equal(cleanEntryPath('./etc/passwd'), 'etc/passwd');
    assert.equal(cleanEntryPath('/etc//passwd'), 'etc/passwd');
    assert.equal(cleanEntryPath('./'), '');
    assert.equal(cleanEntryPath('a/../../b'), undefined);
  });
  it('knows the layer media types and refuses zstd by name', () => {
    assert.equal(layerCompression(MT.ociLayerGzip, 'd'), 'gzip');
    assert.equal(layerCompression(MT.dockerLayer, 'd'), 'gzip');
    assert.equal(layerCompression(MT.ociLayerTar, 'd'), 'none');
    assert.equal(layerCompression('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'd'), 'gzip');
    assert.throws(() => layerCompression(MT.ociLayerZstd, 'sha256:abc'), /^Error: zstd-compressed layers are not supported yet \(layer sha256:abc\)$/);
    assert.throws(() => layerCompression('application/json', 'sha256:abc'), /unsupported layer media type application\/json \(layer sha256:abc\)/);
  });
});

describe('unpackImage', () => {
  it('applies layers in order with files, directories, symlinks and hard links', async () => {
    const root = await unpack([
      layer({ 'etc/': { dir: true }, 'etc/hostname': 'one\n', 'bin/': { dir: true }, 'bin/a': 'A', 'bin/b': { link: 'bin/a' } }),
      layer({ 'etc/hostname': 'two\n', 'etc/localtime': { symlink: '/usr/share/zoneinfo/UTC' } }),
    ]);
    assert.deepEqual(tree(root), ['bin/', 'bin/a', 'bin/b', 'etc/', 'etc/hostname', 'etc/localtime']);
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'two\n');
    assert.equal(statSync(join(root, 'bin/a')).ino, statSync(join(root, 'bin/b')).ino);
  });

  it('keeps symlink targets verbatim, absolute and climbing ones included', async () => {
    const root = await unpack([
      layer({
        'usr/lib/': { dir: true },
        'etc/localtime': { symlink: '/usr/share/zoneinfo/UTC' },
        'usr/lib/up': { symlink: '../../../../x' },
        'lib64/ld.so': { symlink: '/lib/x86_64-linux-gnu/ld.so' },
      }),
    ]);
    assert.equal(readlinkSync(join(root, 'etc/localtime')), '/usr/share/zoneinfo/UTC');
    assert.equal(readlinkSync(join(root, 'usr/lib/up')), '../../../../x');
    assert.equal(readlinkSync(join(root, 'lib64/ld.so')), '/lib/x86_64-linux-gnu/ld.so');
  });

  it('follows in-image symlinks inside the root and never writes outside it', async () => {
    const outside = join(dir, 'outside-marker');
    const root = await unpack([
      layer({ 'usr/lib/': { dir: true }, lib: { symlink: 'usr/lib' }, evil: { symlink: '/' }, climb: { symlink: '../../../../../..' + dir } }),
      layer({ 'lib/libfoo.so': 'foo', 'evil/outside-marker': 'in root', 'climb/outside-marker': 'also in root' }),
    ]);
    assert.equal(readFileSync(join(root, 'usr/lib/libfoo.so'), 'utf8'), 'foo');
    assert.equal(lstatSync(join(root, 'lib')).isSymbolicLink(), true);
    assert.equal(existsSync(outside), false, 'nothing was written through a symlink to the host');
    assert.equal(readFileSync(join(root, 'outside-marker'), 'utf8'), 'in root');
    // `climb` resolves to <root><dir> (.. stops at the root).
    assert.equal(readFileSync(join(root, dir, 'outside-marker'), 'utf8'), 'also in root');
  });

  it('refuses entries with .. in their path', async () => {
    await assert.rejects(unpack([layerFile(rawEntryTar('../escape', 'x'))]), /leaves the root filesystem/);
    assert.equal(existsSync(join(dir, 'escape')), false);
  });

  it('takes absolute entry paths relative to the root', async () => {
    const root = await unpack([layerFile(rawEntryTar('/abs/file', 'x'))]);
    assert.equal(readFileSync(join(root, 'abs/file'), 'utf8'), 'x');
  });

  it('keeps owners and modes, the sticky bit included', async () => {
    const root = await unpack([
      layer({
        'usr/bin/': { dir: true, mode: 0o755 },
        'usr/bin/env': { content: 'env', mode: 0o755, uid: 0, gid: 0 },
        'home/user/': { dir: true, mode: 0o700, uid: 1000, gid: 1000 },
        'home/user/notes': { content: 'n', mode: 0o600, uid: 1000, gid: 1000 },
        'proc/': { dir: true, mode: 0o555 },
        'tmp/': { dir: true, mode: 0o1777 },
      }),
    ]);
    assert.equal(statSync(join(root, 'usr/bin/env')).mode & 0o7777, 0o755);
    assert.equal(statSync(join(root, 'proc')).mode & 0o7777, 0o555);
    assert.equal(statSync(join(root, 'tmp')).mode & 0o7777, 0o1777);
    const notes = statSync(join(root, 'home/user/notes'));
    assert.equal(notes.mode & 0o7777, 0o600);
    if (process.getuid?.() === 0) {
      assert.equal(notes.uid, 1000);
      assert.equal(statSync(join(root, 'home/user')).gid, 1000);
    }
    assert.equal(statSync(join(root, 'home/user/notes')).mtime.toISOString(), '2024-01-02T03:04:05.000Z');
  });

  it('never keeps setuid or setgid bits, and says so once per layer', async () => {
    const warnings: string[] = [];
    const base = layer({
      'usr/bin/': { dir: true, mode: 0o755 },
      'usr/bin/su': { content: 'su', mode: 0o4755 },
      'usr/bin/wall': { content: 'wall', mode: 0o2755 },
      'usr/bin/both': { content: 'b', mode: 0o6711 },
      'usr/bin/sudo': { link: 'usr/bin/su' },
      'var/mail/': { dir: true, mode: 0o2775 },
      'run/initctl': { fifo: true, mode: 0o4600 },
    });
    const upper = layer({ 'usr/bin/passwd': { content: 'p', mode: 0o4755 }, 'usr/bin/env': { content: 'env', mode: 0o755 } });
    const root = await unpack([base, upper], { warn: (m) => warnings.push(m) });
    const modes = Object.fromEntries(
      ['usr/bin/su', 'usr/bin/wall', 'usr/bin/both', 'usr/bin/sudo', 'usr/bin/passwd', 'usr/bin/env', 'var/mail', 'run/initctl'].map((p) => [
        p,
        ((lstatSync(join(root, p), { throwIfNoEntry: false })?.mode ?? 0) & 0o7777).toString(8),
      ]),
    );
    assert.deepEqual(modes, {
      'usr/bin/su': '755',
      'usr/bin/wall': '755',
      'usr/bin/both': '711',
      'usr/bin/sudo': '755',
      'usr/bin/passwd': '755',
      'usr/bin/env': '755',
      'var/mail': '775',
      'run/initctl': '600',
    });
    assert.equal(lstatSync(join(root, 'run/initctl')).isFIFO(), true, 'fifos are no device nodes: kept');
    assert.deepEqual(warnings, [
      `layer ${base.digest}: cleared the setuid/setgid bits of 5 entries (usr/bin/su, usr/bin/wall, usr/bin/both, var/mail, run/initctl): unpacked images never keep them`,
      `layer ${upper.digest}: cleared the setuid/setgid bits of 1 entry (usr/bin/passwd): unpacked images never keep them`,
    ]);
  });

  it('never creates device nodes, and says how many it skipped, once per layer', async () => {
    const warnings: string[] = [];
    const base = layer({
      'dev/': { dir: true },
      'dev/null': { device: 'char', major: 1, minor: 3, mode: 0o666 },
      'dev/sda': { device: 'block', major: 8, minor: 0 },
      'dev/mem': { device: 'char', major: 1, minor: 1, mode: 0o4666 },
      'dev/null-again': { link: 'dev/null' },
      'etc/hostname': 'h',
    });
    // A device over a lower file removes the file, as the node would have hidden it.
    const upper = layer({ 'etc/hostname': { device: 'char', major: 1, minor: 5 }, 'etc/motd': 'hi' });
    const root = await unpack([base, upper], { warn: (m) => warnings.push(m) });
    assert.deepEqual(tree(root), ['dev/', 'etc/', 'etc/motd']);
    assert.deepEqual(warnings, [
      `layer ${base.digest}: skipped 4 device nodes (dev/null, dev/sda, dev/mem, dev/null-again): layers never create device nodes on the host`,
      `layer ${upper.digest}: skipped 1 device node (etc/hostname): layers never create device nodes on the host`,
    ]);
  });

  it('fails an image that unpacks to more than the limit, across layers, and leaves nothing behind', async () => {
    const MiB = 1024 * 1024;
    // 64 MiB of zeros: a ~64 KiB gzip, a bomb in miniature.
    const bomb = layerFile(gzipSync(buildTar({ zeros: Buffer.alloc(64 * MiB) })));
    assert.ok(statSync(bomb.path as string).size < MiB);
    const parent = join(dir, 'rootfs-bomb');
    await assert.rejects(unpackImage(parent, 'b'.repeat(64), [bomb], { maxBytes: 4 * MiB }), {
      name: 'Error',
      message: `layer ${bomb.digest}: the image unpacks to more than 4 MiB`,
    });
    assert.deepEqual(readdirSync(parent), [], 'the partial unpack is removed');

    // The limit is per image: two layers under it alone, over it together.
    const a = layer({ 'part-a': Buffer.alloc(3 * MiB) });
    const b = layer({ 'part-b': Buffer.alloc(3 * MiB) });
    await assert.rejects(
      unpackImage(parent, 'a'.repeat(64), [a, b], { maxBytes: 4 * MiB }),
      new RegExp(`^Error: layer ${b.digest}: the image unpacks to more than 4 MiB$`),
    );
    assert.deepEqual(readdirSync(parent), []);
    const fits = await unpackImage(parent, 'c'.repeat(64), [a], { maxBytes: 4 * MiB });
    assert.equal(statSync(join(fits, 'part-a')).size, 3 * MiB);
  });

  it('whiteouts remove lower files and directories; opaque directories lose their lower contents', async () => {
    const root = await unpack([
      layer({ 'a/file1': '1', 'a/file2': '2', 'b/sub/x': 'x', 'c/keep': 'k', 'd/old': 'o', 'd/olddir/y': 'y' }),
      layer({ 'a/.wh.file1': '', '.wh.b': '', 'd/.wh..wh..opq': '', 'd/new': 'n' }),
    ]);
    assert.deepEqual(tree(root), ['a/', 'a/file2', 'c/', 'c/keep', 'd/', 'd/new']);
  });

  it('a whiteout or opaque marker never removes what its own layer wrote, whatever the order', async () => {
    const root = await unpack([
      layer({ 'd/old': 'o', 'e/sub/lower': 'l', 'f/lower': 'l' }),
      // Marker after the new file, and a whiteout of a directory the layer then re-creates.
      layer({ 'd/new': 'n', 'd/.wh..wh..opq': '', 'e/sub/upper': 'u', 'e/.wh.sub': '', 'f/.wh.lower': '', 'f/lower/now-a-dir': 'x' }),
    ]);
    assert.deepEqual(tree(root), ['d/', 'd/new', 'e/', 'e/sub/', 'e/sub/upper', 'f/', 'f/lower/', 'f/lower/now-a-dir']);
  });

  it('a later layer can replace a directory with a file and a file with a directory', async () => {
    const root = await unpack([layer({ 'x/inner': 'i', y: 'file' }), layer({ x: 'now a file', 'y/': { dir: true }, 'y/inner': 'i' })]);
    assert.equal(readFileSync(join(root, 'x'), 'utf8'), 'now a file');
    assert.equal(readFileSync(join(root, 'y/inner'), 'utf8'), 'i');
  });

  it('handles uncompressed tar, gzip labelled as tar, and the classic empty layer', async () => {
    const tar = buildTar({ 'plain.txt': 'p' });
    const root = await unpack([
      layerFile(tar, MT.ociLayerTar),
      layerFile(buildLayer({ 'mislabelled.txt': 'm' }), MT.ociLayerTar),
      layerFile(gzipSync(Buffer.alloc(1024)), MT.dockerLayer),
    ]);
    assert.deepEqual(tree(root), ['mislabelled.txt', 'plain.txt']);
  });

  it('refuses zstd content even under a tar media type', async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64)]);
    const l = layerFile(zstd, MT.ociLayerTar);
    await assert.rejects(unpack([l]), new RegExp(`zstd-compressed layers are not supported yet \\(layer ${l.digest}\\)`));
  });

  it('checks the uncompressed digest against the config diff_id', async () => {
    const data = buildLayer({ f: 'x' });
    await assert.rejects(unpack([layerFile(data, MT.ociLayerGzip, sha256(Buffer.from('other')))]), /does not match the config's diff_id/);
  });

  it('fails on a truncated layer and leaves neither the entry nor a temp directory', async () => {
    const data = buildLayer({ big: Buffer.alloc(200_000, 7) });
    const parent = join(dir, 'rootfs-trunc');
    await assert.rejects(unpackImage(parent, 'f'.repeat(64), [layerFile(data.subarray(0, data.length - 40))]), /layer sha256:/);
    assert.deepEqual(readdirSync(parent), []);
  });

  it('streams large files, and a layer cut inside one fails without hanging', async () => {
    const big = randomBytes(3 * 1024 * 1024);
    const root = await unpack([layer({ 'data/big.bin': big, 'data/after': 'a' })]);
    assert.ok(readFileSync(join(root, 'data/big.bin')).equals(big));
    assert.equal(readFileSync(join(root, 'data/after'), 'utf8'), 'a');

    const data = buildLayer({ 'data/big.bin': big, 'data/after': 'a' });
    const parent = join(dir, 'rootfs-cut');
    await assert.rejects(unpackImage(parent, 'c'.repeat(64), [layerFile(data.subarray(0, data.length >> 1))]), /layer sha256:.*(gunzip|unexpected end)/);
    assert.deepEqual(readdirSync(parent), []);
  });

  it('never trusts a leftover temp directory: it is deleted and the unpack starts afresh', async () => {
    const parent = join(dir, 'rootfs-crash');
    const hex = 'e'.repeat(64);
    mkdirSync(join(parent, `.tmp-${hex}-deadbeef`, 'etc'), { recursive: true });
    writeFileSync(join(parent, `.tmp-${hex}-deadbeef`, 'etc', 'stale'), 'half-written');
    const root = await unpackImage(parent, hex, [layer({ 'etc/fresh': 'ok' })]);
    assert.deepEqual(readdirSync(parent), [hex]);
    assert.deepEqual(tree(root), ['etc/', 'etc/fresh']);
  });

  it('a layer whose download failed fails the unpack cleanly', async () => {
    const parent = join(dir, 'rootfs-dlfail');
    const download = Promise.reject(new Error('download broke'));
    download.catch(() => undefined);
    const failing: LayerSource = { digest: 'sha256:' + '1'.repeat(64), mediaType: MT.ociLayerGzip, path: download };
    await assert.rejects(unpackImage(parent, 'd'.repeat(64), [layer({ a: 'a' }), failing]), /download broke/);
    assert.deepEqual(readdirSync(parent), []);
  });
});
