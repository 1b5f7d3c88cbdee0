// The API fuzzer's long run: the properties of test/fuzz/api-fuzz.test.ts (same arbitraries, same
// invariants, same in-process servers), for many more cases. Failures are counted, not stopped
// at, and grouped by the invariant they broke; the first case of each group is printed.
//
//   node --import tsx bench/fuzz.ts
//   (FUZZ_CASES=100000 total, shared out as in the test; FUZZ_SEED=<n>; FUZZ_SHOW=3 cases per group)
//
// Exits 1 when any case failed. Replay one with the test: FUZZ_SEED=<seed printed> and enough
// FUZZ_RUNS, or paste the printed case into a unit test.
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { envInt, fuzzSeed, PROPERTIES, runPropertyCase, showCase, startFuzzEnv } from '../test/helpers/api-fuzz.js';

const SEED = fuzzSeed();
const TOTAL = envInt('FUZZ_CASES', 100_000);
const SHOW = envInt('FUZZ_SHOW', 1);
const shares = PROPERTIES.reduce((sum, p) => sum + p.share, 0);

/** A violation without the values in it, so that failures of one kind group together. */
const kindOf = (violation: string): string =>
  violation
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/\d+/g, 'N')
    .slice(0, 120);

interface Row {
  readonly name: string;
  readonly cases: number;
  readonly failures: number;
  readonly seconds: number;
}

async function main(): Promise<void> {
  const env = await startFuzzEnv();
  const rows: Row[] = [];
  const groups = new Map<string, { count: number; examples: string[] }>();
  const started = performance.now();
  try {
    for (const [i, property] of PROPERTIES.entries()) {
      const numRuns = Math.max(1, Math.round((TOTAL * property.share) / shares));
      let failures = 0;
      const t0 = performance.now();
      // Each property gets its own seed derived from the run's, so a property's cases don't depend on the others' count.
      await fc.check(
        fc.asyncProperty(property.arbitrary(env), async (c) => {
          const violations = await runPropertyCase(env, property, c);
          if (violations.length === 0) return true;
          failures += 1;
          for (const kind of new Set(violations.map(kindOf))) {
            const group = groups.get(kind) ?? { count: 0, examples: [] };
            group.count += 1;
            if (group.examples.length < SHOW) group.examples.push(`${violations.join(' | ').slice(0, 600)}\n    case: ${showCase(c).slice(0, 1500)}`);
            groups.set(kind, group);
          }
          return true;
        }),
        { seed: SEED + i, numRuns },
      );
      const seconds = (performance.now() - t0) / 1000;
      rows.push({ name: property.name, cases: numRuns, failures, seconds });
      console.error(`${property.name}: ${numRuns} cases, ${failures} failures, ${(numRuns / seconds).toFixed(0)} cases/s`);
    }
  } finally {
    await env.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const cases = rows.reduce((s, r) => s + r.cases, 0);
  const failures = rows.reduce((s, r) => s + r.failures, 0);
  console.log(
    `seed ${SEED} (property i uses seed+i), ${cases} cases in ${seconds.toFixed(1)} s: ${failures} failures, ${(cases / seconds).toFixed(0)} cases/s`,
  );
  console.log('\n| property | cases | failures | cases/s |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.cases} | ${r.failures} | ${(r.cases / r.seconds).toFixed(0)} |`);
  console.log(`| all | ${cases} | ${failures} | ${(cases / seconds).toFixed(0)} |`);
  for (const [kind, group] of [...groups.entries()].sort((a, b) => b[1].count - a[1].count)) {
    console.log(`\n${group.count} x ${kind}`);
    for (const example of group.examples) console.log(`  ${example}`);
  }
  process.exitCode = failures > 0 ? 1 : 0;
}

await main();
