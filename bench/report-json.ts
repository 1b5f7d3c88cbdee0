// The JSON every bench writes for `npm run bench` (bench/run-all.ts), in one place. When BENCH_JSON
// names a file, a bench writes it once, at its end, besides its usual human output:
//
//   { "bench": "network",                                  the script's base name
//     "figures": [{ "id": "tap-create",                    stable, unique in the bench
//                   "label": "tap create per device",      the issue-11 row (or a sub-figure)
//                   "value": 2.69, "unit": "ms",           the median (or the figure's statistic)
//                   "baseline": 1.01, "baselineLabel": "ip -batch floor",   optional, same run
//                   "ratio": 2.67, "goal": "<= 2x the floor", "met": false }],  optional
//     "notes": ["breakdowns, where the time goes, caveats"] }
import { writeFileSync } from 'node:fs';

export interface BenchFigure {
  /** Stable, unique in its bench: the runner finds issue 11's rows by it. */
  readonly id: string;
  /** The issue-11 table row it measures (or a sub-figure), with the size it was measured at. */
  readonly label: string;
  /** The measured median (or the figure's own statistic: p50, p99, a rate). */
  readonly value: number;
  readonly unit: string;
  /** The baseline measured in the same run, in the same unit. */
  readonly baseline?: number;
  readonly baselineLabel?: string;
  /** value / baseline (or the figure's own ratio, e.g. an overhead in %, when unit says so). */
  readonly ratio?: number;
  readonly goal?: string;
  readonly met?: boolean;
}

export interface BenchResult {
  /** The script's base name: "network" for bench/network.ts. */
  readonly bench: string;
  readonly figures: readonly BenchFigure[];
  readonly notes: readonly string[];
}

/** JSON has no NaN or Infinity: a figure that could not be measured is written as null. */
const finite = (_key: string, v: unknown): unknown => (typeof v === 'number' && !Number.isFinite(v) ? null : v);

/** Writes the bench's figures to $BENCH_JSON, if set; returns whether it wrote. */
export function writeBenchJson(bench: string, figures: readonly BenchFigure[], notes: readonly string[] = [], file = process.env['BENCH_JSON']): boolean {
  if (file === undefined || file === '') return false;
  const result: BenchResult = { bench, figures, notes };
  writeFileSync(file, `${JSON.stringify(result, finite, 2)}\n`);
  return true;
}

/** Whether a run of `npm run bench` asked for the smallest sizes (a smoke run). */
export const benchQuick = (): boolean => process.env['BENCH_QUICK'] === '1';

/** The ratio, when both sides are finite and the baseline is not zero. */
export function ratioOf(value: number, baseline: number): number | undefined {
  return Number.isFinite(value) && Number.isFinite(baseline) && baseline !== 0 ? value / baseline : undefined;
}
