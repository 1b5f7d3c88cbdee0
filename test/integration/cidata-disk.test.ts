// The cidata disk built with dosfstools + mtools, read back with mtools and blkid/fatlabel.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { promisify } from 'node:util';

import { CIDATA_LABEL, cidataSizeKib, FatCidataDiskBuilder } from '../../src/adapters/cloud-init/cidata-disk.js';
import type { CloudInitFiles } from '../../src/core/ports.js';
import { makeTempDir } from '../helpers/daemon.js';
import { describeWith, programs } from '../helpers/prerequisites.js';

const run = promisify(execFile);
const SBIN_PATH = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;
const ENV = { ...process.env, PATH: SBIN_PATH, MTOOLS_SKIP_CHECK: '1' };

async function listFiles(image: string): Promise<string[]> {
  // -b: bare listing, one `::/name` per line, long names.
  const { stdout } = await run('mdir', ['-b', '-i', image, '::'], { env: ENV });
  return stdout
    .split('\n')
    .map((l) => l.trim().replace(/^::\//, ''))
    .filter((l) => l !== '')
    .sort();
}

async function readFileFromImage(image: string, name: string): Promise<Buffer> {
  const { stdout } = await run('mtype', ['-i', image, `::${name}`], { env: ENV, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function label(image: string): Promise<string> {
  const { stdout } = await run('blkid', ['-o', 'value', '-s', 'LABEL', image], { env: ENV });
  return stdout.trim();
}

describeWith('FatCidataDiskBuilder', programs('mkfs.vfat', 'mcopy', 'mdir', 'mtype', 'blkid', 'fatlabel'), {}, () => {
  let dir = '';
  before(() => {
    dir = makeTempDir('fl-cidata-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the four files byte for byte on a FAT disk labelled cidata', async () => {
    const files: CloudInitFiles = {
      'meta-data': 'instance_id: 01HGW2N7EH00000000000000AA\nlocal_hostname: vm1\n',
      'user-data': '#cloud-config\nhostname: vm1\nwrite_files:\n  - path: /etc/motd\n    content: "héllo wörld ✓"\n',
      'vendor-data': '#cloud-config\nmounts:\n  - ["/dev/vdb", "/data", "auto", "defaults,nofail"]\n',
      'network-config': 'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "02:00:00:00:00:01"\n    dhcp4: true\n',
    };
    const image = join(dir, 'cidata.img');
    await new FatCidataDiskBuilder().build(image, files);

    assert.equal(await label(image), CIDATA_LABEL);
    const { stdout: fat } = await run('fatlabel', [image], { env: ENV });
    assert.equal(fat.trim(), 'cidata');
    assert.deepEqual(await listFiles(image), ['meta-data', 'network-config', 'user-data', 'vendor-data']);
    for (const [name, text] of Object.entries(files)) {
      assert.deepEqual(await readFileFromImage(image, name), Buffer.from(text), name);
    }
    // Only the image is left in the directory: no partial image, no staging files.
    assert.deepEqual(await readdir(dir), ['cidata.img']);
  });

  it('adds an empty #cloud-config user-data when none is given, and replaces an existing image', async () => {
    const image = join(dir, 'replace.img');
    await writeFile(image, 'old content');
    await new FatCidataDiskBuilder().build(image, { 'meta-data': 'instance_id: a\n' });
    assert.deepEqual(await listFiles(image), ['meta-data', 'user-data']);
    assert.equal((await readFileFromImage(image, 'user-data')).toString(), '#cloud-config\n');
    assert.equal((await readFileFromImage(image, 'meta-data')).toString(), 'instance_id: a\n');
  });

  it('grows the image for large files', async () => {
    const big = `#cloud-config\nwrite_files:\n  - path: /big\n    content: "${'x'.repeat(3 * 1024 * 1024)}"\n`;
    assert.ok(cidataSizeKib([big]) > 3 * 1024);
    const image = join(dir, 'big.img');
    await new FatCidataDiskBuilder().build(image, { 'meta-data': 'instance_id: a\n', 'user-data': big });
    assert.deepEqual(await readFileFromImage(image, 'user-data'), Buffer.from(big));
  });

  it('names the Debian packages when the tools are missing, and leaves nothing behind', async () => {
    const empty = join(dir, 'empty-bin');
    await mkdir(empty);
    const image = join(dir, 'missing.img');
    await assert.rejects(new FatCidataDiskBuilder({ searchPath: [empty] }).build(image, { 'meta-data': 'a: 1\n' }), (e: Error) => {
      assert.match(e.message, /mkfs\.vfat \(Debian package dosfstools\) and mcopy \(Debian package mtools\)/);
      return true;
    });
    await assert.rejects(
      new FatCidataDiskBuilder({ mcopyBin: join(dir, 'no-such-mcopy') }).build(image, { 'meta-data': 'a: 1\n' }),
      /no-such-mcopy \(Debian package mtools\)/,
    );
    assert.equal(existsSync(image), false);
  });

  it('a failing tool fails the build without leaving a partial image', async () => {
    const sub = join(dir, 'failing');
    await mkdir(sub);
    const fake = join(sub, 'fake-mcopy');
    await writeFile(fake, '#!/bin/sh\necho "mcopy: disk full" >&2\nexit 1\n', { mode: 0o755 });
    await assert.rejects(new FatCidataDiskBuilder({ mcopyBin: fake }).build(join(sub, 'x.img'), { 'meta-data': 'a: 1\n' }), /mcopy failed: mcopy: disk full/);
    assert.deepEqual(await readdir(sub), ['fake-mcopy']);
  });
});
