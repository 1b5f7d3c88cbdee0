// `npm run bench`: every issue-11 comparison in one run, then bench/REPORT.md (issue 11, "What to
// build" 6). Run as root, like the benches it runs (namespaces, taps, QEMU):
//
//   npm run bench                  (~20-25 min on the 2-core development machine)
//   BENCH_QUICK=1 npm run bench    (every bench at its smallest size: a smoke run of the whole chain)
//   BENCH_ONLY=network,cidata ...  (only these runs, by key; the report says it is partial)
//   BENCH_REPORT=/tmp/r.md ...     (the report written there instead of bench/REPORT.md)
//
// The code is built first (daemon-scale and vm-boot run bin/flintlockd, i.e. dist/). Then each
// bench runs on its own, one after another, as a child process with BENCH_JSON naming a file in
// a private temp dir; its output passes through to this one's. A bench writes its figures there
// (bench/report-json.ts); one that exits non-zero, is killed by its time limit or writes no JSON
// is reported as failed with its exit code and the tail of its stderr, and the runner goes on
// with the next and exits 1 at the end. A bench whose script is missing (bench/control-plane.ts
// until its branch is merged) is reported as not run. The report is rendered by bench/report.ts.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem, version } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

import { kvmSupport } from '../src/adapters/providers/host.js';
import type { BenchResult } from './report-json.js';
import { failedRuns, renderReport, type BenchRun, type MachineInfo } from './report.js';

const REPO_ROOT = resolve(import.meta.dirname, '..');
/** BENCH_REPORT=<file> writes the report elsewhere (a smoke or partial run beside a full one). */
const REPORT = resolve(REPO_ROOT, process.env['BENCH_REPORT'] ?? 'bench/REPORT.md');
const QUICK = process.env['BENCH_QUICK'] === '1';
const STDERR_TAIL_LINES = 25;

interface Plan {
  readonly key: string;
  readonly script: string;
  /** Sizes for a full run and for BENCH_QUICK=1. */
  readonly full: Record<string, string>;
  readonly quick: Record<string, string>;
  /** Killed (SIGTERM, then SIGKILL) after this long: a hung bench must not hold the run. */
  readonly limitS: number;
}

// Sizes: the whole full run in ~10-20 min on 2 cores (vm-boot 3-10 min: 20 sequential rounds of
// two TCG boots, then 20 at once; grpc-get ~2 min; image-pull and control-plane 1-2 min; the rest,
// daemon-scale at 10 000 included, under a minute each).
const PLANS: readonly Plan[] = [
  { key: 'network', script: 'bench/network.ts', full: { BENCH_N: '40' }, quick: { BENCH_N: '2' }, limitS: 300 },
  { key: 'cidata', script: 'bench/cidata.ts', full: { BENCH_N: '50' }, quick: { BENCH_N: '3' }, limitS: 300 },
  { key: 'grpc-get', script: 'bench/grpc-get.ts', full: {}, quick: { BENCH_SECONDS: '1', BENCH_ROUNDS: '1' }, limitS: 300 },
  { key: 'image-pull', script: 'bench/image-pull.ts', full: { BENCH_ROUNDS: '3' }, quick: { BENCH_ROUNDS: '1' }, limitS: 240 },
  { key: 'daemon-scale-1000', script: 'bench/daemon-scale.ts', full: { BENCH_VMS: '1000' }, quick: { BENCH_VMS: '20' }, limitS: 300 },
  // 10 000 through the API takes ~10 min (it slows down as the store grows): the store is seeded
  // by the core's create instead (BENCH_SEED=store; see bench/daemon-scale.ts).
  {
    key: 'daemon-scale-10000',
    script: 'bench/daemon-scale.ts',
    full: { BENCH_VMS: '10000', BENCH_SEED: 'store' },
    quick: { BENCH_VMS: '40', BENCH_SEED: 'store' },
    limitS: 600,
  },
  { key: 'control-plane', script: 'bench/control-plane.ts', full: {}, quick: { BENCH_VMS: '20' }, limitS: 400 },
  // Its own watchdog (BENCH_BUDGET_S) raised from 290 s: on a shared host a TCG boot takes up to
  // ~10 s, and 20 rounds boot 40 guests one after another before the 20 at once.
  { key: 'vm-boot', script: 'bench/vm-boot.ts', full: { BENCH_VMS: '20', BENCH_BUDGET_S: '600' }, quick: { BENCH_VMS: '2' }, limitS: 660 },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function machine(loadBefore: number[]): Omit<MachineInfo, 'loadAfter'> {
  const kvm = kvmSupport();
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    kernel: `${release()} (${version()})`,
    kvm: kvm.usable ? 'usable' : `not usable (${kvm.reason}): QEMU runs guests under TCG`,
    node: `node ${process.version}`,
    loadBefore,
  };
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const subject = execFileSync('git', ['log', '-1', '--format=%s'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    // The report itself is the one change a finished run leaves: not counted as dirty.
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO_ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.endsWith('bench/REPORT.md'));
    const short = subject.length > 100 ? `${subject.slice(0, 100)}…` : subject;
    return `${sha} (${short})${dirty.length > 0 ? `, with uncommitted changes in ${dirty.length} file(s)` : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** The last n lines of a text. */
const tail = (text: string, n: number): string => text.trimEnd().split('\n').slice(-n).join('\n');

let current: ReturnType<typeof spawn> | undefined;

async function runOne(plan: Plan, dir: string): Promise<BenchRun> {
  const env = QUICK ? plan.quick : plan.full;
  const base = { key: plan.key, script: plan.script, env };
  if (!existsSync(join(REPO_ROOT, plan.script))) return { ...base, status: 'missing', durationMs: 0 };
  const jsonFile = join(dir, `${plan.key}.json`);
  const t0 = performance.now();
  console.log(
    `\n=== ${plan.key}: ${Object.entries(env)
      .map(([k, v]) => `${k}=${v} `)
      .join('')}node --import tsx ${plan.script}`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', plan.script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, BENCH_JSON: jsonFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  current = child;
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => process.stdout.write(d));
  child.stderr.on('data', (d: Buffer) => {
    process.stderr.write(d);
    // Only the tail is reported; keep a bounded amount.
    stderr = (stderr + d.toString()).slice(-64 * 1024);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined && child.exitCode === null) child.kill('SIGTERM');
    // The benches clean up on SIGTERM; a bench that does not exit after that is ended.
    setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, 30_000).unref();
  }, plan.limitS * 1000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => {
    child.once('error', (e) => {
      stderr += `\n${e.message}`;
      res([null, null]);
    });
    child.once('close', (c, s) => res([c, s]));
  });
  clearTimeout(timer);
  current = undefined;
  const durationMs = performance.now() - t0;
  const failed = (reason?: string): BenchRun => ({
    ...base,
    status: 'failed',
    exitCode: code,
    signal,
    ...(reason !== undefined ? { reason } : {}),
    stderrTail: tail(stderr, STDERR_TAIL_LINES),
    durationMs,
  });
  if (timedOut) return failed(`over its ${plan.limitS} s limit`);
  if (code !== 0 || signal !== null) return failed();
  if (!existsSync(jsonFile)) return failed('wrote no BENCH_JSON');
  try {
    const result = JSON.parse(readFileSync(jsonFile, 'utf8')) as BenchResult;
    if (!Array.isArray(result.figures)) return failed('BENCH_JSON has no figures');
    return { ...base, status: 'ok', exitCode: code, durationMs, result: { ...result, notes: Array.isArray(result.notes) ? result.notes : [] } };
  } catch (e) {
    return failed(`BENCH_JSON unreadable: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function main(): Promise<void> {
  const only = (process.env['BENCH_ONLY'] ?? '').split(',').filter((s) => s !== '');
  const plans = only.length > 0 ? PLANS.filter((p) => only.includes(p.key)) : PLANS;
  if (only.length > 0 && plans.length !== only.length) throw new Error(`BENCH_ONLY names unknown runs; known: ${PLANS.map((p) => p.key).join(', ')}`);
  const tStart = performance.now();
  const date = new Date().toISOString();
  const loadBefore = loadavg();
  const facts = machine(loadBefore);
  const commit = gitCommit();
  console.log(`npm run bench${QUICK ? ' (BENCH_QUICK=1)' : ''}: ${plans.map((p) => p.key).join(', ')}`);
  console.log(`${facts.cpuModel}, ${facts.cores} cores, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; building dist/ first`);
  execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });

  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-all-'));
  const onSignal = (signal: NodeJS.Signals): void => {
    // The running bench cleans up after its own SIGTERM; then this one goes.
    if (current?.pid !== undefined && current.exitCode === null) current.kill('SIGTERM');
    void sleep(200).then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const runs: BenchRun[] = [];
  try {
    for (const plan of plans) {
      runs.push(await runOne(plan, dir));
      const last = runs.at(-1);
      if (last?.status === 'failed') console.error(`=== ${plan.key} FAILED (${last.exitCode ?? last.signal ?? '?'}); going on with the next`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const report = renderReport({
    date,
    commit,
    quick: QUICK,
    ...(only.length > 0 ? { only } : {}),
    machine: { ...facts, loadAfter: loadavg() },
    runs,
    totalMs: performance.now() - tStart,
  });
  writeFileSync(REPORT, report);
  console.log(`\n${report}\nwritten to ${REPORT}`);
  const failed = failedRuns(runs);
  if (failed.length > 0) {
    console.error(`${failed.length} bench(es) failed: ${failed.map((r) => r.key).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((e: unknown) => {
  console.error(`npm run bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
