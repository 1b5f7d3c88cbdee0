// Crash-safety benchmark (issue 9): CRASH_ITERATIONS (default 100) SIGKILLs of the real daemon
// while it creates and deletes real QEMU guests (tap and macvtap), half at a random moment, half
// the moment a new VMM process appears; after each restart converges, the invariants of
// test/helpers/crash-harness.ts. Prints the seed (CRASH_SEED replays the plan), the kills by kind,
// the violations by kind (0 expected), time to converge after a restart (p50/p99) and total time.
// Needs root and the guest lab (test/e2e/crash.test.ts runs the same harness for a few iterations).
//   node --import tsx bench/crash.ts
import { CrashLab, crashSeed, violationsByKind } from '../test/helpers/crash-harness.js';

const iterations = Number(process.env.CRASH_ITERATIONS ?? 100);
const seed = crashSeed();
const verbose = process.env.CRASH_VERBOSE === '1';

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

console.log(`crash bench: ${iterations} iterations, seed ${seed} (CRASH_SEED=${seed} replays the plan)`);
const lab = await CrashLab.open();
try {
  const run = await lab.run({
    seed,
    iterations,
    log: (line) => {
      if (verbose || !line.includes(', 0 violations')) console.log(line);
    },
  });
  const kills = new Map<string, number>();
  for (const r of run.results) kills.set(r.kill, (kills.get(r.kill) ?? 0) + 1);
  const converge = run.results.map((r) => r.convergeMs).sort((a, b) => a - b);
  const violations = violationsByKind(run);
  const total = [...violations.values()].reduce((a, b) => a + b, 0);
  console.log(`iterations: ${run.results.length}`);
  console.log(`kills: ${[...kills].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const sum = (f: (r: (typeof run.results)[number]) => number): number => run.results.reduce((a, r) => a + f(r), 0);
  console.log(
    `restarted daemon: ${sum((r) => r.adopted)} unrecorded VMMs adopted (pid file), ${sum((r) => r.swept)} VMM processes killed by the start-up sweep`,
  );
  console.log(`violations: ${total}${total > 0 ? ` (${[...violations].map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`);
  console.log(`converge after restart: p50 ${percentile(converge, 50)} ms, p99 ${percentile(converge, 99)} ms, max ${converge.at(-1)} ms`);
  console.log(`total: ${(run.totalMs / 1000).toFixed(1)} s (${(run.totalMs / Math.max(1, run.results.length) / 1000).toFixed(1)} s per iteration)`);
  process.exitCode = total > 0 ? 1 : 0;
} finally {
  await lab.close();
}
