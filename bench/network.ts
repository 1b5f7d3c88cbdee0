// Cost of host-device plumbing: Iproute2NetworkService (long-lived `ip -batch` processes, issue
// 11) vs. the same service starting `ip` per call (before issue 11: 2 batch processes per create)
// vs. the kernel's floor (`ip -batch`, all N in one process) vs. one `ip` process per operation.
// Run as root: `node --import tsx bench/network.ts` (BENCH_N=20).
//
// Everything happens in a private network namespace created here and deleted at the end, also on
// error or Ctrl-C. Each way does N rounds of "create + attach + up + delete" for a tap on br0 and
// a macvtap on the veth eth0; create and delete are timed apart because deletes are dominated by
// the kernel's RCU wait (~20 ms), which no user-space strategy can avoid.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

import { Iproute2NetworkService } from '../src/adapters/network/iproute2.js';
import { ratioOf, writeBenchJson, type BenchFigure } from './report-json.js';

const execFileAsync = promisify(execFile);

// Bounded: about 3 x 2 x N x ~50 ms, so the default finishes in seconds and the cap in < 2 min.
const MAX_N = 300;
const N = Math.min(MAX_N, Math.max(1, Number.parseInt(process.env['BENCH_N'] ?? '20', 10) || 20));
const NS = `flbench-${process.pid}-${randomBytes(3).toString('hex')}`;
const ALIAS = 'flintlock:bench/vm/01JDZQ4X8V3KJ2M9R7T5W1Y6BC';

interface Timing {
  create: number;
  delete: number;
  procs: number;
}
interface WayResult {
  way: string;
  tap: Timing;
  macvtap: Timing;
}

async function ip(...args: string[]): Promise<void> {
  await execFileAsync('ip', ['-n', NS, ...args]);
}

const tapName = (way: string, i: number): string => `t${way}${i}`;
const mvtapName = (way: string, i: number): string => `m${way}${i}`;
const macFor = (i: number): string => `02:be:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function viaService(batchProcesses: boolean): Promise<WayResult> {
  const net = new Iproute2NetworkService({ netns: NS, batchProcesses });
  const w = batchProcesses ? 's' : 'o';
  const tap: Timing = { create: 0, delete: 0, procs: 0 };
  const macvtap: Timing = { create: 0, delete: 0, procs: 0 };
  for (let i = 0; i < N; i++) {
    tap.create += await timed(async () => void (await net.ensureTap({ name: tapName(w, i), bridge: 'br0', alias: ALIAS })));
    tap.delete += await timed(() => net.deleteLink(tapName(w, i)));
    macvtap.create += await timed(async () => void (await net.ensureMacvtap({ name: mvtapName(w, i), parent: 'eth0', mac: macFor(i), alias: ALIAS })));
    macvtap.delete += await timed(() => net.deleteLink(mvtapName(w, i)));
  }
  net.close();
  // Before: read (1 batch) + create/configure/show (1 batch) + delete (1). Now: three processes in all.
  tap.procs = macvtap.procs = batchProcesses ? 3 / N : 3 * N;
  return { way: batchProcesses ? '(a) service, ip -batch co-processes' : '(a0) service, ip per call (before)', tap, macvtap };
}

async function viaBatch(dir: string, parentMtu: number, parentTxqlen: number): Promise<WayResult> {
  const run = async (lines: string[]): Promise<number> => {
    const file = join(dir, `batch-${randomBytes(4).toString('hex')}`);
    await writeFile(file, lines.join('\n') + '\n');
    return timed(() => ip('-batch', file));
  };
  const range = Array.from({ length: N }, (_, i) => i);
  const tap: Timing = {
    create: await run(range.flatMap((i) => [`tuntap add dev ${tapName('b', i)} mode tap`, `link set dev ${tapName('b', i)} master br0 alias "${ALIAS}" up`])),
    delete: await run(range.map((i) => `link del dev ${tapName('b', i)}`)),
    procs: 2,
  };
  const macvtap: Timing = {
    create: await run(
      range.flatMap((i) => [
        `link add link eth0 name ${mvtapName('b', i)} address ${macFor(i)} mtu ${parentMtu} txqueuelen ${parentTxqlen} up type macvtap mode bridge`,
        `link set dev ${mvtapName('b', i)} alias "${ALIAS}"`,
      ]),
    ),
    delete: await run(range.map((i) => `link del dev ${mvtapName('b', i)}`)),
    procs: 2,
  };
  return { way: '(b) ip -batch, all N in 1 process', tap, macvtap };
}

async function viaPerOp(parentMtu: number, parentTxqlen: number): Promise<WayResult> {
  const tap: Timing = { create: 0, delete: 0, procs: 3 * N };
  const macvtap: Timing = { create: 0, delete: 0, procs: 3 * N };
  for (let i = 0; i < N; i++) {
    const t = tapName('p', i);
    tap.create += await timed(async () => {
      await ip('tuntap', 'add', 'dev', t, 'mode', 'tap');
      await ip('link', 'set', 'dev', t, 'master', 'br0', 'alias', ALIAS, 'up');
    });
    tap.delete += await timed(() => ip('link', 'del', 'dev', t));
    const m = mvtapName('p', i);
    macvtap.create += await timed(async () => {
      await ip(
        'link',
        'add',
        'link',
        'eth0',
        'name',
        m,
        'address',
        macFor(i),
        'mtu',
        String(parentMtu),
        'txqueuelen',
        String(parentTxqlen),
        'type',
        'macvtap',
        'mode',
        'bridge',
      );
      await ip('link', 'set', 'dev', m, 'alias', ALIAS, 'up');
    });
    macvtap.delete += await timed(() => ip('link', 'del', 'dev', m));
  }
  return { way: '(c) 1 ip process per operation', tap, macvtap };
}

function fmt(ms: number): string {
  return ms.toFixed(2).padStart(8);
}

function report(results: WayResult[]): void {
  const perDev = (t: Timing): [number, number, number] => [t.create / N, t.delete / N, (t.create + t.delete) / N];
  console.log(`\nN=${N} devices of each kind per way; ms per device (netns ${NS})\n`);
  console.log(`${'way'.padEnd(36)}| ${'tap:'.padEnd(8)} create   delete    total | ${'macvtap:'.padEnd(8)} create   delete    total | ip procs/dev`);
  console.log('-'.repeat(36) + '|' + '-'.repeat(35) + '|' + '-'.repeat(35) + '|' + '-'.repeat(13));
  for (const r of results) {
    const [tc, td, tt] = perDev(r.tap);
    const [mc, md, mt] = perDev(r.macvtap);
    console.log(
      `${r.way.padEnd(36)}| ${''.padEnd(8)}${fmt(tc)} ${fmt(td)} ${fmt(tt)} | ${''.padEnd(8)}${fmt(mc)} ${fmt(md)} ${fmt(mt)} | ${(r.tap.procs / N).toFixed(2).padStart(8)}`,
    );
  }
  const [svc, batch, perOp, before] = results;
  if (svc === undefined || batch === undefined || perOp === undefined || before === undefined) return;
  const ratio = (a: Timing, b: Timing, part: 'create' | 'delete' | 'total'): string => {
    const v = (t: Timing): number => (part === 'total' ? t.create + t.delete : t[part]);
    return `${(v(a) / v(b)).toFixed(2)}x`;
  };
  console.log('\nratios (lower is better for the service)');
  for (const [label, other] of [
    ['service / batch ', batch],
    ['service / per-op', perOp],
    ['service / before', before],
  ] as const) {
    console.log(
      `${label}  tap: create ${ratio(svc.tap, other.tap, 'create')}, delete ${ratio(svc.tap, other.tap, 'delete')}, total ${ratio(svc.tap, other.tap, 'total')}` +
        `   macvtap: create ${ratio(svc.macvtap, other.macvtap, 'create')}, delete ${ratio(svc.macvtap, other.macvtap, 'delete')}, total ${ratio(svc.macvtap, other.macvtap, 'total')}`,
    );
  }
}

/** The figures for `npm run bench`: tap (and macvtap) create per device, the service vs the ip -batch floor. */
function writeFigures(results: WayResult[]): void {
  const [svc, batch, perOp, before] = results;
  if (svc === undefined || batch === undefined || perOp === undefined || before === undefined) return;
  const GOAL = 2;
  const figure = (id: string, label: string, ours: Timing, floor: Timing): BenchFigure => {
    const ratio = ratioOf(ours.create / N, floor.create / N);
    return {
      id,
      label,
      value: ours.create / N,
      unit: 'ms',
      baseline: floor.create / N,
      baselineLabel: `ip -batch floor: all ${N} in one ip process`,
      ...(ratio !== undefined ? { ratio } : {}),
      goal: `<= ${GOAL}x the floor`,
      met: ratio !== undefined && ratio <= GOAL,
    };
  };
  const per = (t: Timing, part: 'create' | 'delete'): string => `${(t[part] / N).toFixed(2)} ms`;
  writeBenchJson(
    'network',
    [
      figure('tap-create', `tap create per device (create + master + alias + up), N=${N}`, svc.tap, batch.tap),
      figure('macvtap-create', `macvtap create per device (create + mac + alias + up), N=${N}`, svc.macvtap, batch.macvtap),
    ],
    [
      `ours: Iproute2NetworkService with its long-lived ip -batch co-processes; floor: one ip -batch process for all ${N} devices; run one after the other (service first), not interleaved.`,
      `tap create per device: service ${per(svc.tap, 'create')}, floor ${per(batch.tap, 'create')}, one ip process per operation ${per(perOp.tap, 'create')}, the service starting ip per call (before issue 11) ${per(before.tap, 'create')}.`,
      `delete per device (the kernel's RCU wait dominates): tap ${per(svc.tap, 'delete')} (floor ${per(batch.tap, 'delete')}), macvtap ${per(svc.macvtap, 'delete')} (floor ${per(batch.macvtap, 'delete')}).`,
    ],
  );
}

let nsCreated = false;
function deleteNamespaceSync(): void {
  if (!nsCreated) return;
  nsCreated = false;
  try {
    execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/network.ts needs root (it creates a network namespace)');
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      deleteNamespaceSync();
      process.kill(process.pid, signal);
    });
  }
  process.once('exit', deleteNamespaceSync);

  const dir = await mkdtemp(join(tmpdir(), 'flbench-'));
  execFileSync('ip', ['netns', 'add', NS]);
  nsCreated = true;
  try {
    await ip('link', 'set', 'lo', 'up');
    await ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    await ip('link', 'set', 'eth0', 'up');
    await ip('link', 'set', 'eth0p', 'up');
    await ip('link', 'add', 'br0', 'type', 'bridge');
    await ip('link', 'set', 'br0', 'up');
    const parent = await new Iproute2NetworkService({ netns: NS }).getLink('eth0');
    if (parent === undefined) throw new Error('eth0 missing in bench namespace');

    // Warm up: page cache for ip and its libraries, the module graph, the JIT.
    const warm = new Iproute2NetworkService({ netns: NS });
    for (let i = 0; i < 3; i++) {
      await warm.ensureTap({ name: `tw${i}`, bridge: 'br0', alias: ALIAS });
      await warm.ensureMacvtap({ name: `mw${i}`, parent: 'eth0', alias: ALIAS });
      await warm.deleteLink(`tw${i}`);
      await warm.deleteLink(`mw${i}`);
    }

    const results = [
      await viaService(true),
      await viaBatch(dir, parent.mtu, parent.txqlen),
      await viaPerOp(parent.mtu, parent.txqlen),
      await viaService(false),
    ];
    report(results);
    writeFigures(results);
  } finally {
    deleteNamespaceSync();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
