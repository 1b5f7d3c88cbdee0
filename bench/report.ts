// bench/REPORT.md from the results of one `npm run bench` (bench/run-all.ts): a pure function of
// the runs, so the table's rows, ratios and met / not met are unit-tested
// (test/unit/bench-report.test.ts) without running a bench.
import type { BenchFigure, BenchResult } from './report-json.js';

/** One bench script run by the runner (a script may run twice, at two sizes: two keys). */
export interface BenchRun {
  /** Unique in the run: "daemon-scale-10000". */
  readonly key: string;
  /** Relative to the repository: "bench/daemon-scale.ts". */
  readonly script: string;
  /** The sizes the runner chose (BENCH_* variables). */
  readonly env: Readonly<Record<string, string>>;
  /** missing: the script does not exist; failed: non-zero exit, a signal, or no JSON written. */
  readonly status: 'ok' | 'failed' | 'missing';
  readonly exitCode?: number | null;
  readonly signal?: string | null;
  /** Why it counts as failed when its exit code alone does not say (no JSON, a timeout). */
  readonly reason?: string;
  readonly stderrTail?: string;
  readonly durationMs: number;
  readonly result?: BenchResult;
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly kvm: string;
  readonly node: string;
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
}

export interface ReportInput {
  readonly date: string;
  readonly commit: string;
  readonly quick: boolean;
  /** BENCH_ONLY: the runs asked for, when not all. */
  readonly only?: readonly string[];
  readonly machine: MachineInfo;
  readonly runs: readonly BenchRun[];
  readonly totalMs: number;
}

/** One row of issue 11's table: which run and which figure id measures it. */
export interface TableRow {
  readonly figure: string;
  readonly run: string;
  readonly id: string;
}

/** Issue 11's table, in its order (the RSS row's two goals as two rows). */
export const ISSUE_11_ROWS: readonly TableRow[] = [
  { figure: 'create -> QEMU spawned, p50', run: 'vm-boot', id: 'create-to-spawn' },
  { figure: 'tap create per device', run: 'network', id: 'tap-create' },
  { figure: 'daemon CPU per booted VM (20 at once)', run: 'vm-boot', id: 'daemon-cpu-per-vm' },
  { figure: 'control-plane rate: creates reaching CREATED per second', run: 'control-plane', id: 'rate' },
  { figure: 'pull + verify + unpack + ext4 of a 50 MB 4-layer image', run: 'image-pull', id: 'pull-ext4' },
  { figure: 'ListMicroVMs of 1000 VMs, p50', run: 'daemon-scale-1000', id: 'list-all-p50' },
  { figure: 'RSS with 10 000 stored VMs', run: 'daemon-scale-10000', id: 'rss-stored' },
  { figure: 'List of one namespace p99, 10 000 stored VMs', run: 'daemon-scale-10000', id: 'list-ns-p99' },
  { figure: 'GetMicroVM vs a bare grpc-js server (req/s)', run: 'grpc-get', id: 'get-ratio' },
  { figure: 'create -> DHCP lease overhead vs the same QEMU from a shell', run: 'vm-boot', id: 'lease-overhead' },
];

/** Three significant digits or so: 0.362, 2.69, 15.3, 138. */
export function formatNumber(v: number | null | undefined): string {
  if (v === undefined || v === null || !Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.1 || a === 0) return v.toFixed(2);
  return v.toFixed(3);
}

const withUnit = (v: number | null | undefined, unit: string): string => {
  const n = formatNumber(v);
  if (n === 'n/a' || unit === '') return n;
  return /^[%x]/.test(unit) ? `${n}${unit}` : `${n} ${unit}`;
};

/** The figure's ratio, else value / baseline when both are there. */
export function figureRatio(f: BenchFigure): number | undefined {
  if (f.ratio !== undefined && f.ratio !== null && Number.isFinite(f.ratio)) return f.ratio;
  if (f.baseline === undefined || f.baseline === null || !Number.isFinite(f.baseline) || f.baseline === 0 || !Number.isFinite(f.value)) return undefined;
  return f.value / f.baseline;
}

export const metText = (met: boolean | undefined | null): string => (met === true ? 'met' : met === false ? '**not met**' : '—');

/** A table cell: no pipes or line breaks. */
const cell = (s: string): string => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

function baselineText(f: BenchFigure): string {
  if (f.baseline === undefined || f.baseline === null) return f.baselineLabel ?? '—';
  const v = withUnit(f.baseline, f.unit);
  return f.baselineLabel !== undefined ? `${v} (${f.baselineLabel})` : v;
}

function figureCells(f: BenchFigure): string[] {
  const ratio = figureRatio(f);
  return [withUnit(f.value, f.unit), baselineText(f), ratio === undefined ? '—' : formatNumber(ratio), f.goal ?? '—', metText(f.met)];
}

/** What a row says when its run gave no figure. */
function absentCells(run: BenchRun | undefined, id: string): string[] {
  const why =
    run === undefined
      ? 'not run'
      : run.status === 'missing'
        ? `not run: ${run.script} missing`
        : run.status === 'failed'
          ? `failed: ${failureSummary(run)}`
          : `not reported (no figure "${id}")`;
  return [why, '—', '—', '—', '—'];
}

export function failureSummary(run: BenchRun): string {
  const how = run.signal !== undefined && run.signal !== null ? `signal ${run.signal}` : `exit code ${run.exitCode ?? '?'}`;
  return run.reason !== undefined ? `${how}, ${run.reason}` : how;
}

/** The failed runs: the ones that make the runner exit non-zero. */
export const failedRuns = (runs: readonly BenchRun[]): BenchRun[] => runs.filter((r) => r.status === 'failed');

const loads = (l: readonly number[]): string => l.map((x) => x.toFixed(2)).join(' / ');
const minutes = (ms: number): string => `${(ms / 60_000).toFixed(1)} min`;
const envText = (env: Readonly<Record<string, string>>): string =>
  Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

export function renderReport(input: ReportInput, rows: readonly TableRow[] = ISSUE_11_ROWS): string {
  const { machine: m } = input;
  const byKey = new Map(input.runs.map((r) => [r.key, r]));
  const used = new Set(rows.map((r) => `${r.run}\0${r.id}`));
  const out: string[] = [];
  out.push('# Benchmark report (issue 11)', '');
  out.push(
    `Made by \`npm run bench\` (bench/run-all.ts)${input.quick ? ' with **BENCH_QUICK=1**: every bench at its smallest size, a smoke run; the figures are not comparable with the goals' : ''}.`,
  );
  if (input.only !== undefined && input.only.length > 0) out.push(`**Partial run** (BENCH_ONLY=${input.only.join(',')}): the other benches were not run.`);
  out.push('');
  out.push(`- date: ${input.date}`);
  out.push(`- git commit: ${input.commit}`);
  out.push(`- machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB memory, kernel ${m.kernel}, ${m.node}`);
  out.push(`- KVM: ${m.kvm}`);
  out.push(`- load average (1 / 5 / 15 min): before ${loads(m.loadBefore)}, after ${loads(m.loadAfter)}`);
  out.push(`- whole run: ${minutes(input.totalMs)}; benches one after another, each in its own process; ours and its baseline alternate inside each bench`);
  out.push('');
  out.push('## Issue 11 figures', '');
  out.push('| figure | ours | baseline | ratio | goal | met |', '|---|---|---|---|---|---|');
  for (const row of rows) {
    const run = byKey.get(row.run);
    const f = run?.status === 'ok' ? run.result?.figures.find((x) => x.id === row.id) : undefined;
    out.push(`| ${[row.figure, ...(f !== undefined ? figureCells(f) : absentCells(run, row.id))].map(cell).join(' | ')} |`);
  }
  const met = rows.filter((row) => byKey.get(row.run)?.result?.figures.find((x) => x.id === row.id)?.met === true).length;
  out.push('', `${met} of ${rows.length} goals met.`, '');

  const extras = input.runs.flatMap((run) =>
    run.status === 'ok' ? (run.result?.figures ?? []).filter((f) => !used.has(`${run.key}\0${f.id}`)).map((f) => ({ run, f })) : [],
  );
  if (extras.length > 0) {
    out.push('## Other figures', '');
    out.push('| bench | figure | ours | baseline | ratio | goal | met |', '|---|---|---|---|---|---|---|');
    for (const { run, f } of extras) out.push(`| ${[run.key, f.label, ...figureCells(f)].map(cell).join(' | ')} |`);
    out.push('');
  }

  out.push('## Benches', '');
  out.push('| bench | script | sizes | result | time |', '|---|---|---|---|---|');
  for (const run of input.runs) {
    const result = run.status === 'ok' ? 'ok' : run.status === 'missing' ? 'not run: missing' : `**failed** (${failureSummary(run)})`;
    out.push(
      `| ${[run.key, run.script, envText(run.env) || 'defaults', result, run.status === 'missing' ? '—' : `${(run.durationMs / 1000).toFixed(0)} s`].map(cell).join(' | ')} |`,
    );
  }
  out.push('');

  for (const run of input.runs) {
    const notes = run.result?.notes ?? [];
    if (run.status === 'missing') {
      out.push(`### ${run.key}`, '', `Not run: ${run.script} missing.`, '');
      continue;
    }
    if (run.status === 'failed') {
      out.push(
        `### ${run.key}: failed`,
        '',
        `${run.script} failed (${failureSummary(run)}) after ${(run.durationMs / 1000).toFixed(0)} s. The tail of its stderr:`,
        '',
      );
      out.push('```', (run.stderrTail ?? '').trimEnd() || '(empty)', '```', '');
      continue;
    }
    if (notes.length === 0) continue;
    out.push(`### ${run.key}`, '');
    for (const note of notes) out.push(`- ${note}`);
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
