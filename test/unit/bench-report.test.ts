import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { writeBenchJson, type BenchFigure } from '../../bench/report-json.js';
import { failedRuns, figureRatio, formatNumber, ISSUE_11_ROWS, renderReport, type BenchRun, type ReportInput } from '../../bench/report.js';

const machine = {
  cpuModel: 'Test CPU @ 2.0GHz',
  cores: 2,
  memoryGiB: 23.5,
  kernel: '6.1.0-test',
  kvm: 'not usable (/dev/kvm is served by kvm_pvm): QEMU runs guests under TCG',
  node: 'node v20.20.2',
  loadBefore: [1.5, 1.25, 1],
  loadAfter: [3, 2, 1.5],
};

const ok = (key: string, figures: BenchFigure[], notes: string[] = [], script = `bench/${key}.ts`): BenchRun => ({
  key,
  script,
  env: {},
  status: 'ok',
  exitCode: 0,
  durationMs: 12_000,
  result: { bench: key, figures, notes },
});

const tapCreate: BenchFigure = {
  id: 'tap-create',
  label: 'tap create per device',
  value: 2.69,
  unit: 'ms',
  baseline: 1.01,
  baselineLabel: 'ip -batch floor',
  goal: '<= 2x the floor',
  met: false,
};

function input(runs: BenchRun[]): ReportInput {
  return { date: '2026-12-03T12:00:00.000Z', commit: 'abc123 (a commit)', quick: false, machine, runs, totalMs: 20 * 60_000 };
}

/** The issue-11 table's line for a figure, split into cells (figure, ours, baseline, ratio, goal, met). */
function rowOf(report: string, figure: string): string[] {
  const line = report.split('\n').find((l) => l.startsWith(`| ${figure} |`));
  assert.ok(line !== undefined, `no row for ${figure} in:\n${report}`);
  return line
    .slice(2, -2)
    .split(' | ')
    .map((c) => c.trim());
}

describe('bench report', () => {
  it('has one row per issue-11 figure, in the issue order, with the machine and the commit', () => {
    const report = renderReport(input([]));
    const table = report.split('## Issue 11 figures')[1]?.split('\n\n')[1]?.split('\n') ?? [];
    assert.deepEqual(
      table.slice(2).map((l) => l.split(' | ')[0]?.slice(2)),
      ISSUE_11_ROWS.map((r) => r.figure),
    );
    assert.equal(ISSUE_11_ROWS.length, 10);
    assert.match(report, /Test CPU @ 2\.0GHz, 2 cores, 23\.5 GiB memory, kernel 6\.1\.0-test/);
    assert.match(report, /KVM: not usable/);
    assert.match(report, /before 1\.50 \/ 1\.25 \/ 1\.00, after 3\.00 \/ 2\.00 \/ 1\.50/);
    assert.match(report, /git commit: abc123/);
    assert.match(report, /date: 2026-12-03T12:00:00\.000Z/);
  });

  it('shows ours, the baseline with what it is, the ratio computed from them, the goal and not met', () => {
    const report = renderReport(input([ok('network', [tapCreate])]));
    assert.deepEqual(rowOf(report, 'tap create per device'), [
      'tap create per device',
      '2.69 ms',
      '1.01 ms (ip -batch floor)',
      '2.66',
      '<= 2x the floor',
      '**not met**',
    ]);
  });

  it("prefers the bench's own ratio and says met", () => {
    const figure: BenchFigure = { ...tapCreate, value: 1.5, baseline: 1, ratio: 1.48, met: true };
    assert.deepEqual(rowOf(renderReport(input([ok('network', [figure])])), 'tap create per device').slice(3), ['1.48', '<= 2x the floor', 'met']);
  });

  it('a figure without a baseline or a verdict shows dashes, not a ratio', () => {
    const figure: BenchFigure = { id: 'create-to-spawn', label: 'spawn', value: 12.3456, unit: 'ms' };
    assert.deepEqual(rowOf(renderReport(input([ok('vm-boot', [figure])])), 'create -> QEMU spawned, p50').slice(1), ['12.3 ms', '—', '—', '—', '—']);
  });

  it('takes each row from its own run: the two daemon-scale sizes are told apart by key', () => {
    const rss = (value: number): BenchFigure => ({ id: 'rss-stored', label: 'RSS', value, unit: 'MB', goal: '<= 200 MB', met: value <= 200 });
    const list = (value: number): BenchFigure => ({ id: 'list-all-p50', label: 'List', value, unit: 'ms', goal: '<= 20 ms', met: value <= 20 });
    const report = renderReport(
      input([
        ok('daemon-scale-1000', [rss(138), list(9.9)], [], 'bench/daemon-scale.ts'),
        ok('daemon-scale-10000', [rss(412), list(95)], [], 'bench/daemon-scale.ts'),
      ]),
    );
    assert.deepEqual(rowOf(report, 'ListMicroVMs of 1000 VMs, p50').slice(1), ['9.90 ms', '—', '—', '<= 20 ms', 'met']);
    assert.deepEqual(rowOf(report, 'RSS with 10 000 stored VMs').slice(1), ['412 MB', '—', '—', '<= 200 MB', '**not met**']);
    // The figures no row takes are listed apart, under their run.
    assert.match(report, /\| daemon-scale-1000 \| RSS \| 138 MB \|/);
    assert.match(report, /\| daemon-scale-10000 \| List \| 95\.0 ms \|/);
    assert.match(report, /1 of 10 goals met\./);
  });

  it('reports a failed bench with its exit code and stderr tail, and a missing one as not run', () => {
    const failed: BenchRun = {
      key: 'image-pull',
      script: 'bench/image-pull.ts',
      env: { BENCH_ROUNDS: '3' },
      status: 'failed',
      exitCode: 3,
      signal: null,
      stderrTail: 'image-pull bench: docker-registry did not answer within 15 s',
      durationMs: 16_000,
    };
    const missing: BenchRun = { key: 'control-plane', script: 'bench/control-plane.ts', env: {}, status: 'missing', durationMs: 0 };
    const report = renderReport(input([ok('network', [tapCreate]), failed, missing]));
    assert.deepEqual(rowOf(report, 'pull + verify + unpack + ext4 of a 50 MB 4-layer image').slice(1), ['failed: exit code 3', '—', '—', '—', '—']);
    assert.equal(rowOf(report, 'control-plane rate: creates reaching CREATED per second')[1], 'not run: bench/control-plane.ts missing');
    assert.match(
      report,
      /### image-pull: failed\n\nbench\/image-pull\.ts failed \(exit code 3\) after 16 s\. The tail of its stderr:\n\n```\nimage-pull bench: docker-registry did not answer within 15 s\n```/,
    );
    assert.match(report, /\| image-pull \| bench\/image-pull\.ts \| BENCH_ROUNDS=3 \| \*\*failed\*\* \(exit code 3\) \| 16 s \|/);
    assert.deepEqual(
      failedRuns([ok('network', [tapCreate]), failed, missing]).map((r) => r.key),
      ['image-pull'],
    );
  });

  it('says why a run that exited 0 still failed, and names a killing signal', () => {
    const noJson: BenchRun = {
      key: 'grpc-get',
      script: 'bench/grpc-get.ts',
      env: {},
      status: 'failed',
      exitCode: 0,
      reason: 'wrote no BENCH_JSON',
      durationMs: 1000,
    };
    const killed: BenchRun = {
      key: 'vm-boot',
      script: 'bench/vm-boot.ts',
      env: {},
      status: 'failed',
      exitCode: null,
      signal: 'SIGKILL',
      reason: 'over its 420 s limit',
      durationMs: 1000,
    };
    const report = renderReport(input([noJson, killed]));
    assert.equal(rowOf(report, 'GetMicroVM vs a bare grpc-js server (req/s)')[1], 'failed: exit code 0, wrote no BENCH_JSON');
    assert.equal(rowOf(report, 'create -> QEMU spawned, p50')[1], 'failed: signal SIGKILL, over its 420 s limit');
  });

  it("lists each bench's notes under it, and marks a quick run", () => {
    const report = renderReport({ ...input([ok('network', [tapCreate], ['where the time goes: ip -batch round trips', 'a | pipe'])]), quick: true });
    assert.match(report, /### network\n\n- where the time goes: ip -batch round trips\n- a \| pipe\n/);
    assert.match(report, /BENCH_QUICK=1/);
    assert.doesNotMatch(report, /Partial run/);
    assert.match(renderReport({ ...input([]), only: ['network', 'cidata'] }), /\*\*Partial run\*\* \(BENCH_ONLY=network,cidata\)/);
  });

  it('a figure a bench could not measure (null in the JSON) shows n/a and no ratio', () => {
    const figure = { ...tapCreate, value: null as unknown as number, met: false };
    assert.deepEqual(rowOf(renderReport(input([ok('network', [figure])])), 'tap create per device').slice(1, 4), ['n/a', '1.01 ms (ip -batch floor)', '—']);
    assert.equal(figureRatio({ ...tapCreate, baseline: 0 }), undefined);
  });

  it('formats numbers to about three significant digits', () => {
    assert.deepEqual([0.0362, 0.362, 2.694, 15.34, 138.46, Number.NaN].map(formatNumber), ['0.036', '0.36', '2.69', '15.3', '138', 'n/a']);
  });
});

describe('writeBenchJson', () => {
  it('writes the contract shape only when BENCH_JSON names a file, non-finite numbers as null', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fl-bench-json-'));
    try {
      const file = join(dir, 'out.json');
      assert.equal(writeBenchJson('network', [tapCreate], ['a note'], undefined), false);
      assert.equal(writeBenchJson('network', [tapCreate], ['a note'], ''), false);
      assert.equal(writeBenchJson('network', [tapCreate, { id: 'x', label: 'x', value: Number.NaN, unit: 'ms' }], ['a note'], file), true);
      const written = JSON.parse(readFileSync(file, 'utf8')) as unknown;
      assert.deepEqual(written, { bench: 'network', figures: [tapCreate, { id: 'x', label: 'x', value: null, unit: 'ms' }], notes: ['a note'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
