// Crash safety (issue 9): the real daemon creating and deleting real QEMU guests (tap and macvtap),
// SIGKILLed at random moments and the moment a VMM process appears, restarted on the same state
// dir; after each restart converges, no acknowledged create is lost, no acknowledged delete
// survives, each CREATED VM has exactly one VMM, nothing (VMM, device, VM dir) outlives its VM and
// the database is intact. The harness (test/helpers/crash-harness.ts) is bench/crash.ts's too,
// which runs 100 iterations; here CRASH_ITERATIONS (default 3), seed CRASH_SEED (printed).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { CrashLab, crashSeed, violationsByKind } from '../helpers/crash-harness.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { CGROUPS } from '../helpers/sandbox.js';

const ITERATIONS = Number(process.env.CRASH_ITERATIONS ?? 3);

describeWith('crash safety: SIGKILL of the daemon while it creates and deletes real guests', [...GUEST_LAB, CGROUPS], { timeout: 300_000 }, () => {
  let lab: CrashLab;

  before(async () => {
    lab = await CrashLab.open();
  });

  after(async () => {
    await lab?.close();
  });

  it(`${ITERATIONS} kills (random moments and VMM spawns), restarts: no violation of the invariants`, async (t) => {
    const seed = crashSeed();
    t.diagnostic(`seed ${seed} (CRASH_SEED=${seed} replays the plan)`);
    const run = await lab.run({ seed, iterations: ITERATIONS, log: (line) => t.diagnostic(line) });
    const violations = [...run.results.flatMap((r) => r.violations), ...run.finalViolations];
    assert.deepEqual(
      violations,
      [],
      `seed ${seed}: ${JSON.stringify(Object.fromEntries(violationsByKind(run)))}; daemon output tail:\n${lab.output().split('\n').slice(-40).join('\n')}`,
    );
    // Else the spawn-moment kills did not test what they claim.
    assert.deepEqual(
      run.results.filter((r) => r.kill === 'spawn-missed').map((r) => r.iteration),
      [],
      'iterations where no new VMM process appeared to kill the daemon at',
    );
  });
});
