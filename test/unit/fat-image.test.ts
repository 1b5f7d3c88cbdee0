// The in-memory FAT image's geometry and input checks; the images themselves are read back by the
// real tools in test/integration/cidata-disk.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fatGeometry, fatImage } from '../../src/adapters/cloud-init/fat-image.js';

const OPTIONS = { label: 'CIDATA', volumeId: 7, date: new Date(Date.UTC(2026, 0, 2, 3, 4, 6)) };
const file = (name: string, size = 1): { name: string; data: Buffer } => ({ name, data: Buffer.alloc(size, 0x61) });

describe('fatGeometry', () => {
  it('property: the FAT type matches the cluster count, every cluster has a FAT entry, files fit, whole tracks', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 40 * 1024 * 1024 }), { minLength: 1, maxLength: 4 }), (sizes) => {
        const g = fatGeometry(sizes, 16);
        const clusterBytes = g.sectorsPerCluster * 512;
        const dataStart = 1 + 2 * g.fatSectors + 1;
        assert.equal(g.clusters, Math.floor((g.totalSectors - dataStart) / g.sectorsPerCluster));
        if (g.fatBits === 12) assert.ok(g.clusters <= 4084, `FAT12 with ${g.clusters} clusters`);
        else assert.ok(g.clusters >= 4085 && g.clusters <= 65524, `FAT16 with ${g.clusters} clusters`);
        const entryBytes = g.fatBits === 12 ? Math.ceil(((g.clusters + 2) * 3) / 2) : (g.clusters + 2) * 2;
        assert.ok(entryBytes <= g.fatSectors * 512);
        const needed = sizes.reduce((sum, s) => sum + Math.ceil(s / clusterBytes), 0);
        assert.ok(needed <= g.clusters);
        assert.equal(g.totalSectors % 32, 0);
      }),
      { seed: 11, numRuns: 300 },
    );
  });

  it('small files: FAT12 with 512-byte clusters and a 16 KiB image', () => {
    const g = fatGeometry([300, 14, 0, 200], 16);
    assert.deepEqual({ bits: g.fatBits, spc: g.sectorsPerCluster, bytes: g.totalSectors * 512 }, { bits: 12, spc: 1, bytes: 16384 });
  });

  it('refuses what FAT16 cannot hold', () => {
    assert.throws(() => fatGeometry([3 * 1024 * 1024 * 1024], 16), /do not fit a FAT16 filesystem/);
  });
});

describe('fatImage', () => {
  it('refuses names that are not plain long names, duplicates ignoring case, and labels that are not upper case', () => {
    for (const name of ['', '.hidden', 'a/b', 'a b', 'x'.repeat(256), 'naïve', 'a:b']) {
      assert.throws(() => fatImage([file(name)], OPTIONS), /file name .* is not allowed/, name);
    }
    assert.throws(() => fatImage([file('user-data'), file('USER-DATA')], OPTIONS), /given twice/);
    for (const label of ['cidata', '', 'TWELVE_CHARS', 'CI DATA']) {
      assert.throws(() => fatImage([file('a')], { ...OPTIONS, label }), /label .* is not/, label);
    }
  });

  it('lays out the boot sector, both FATs and the root directory as the specification says', () => {
    const image = fatImage([file('meta-data', 600), file('README.TXT', 3), file('empty', 0)], OPTIONS);
    assert.equal(image.readUInt16LE(510), 0xaa55);
    assert.equal(image.toString('latin1', 43, 54), 'CIDATA     ');
    assert.equal(image.toString('latin1', 54, 62), 'FAT12   ');
    assert.equal(image.readUInt32LE(39), 7);
    const fatSectors = image.readUInt16LE(22);
    const fat1 = image.subarray(512, 512 + fatSectors * 512);
    const fat2 = image.subarray(512 + fatSectors * 512, 512 + 2 * fatSectors * 512);
    assert.ok(fat1.equals(fat2));
    // Entries 0 and 1 (media, end of chain), meta-data in clusters 2 -> 3 (end), README.TXT in 4 (end).
    const fat12 = (n: number): number => {
      const pair = fat1.readUInt16LE(Math.floor((n * 3) / 2));
      return n % 2 === 0 ? pair & 0xfff : pair >> 4;
    };
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(fat12), [0xff8, 0xfff, 3, 0xfff, 0xfff, 0]);
    const root = image.subarray(512 + 2 * fatSectors * 512);
    const entry = (i: number): Buffer => root.subarray(i * 32, i * 32 + 32);
    assert.equal(entry(0).toString('latin1', 0, 11), 'CIDATA     ');
    assert.equal(entry(0)[11], 0x08);
    // meta-data: one long-name entry (last and first: 0x41), then META-D~1 with its checksum.
    assert.equal(entry(1)[0], 0x41);
    assert.equal(entry(1)[11], 0x0f);
    assert.equal(entry(2).toString('latin1', 0, 11), 'META-D~1   ');
    assert.equal(entry(2).readUInt16LE(26), 2);
    assert.equal(entry(2).readUInt32LE(28), 600);
    // 2026-01-02 03:04:06 UTC in DOS format.
    assert.equal(entry(2).readUInt16LE(24), ((2026 - 1980) << 9) | (1 << 5) | 2);
    assert.equal(entry(2).readUInt16LE(22), (3 << 11) | (4 << 5) | 3);
    // README.TXT is plain 8.3: no long-name entry.
    assert.equal(entry(3).toString('latin1', 0, 11), 'README  TXT');
    assert.equal(entry(3).readUInt16LE(26), 4);
    // An empty file has no cluster.
    assert.equal(entry(5).toString('latin1', 0, 11), 'EMPTY~1    ');
    assert.equal(entry(5).readUInt16LE(26), 0);
    assert.equal(entry(6)[0], 0);
  });
});
