// The cidata disk written in-process (src/adapters/cloud-init/fat-image.ts), read back by the
// real tools: mtools (mdir, mtype) lists and reads the files, fsck.fat -n checks the whole
// filesystem (upper-case label, FATs, chains, long names), blkid reads the label as the guest's
// findfs and cloud-init do. No MTOOLS_SKIP_CHECK: the geometry must satisfy mtools' own checks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';

import { CIDATA_LABEL, cidataImage, FatCidataDiskBuilder } from '../../src/adapters/cloud-init/cidata-disk.js';
import { fatGeometry, fatImage } from '../../src/adapters/cloud-init/fat-image.js';
import { findExecutable } from '../../src/adapters/host/programs.js';
import { MAX_METADATA_KB } from '../../src/core/limits.js';
import type { CloudInitFiles } from '../../src/core/ports.js';
import { makeTempDir } from '../helpers/daemon.js';
import { describeWith, programs } from '../helpers/prerequisites.js';

const run = promisify(execFile);
const DATE = new Date(Date.UTC(2026, 11, 3, 9, 30, 42));

async function listFiles(image: string): Promise<string[]> {
  // -b: bare listing, one `::/name` per line, long names.
  const { stdout } = await run('mdir', ['-b', '-i', image, '::']);
  return stdout
    .split('\n')
    .map((l) => l.trim().replace(/^::\//, ''))
    .filter((l) => l !== '')
    .sort();
}

async function readFileFromImage(image: string, name: string): Promise<Buffer> {
  const { stdout } = await run('mtype', ['-i', image, `::${name}`], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** fsck.fat without repairs, upper-case labels only: exit 0 and nothing but its summary line. */
async function assertCleanFsck(image: string): Promise<void> {
  const fsck = findExecutable('fsck.fat') ?? 'fsck.fat';
  const result = await run(fsck, ['-n', '-U', image]).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    assert.fail(`fsck.fat -n -U ${image} failed: ${e.stdout ?? ''}${e.stderr ?? ''}${e.message}`);
  });
  const lines = result.stdout.trim().split('\n');
  assert.equal(lines.length, 2, result.stdout);
  assert.match(lines[1] ?? '', /: \d+ files, \d+\/\d+ clusters$/, result.stdout);
}

async function blkidLabels(image: string): Promise<{ label: string; boot: string; type: string }> {
  const value = async (tag: string): Promise<string> => (await run('blkid', ['-p', '-o', 'value', '-s', tag, image])).stdout.trim();
  return { label: await value('LABEL'), boot: await value('LABEL_FATBOOT'), type: await value('TYPE') };
}

/** Every file of `files` (user-data defaulted) listed and read back byte for byte, and fsck clean. */
async function assertImageHolds(image: string, files: CloudInitFiles): Promise<void> {
  const want = new Map<string, string>();
  for (const [name, text] of Object.entries({ 'user-data': '#cloud-config\n', ...files })) if (text !== undefined) want.set(name, text);
  await assertCleanFsck(image);
  assert.deepEqual(await listFiles(image), [...want.keys()].sort());
  for (const [name, text] of want) {
    const got = await readFileFromImage(image, name);
    const expected = Buffer.from(text);
    assert.equal(got.length, expected.length, `${name}: length`);
    assert.ok(got.equals(expected), `${name}: content differs`);
  }
}

describeWith('FatCidataDiskBuilder, the image read back by mtools, fsck.fat and blkid', programs('mdir', 'mtype', 'fsck.fat', 'blkid'), {}, () => {
  let dir = '';
  before(() => {
    dir = makeTempDir('fl-cidata-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the four files byte for byte on a FAT12 disk labelled CIDATA, with a mode only root reads', async () => {
    const files: CloudInitFiles = {
      'meta-data': 'instance_id: 01HGW2N7EH00000000000000AA\nlocal_hostname: vm1\n',
      'user-data': '#cloud-config\nhostname: vm1\nwrite_files:\n  - path: /etc/motd\n    content: "héllo wörld ✓"\n',
      'vendor-data': '#cloud-config\nmounts:\n  - ["/dev/vdb", "/data", "auto", "defaults,nofail"]\n',
      'network-config': 'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "02:00:00:00:00:01"\n    dhcp4: true\n',
    };
    const sub = join(dir, 'four');
    await mkdir(sub);
    const image = join(sub, 'cidata.img');
    await new FatCidataDiskBuilder().build(image, files);

    assert.equal(CIDATA_LABEL, 'CIDATA');
    // Both places a label lives: the root directory's volume entry (LABEL) and the boot sector.
    assert.deepEqual(await blkidLabels(image), { label: 'CIDATA', boot: 'CIDATA', type: 'vfat' });
    await assertImageHolds(image, files);
    const { stdout } = await run(findExecutable('fsck.fat') ?? 'fsck.fat', ['-n', '-v', image]);
    assert.match(stdout, /12 bit entries/);
    assert.equal(statSync(image).mode & 0o777, 0o600);
    // Only the image is left in the directory: no partial image.
    assert.deepEqual(await readdir(sub), ['cidata.img']);
  });

  it('adds an empty #cloud-config user-data when none is given, and replaces an existing image', async () => {
    const image = join(dir, 'replace.img');
    await writeFile(image, 'old content');
    await new FatCidataDiskBuilder().build(image, { 'meta-data': 'instance_id: a\n' });
    assert.deepEqual(await listFiles(image), ['meta-data', 'user-data']);
    assert.equal((await readFileFromImage(image, 'user-data')).toString(), '#cloud-config\n');
    await assertImageHolds(image, { 'meta-data': 'instance_id: a\n' });
  });

  it('empty, one-byte, cluster-boundary, multi-cluster and maximum-size files, byte for byte', async () => {
    // The largest file the API lets through: all of maximum-metadata-kb's ceiling in one value.
    const max = MAX_METADATA_KB * 1024;
    const cases: [string, CloudInitFiles][] = [
      ['empty', { 'meta-data': '', 'user-data': '', 'vendor-data': '', 'network-config': '' }],
      ['one byte', { 'meta-data': 'a', 'user-data': 'b', 'vendor-data': 'c', 'network-config': 'd' }],
      ['cluster edges', { 'meta-data': 'm'.repeat(512), 'user-data': 'u'.repeat(513), 'vendor-data': 'v'.repeat(511), 'network-config': 'n'.repeat(1024) }],
      ['multi-cluster', { 'meta-data': 'instance_id: x\n', 'user-data': `#cloud-config\n${'0123456789abcdef'.repeat(4000)}` }],
      ['maximum size', { 'meta-data': 'instance_id: x\n', 'user-data': `#cloud-config\n${'é'.repeat(max / 2 - 7)}` }],
    ];
    for (const [what, files] of cases) {
      const image = join(dir, `sizes-${what.replace(/ /g, '-')}.img`);
      await new FatCidataDiskBuilder().build(image, files);
      await assertImageHolds(image, files);
    }
    assert.equal(Buffer.byteLength(cases[4]?.[1]['user-data'] ?? ''), max);
  });

  it('switches to FAT16 when FAT12 cannot count the clusters, and the tools still agree', async () => {
    const g = fatGeometry([17 * 1024 * 1024], 16);
    assert.equal(g.fatBits, 16);
    assert.ok(g.clusters >= 4085 && g.clusters <= 65524, String(g.clusters));
    const data = Buffer.alloc(17 * 1024 * 1024 + 3);
    for (let i = 0; i + 4 <= data.length; i += 4096) data.writeUInt32LE(i, i);
    const image = join(dir, 'fat16.img');
    await writeFile(
      image,
      fatImage(
        [
          { name: 'user-data', data },
          { name: 'meta-data', data: Buffer.from('instance_id: x\n') },
        ],
        { label: 'CIDATA', volumeId: 1, date: DATE },
      ),
    );
    await assertCleanFsck(image);
    const { stdout } = await run(findExecutable('fsck.fat') ?? 'fsck.fat', ['-n', '-v', image]);
    assert.match(stdout, /16 bit entries/);
    assert.ok((await readFileFromImage(image, 'user-data')).equals(data));
    await rm(image);
  });

  it('property: any sizes and contents of any subset of the files read back exactly', async () => {
    const sub = join(dir, 'property');
    await mkdir(sub);
    // Sizes near the cluster sizes (512 B .. 4 KiB) are where off-by-ones live.
    const edge = fc.constantFrom(0, 1, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8192);
    const size = fc.oneof(edge, fc.integer({ min: 0, max: 20_000 }));
    // Any code points (multi-byte UTF-8, NULs; a cut pair is a lone surrogate, encoded as U+FFFD
    // by both sides), stretched to the size drawn in UTF-16 units.
    const text = fc
      .tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }), size)
      .map(([seed, n]) => seed.repeat(Math.ceil(n / seed.length)).slice(0, n));
    const files = fc.record(
      { 'meta-data': text, 'user-data': text, 'vendor-data': text, 'network-config': text },
      { requiredKeys: ['meta-data'] },
    ) as fc.Arbitrary<CloudInitFiles>;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(files, async (f) => {
        const image = join(sub, `p${n++}.img`);
        await new FatCidataDiskBuilder().build(image, f);
        await assertImageHolds(image, f);
        await rm(image);
      }),
      { numRuns: 25, seed: 11 },
    );
  });

  it('same files, date and serial: the same bytes (the builder adds nothing of its own)', async () => {
    const files: CloudInitFiles = { 'meta-data': 'instance_id: a\n', 'network-config': 'version: 2\n' };
    const options = { now: () => DATE, volumeId: () => 0x1234abcd };
    const [a, b] = [join(dir, 'det-a.img'), join(dir, 'det-b.img')];
    await new FatCidataDiskBuilder(options).build(a, files);
    await new FatCidataDiskBuilder(options).build(b, files);
    const bytes = await readFile(a);
    assert.ok(bytes.equals(await readFile(b)));
    assert.ok(bytes.equals(cidataImage(files, DATE, 0x1234abcd)));
    const { stdout } = await run('mdir', ['-i', a, '::']);
    assert.match(stdout, /Volume Serial Number is 1234-ABCD/);
    assert.match(stdout, /meta-data/);
    assert.match(stdout, /2026-12-03 +9:30/);
  });

  it('a failed write leaves neither the image nor a partial one', async () => {
    const sub = join(dir, 'failing');
    await mkdir(sub);
    // The final name is a non-empty directory: the rename fails after the image was written.
    const target = join(sub, 'cidata.img');
    await mkdir(target);
    await writeFile(join(target, 'keep'), 'x');
    await assert.rejects(new FatCidataDiskBuilder().build(target, { 'meta-data': 'a: 1\n' }), /building the cidata disk .*cidata\.img: /);
    assert.deepEqual(await readdir(sub), ['cidata.img']);
    assert.deepEqual(await readdir(target), ['keep']);
    await assert.rejects(new FatCidataDiskBuilder().build(join(sub, 'no-such-dir', 'x.img'), { 'meta-data': 'a: 1\n' }), /ENOENT/);
    assert.equal(existsSync(join(sub, 'no-such-dir')), false);
  });
});
