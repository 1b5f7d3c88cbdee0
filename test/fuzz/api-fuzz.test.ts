// Property-based fuzzing of the API (issue: a root daemon that hostile specs cannot turn against
// its host): mutated CAPMVM-shaped specs over gRPC and the HTTP gateway, raw JSON bodies,
// hand-made protobuf bytes and hostile lookups, each checked against the invariants in
// test/helpers/api-fuzz.ts. A fixed seed by default so a CI failure replays; FUZZ_SEED=<n> tries
// another, FUZZ_RUNS=<n> sets the runs of the two main properties (the others get their share).
// A failure prints the shrunk case, the seed and fast-check's replay path.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { envInt, fuzzSeed, PROPERTIES, runPropertyCase, showCase, startFuzzEnv, type FuzzEnv } from '../helpers/api-fuzz.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';

const SEED = fuzzSeed();
// ~4200 cases in all by default: about 25 s on the 2-core development machine.
const RUNS = envInt('FUZZ_RUNS', 1500);

describe(`API fuzzer (seed ${SEED}, FUZZ_RUNS ${RUNS})`, () => {
  let env: FuzzEnv;

  before(async () => {
    env = await startFuzzEnv();
  });

  after(async () => {
    await env.close();
  });

  for (const property of PROPERTIES) {
    const numRuns = Math.max(1, Math.round(RUNS * property.share));
    it(`${property.name} (${numRuns} cases)`, async () => {
      await fc.assert(
        fc.asyncProperty(property.arbitrary(env), async (c) => {
          const violations = await runPropertyCase(env, property, c);
          if (violations.length > 0) throw new Error(violations.join('\n'));
        }),
        {
          seed: SEED,
          numRuns,
          // Shrinking a case with 1 MB strings is slow: a bounded budget still gives a readable case.
          interruptAfterTimeLimit: 240_000,
          markInterruptAsFailure: true,
          // fast-check's own report prints every value in full (1 MB strings): show a cut-down case.
          reporter: (run) => {
            if (!run.failed) return;
            const error = run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance);
            const found = run.counterexample?.[0];
            throw new Error(
              `${error}\ncase: ${found !== undefined ? showCase(found) : '(interrupted)'}\nreplay: FUZZ_SEED=${run.seed} (fast-check path ${run.counterexamplePath ?? '-'})`,
            );
          },
        },
      );
    });
  }

  it('the servers still answer a valid create afterwards, with no crash recorded', async () => {
    const client = new TestClient(env.grpcAddress);
    try {
      const vm = await client.create(capmvmSpec('after-the-fuzz'));
      assert.equal(vm.spec?.id, 'after-the-fuzz');
    } finally {
      client.close();
    }
    const res = await fetch(`http://127.0.0.1:${env.httpPort}/v1alpha1/microvms?namespace=capmvm-ns&name=after-the-fuzz`);
    assert.equal(res.status, 200);
    assert.deepEqual(env.crashes, []);
  });
});
