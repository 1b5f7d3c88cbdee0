// The cidata disk, old way vs new (issue 11, part 2): `node --import tsx bench/cidata.ts`
// (BENCH_N=50 rounds; BENCH_DIR, default the temp dir: put it on the state dir's filesystem).
//
//   old: what FatCidataDiskBuilder did until issue 11 (kept here only): mkfs.vfat -C makes the
//        image, each file is written to a staging dir and copied in with one mcopy, rename into
//        place; no fsync.
//   new: FatCidataDiskBuilder: the FAT image built in memory, one open/write/fsync, rename.
//   new, no fsync: the same image and write without the fsync (what the fsync itself costs).
//   image in memory: cidataImage() alone (the pure FAT layout, no I/O).
//
// Each round runs every way once, alternating, on the same files: a typical VM's meta-data,
// user-data and network-config (~0.5 KiB), and in a second set a 3 MiB user-data (the metadata
// ceiling, MAX_METADATA_KB). Medians and p90 of N; each image is read back with mtype once per
// way (the old and new agree on every byte). Runs no network, needs mkfs.vfat and mcopy.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

import { cidataImage, FatCidataDiskBuilder } from '../src/adapters/cloud-init/cidata-disk.js';
import { findExecutable } from '../src/adapters/host/programs.js';
import { EMPTY_CLOUD_CONFIG } from '../src/core/cloud-init.js';
import { MAX_METADATA_KB } from '../src/core/limits.js';
import type { CloudInitFiles } from '../src/core/ports.js';
import { envInt } from './env.js';
import { ratioOf, writeBenchJson, type BenchFigure } from './report-json.js';

const run = promisify(execFile);
const N = envInt('BENCH_N', 50, 3, 1000);
const ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** The pre-issue-11 builder, verbatim in what it runs. */
async function oldBuild(mkfs: string, mcopy: string, path: string, files: CloudInitFiles): Promise<void> {
  const contents = new Map<string, string>();
  for (const name of ['meta-data', 'user-data', 'vendor-data', 'network-config'] as const) {
    const value = files[name];
    if (value !== undefined) contents.set(name, value);
  }
  if (!contents.has('user-data')) contents.set('user-data', EMPTY_CLOUD_CONFIG);
  const data = [...contents.values()].reduce((sum, c) => sum + Math.ceil(Math.max(Buffer.byteLength(c), 1) / 4096) * 4, 0);
  const kib = Math.max(1024, Math.ceil(data * 1.1) + 256);
  const dir = dirname(path);
  const partial = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`);
  const staging = await mkdtemp(join(dir, `.${basename(path)}.files-`));
  try {
    await run(mkfs, ['-n', 'cidata', '-C', partial, String(kib)], { env: ENV });
    for (const [name, text] of contents) {
      const source = join(staging, name);
      await writeFile(source, text);
      await run(mcopy, ['-o', '-i', partial, source, `::${name}`], { env: ENV });
    }
    await rename(partial, path);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** The new way without its fsync: only to show what the fsync costs. */
async function newBuildNoSync(path: string, files: CloudInitFiles): Promise<void> {
  const image = cidataImage(files, new Date(), randomBytes(4).readUInt32LE(0));
  const partial = `${path}.${randomBytes(4).toString('hex')}.partial`;
  const fh = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await fh.write(image, 0, image.length, 0);
  } finally {
    await fh.close();
  }
  await rename(partial, path);
}

const TYPICAL: CloudInitFiles = {
  'meta-data': 'instance_id: ns1/vm1/01JDZQ4X8V3KJ2M9R7T5W1Y6BC\nlocal_hostname: vm1\nplatform: liquid_metal\n',
  'user-data':
    '#cloud-config\nhostname: vm1\nusers:\n  - name: root\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0a8Jm5y0bench bench@host\nfinal_message: booted\n',
  'network-config':
    'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "02:00:00:00:00:01"\n    dhcp4: true\n  eth1:\n    match:\n      macaddress: "02:00:00:00:00:02"\n    addresses:\n      - "10.0.0.2/24"\n',
};
const LARGE: CloudInitFiles = { 'meta-data': TYPICAL['meta-data'], 'user-data': `#cloud-config\n${'x'.repeat(MAX_METADATA_KB * 1024 - 14)}` };

interface Way {
  readonly name: string;
  readonly build: (path: string, files: CloudInitFiles) => Promise<void>;
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

async function main(): Promise<void> {
  const mkfs = findExecutable('mkfs.vfat');
  const mcopy = findExecutable('mcopy');
  if (mkfs === undefined || mcopy === undefined) throw new Error('needs mkfs.vfat (dosfstools) and mcopy (mtools) for the old way');
  const dir = await mkdtemp(join(process.env['BENCH_DIR'] ?? tmpdir(), 'fl-bench-cidata-'));
  const fsType = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
  const builder = new FatCidataDiskBuilder();
  const ways: Way[] = [
    { name: 'old: mkfs.vfat + mcopy per file', build: (p, f) => oldBuild(mkfs, mcopy, p, f) },
    { name: 'new: in-process, write + fsync', build: (p, f) => builder.build(p, f) },
    { name: 'new without the fsync', build: newBuildNoSync },
    {
      name: 'image in memory only',
      build: (_p, f) => {
        cidataImage(f, new Date(), 1);
        return Promise.resolve();
      },
    },
  ];
  const rows: string[] = [];
  const figures: BenchFigure[] = [];
  const notes: string[] = [];
  try {
    for (const [setName, files, id] of [
      ['typical (~0.5 KiB)', TYPICAL, 'cidata-typical'],
      [`maximum (${MAX_METADATA_KB} KiB user-data)`, LARGE, 'cidata-max'],
    ] as const) {
      const times = new Map<string, number[]>(ways.map((w) => [w.name, []]));
      for (let round = 0; round < N; round++) {
        for (const way of round % 2 === 0 ? ways : [...ways].reverse()) {
          const path = join(dir, `cidata-${round}.img`);
          const t0 = performance.now();
          await way.build(path, files);
          times.get(way.name)?.push(performance.now() - t0);
          if (round === 0 && way.name !== 'image in memory only') {
            const { stdout } = await run('mtype', ['-i', path, '::user-data'], { env: ENV, encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
            if (!stdout.equals(Buffer.from(files['user-data'] ?? ''))) throw new Error(`${way.name}: user-data read back differs`);
          }
          await rm(path, { force: true });
        }
      }
      const oldMedian = quantile(times.get(ways[0]?.name ?? '') ?? [], 0.5);
      const newMedian = quantile(times.get(ways[1]?.name ?? '') ?? [], 0.5);
      const ratio = ratioOf(newMedian, oldMedian);
      figures.push({
        id,
        label: `cidata disk, ${setName}: in-process FAT image, write + fsync, rename (median of ${N})`,
        value: newMedian,
        unit: 'ms',
        baseline: oldMedian,
        baselineLabel: 'mkfs.vfat -C + one mcopy per file, rename (the pre-issue-11 way)',
        ...(ratio !== undefined ? { ratio } : {}),
      });
      for (const way of ways) {
        const t = times.get(way.name) ?? [];
        const median = quantile(t, 0.5);
        rows.push(`| ${setName} | ${way.name} | ${median.toFixed(3)} | ${quantile(t, 0.9).toFixed(3)} | ${(median / oldMedian).toFixed(3)} |`);
        notes.push(
          `${setName}, ${way.name}: median ${median.toFixed(3)} ms, p90 ${quantile(t, 0.9).toFixed(3)} ms, ${(median / oldMedian).toFixed(3)} of the old way`,
        );
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`cidata disk, ms per disk, N=${N} rounds alternating, on ${fsType} (${dir})\n`);
  console.log('| files | way | median ms | p90 ms | / old |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  writeBenchJson('cidata', figures, [
    `Not a row of issue 11's table (part of create -> QEMU spawned); ${N} rounds, the four ways alternating in each, on ${fsType}.`,
    ...notes,
  ]);
}

await main();
