// The reconcile's progress reports (status.reconcile_step, status.pull_progress): throttled to one
// store write per 500 ms per VM with the latest state written at the end of the interval, nothing
// written after the reconcile ends, and a write that would overwrite a newer status dropped.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { MicroVM } from '../../src/core/model.js';
import { PROGRESS_WRITE_INTERVAL_MS, ReconcileProgress, withoutProgress, type ProgressFields } from '../../src/core/steps/progress.js';
import { StepContext, type StepPorts } from '../../src/core/steps/step.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { FakeTime } from '../helpers/fake-time.js';
import { createTestService, type TestService } from '../helpers/service.js';

const layer = (ref: string, imageBytes: number, imageTotal: number): Parameters<ReconcileProgress['pulled']>[0] => ({
  ref,
  layer: 'sha256:aa',
  bytes: imageBytes,
  total: imageTotal,
  imageBytes,
  imageTotal,
});

describe('ReconcileProgress', () => {
  let time: FakeTime;
  let writes: Array<{ at: number; fields: ProgressFields }>;
  let progress: ReconcileProgress;

  beforeEach(() => {
    time = new FakeTime();
    writes = [];
    progress = new ReconcileProgress(
      (fields) => {
        writes.push({ at: time.now(), fields });
        return true;
      },
      time,
      time,
    );
  });

  it('writes the first report at once, then at most one write per interval carrying the latest', async () => {
    const start = time.now();
    progress.stepStarted('kernel_image');
    assert.deepEqual(writes, [{ at: start, fields: { reconcileStep: 'kernel_image' } }]);
    for (let i = 1; i <= 10; i++) {
      progress.pulled(layer('reg/kernel:1', i * 100, 1000));
      await time.advance(40);
    }
    // 400 ms of reports after the first write: one trailing write at 500 ms, none before.
    assert.equal(writes.length, 1);
    await time.advance(100);
    assert.equal(writes.length, 2);
    assert.deepEqual(writes[1], {
      at: start + PROGRESS_WRITE_INTERVAL_MS,
      fields: { reconcileStep: 'kernel_image', pullProgress: { image: 'reg/kernel:1', bytesDone: 1000, bytesTotal: 1000 } },
    });
    // Quiet: nothing more is written.
    await time.advance(5000);
    assert.equal(writes.length, 2);
    // After a quiet spell the next report is written at once again.
    progress.stepStarted('volume_image[root]');
    assert.equal(writes.length, 3);
    assert.deepEqual(writes[2]?.fields, { reconcileStep: 'volume_image[root]' }, "a new step drops the last step's pull");
  });

  it('steps that run together: the pull shown stays while any step that ran with it still runs', async () => {
    progress.stepsRunning(['kernel_image', 'volume_image[root]']);
    progress.pulled(layer('reg/kernel:1', 100, 1000));
    await time.advance(PROGRESS_WRITE_INTERVAL_MS);
    // The volume finished; the kernel's pull is still the one running.
    progress.stepsRunning(['kernel_image']);
    await time.advance(PROGRESS_WRITE_INTERVAL_MS);
    assert.deepEqual(writes.at(-1)?.fields, {
      reconcileStep: 'kernel_image',
      pullProgress: { image: 'reg/kernel:1', bytesDone: 100, bytesTotal: 1000 },
    });
    // None of them runs any more: the next step starts from nothing.
    progress.stepsRunning(['cloud_init_disk']);
    await time.advance(PROGRESS_WRITE_INTERVAL_MS);
    assert.deepEqual(writes.at(-1)?.fields, { reconcileStep: 'cloud_init_disk' });
  });

  it('writes nothing for a report that changes nothing', async () => {
    progress.stepStarted('kernel_image');
    progress.pulled(layer('reg/k:1', 10, 0));
    await time.advance(1000);
    assert.equal(writes.length, 2);
    assert.deepEqual(writes[1]?.fields.pullProgress, { image: 'reg/k:1', bytesDone: 10 }, 'no total while it is unknown');
    progress.pulled(layer('reg/k:1', 10, 0));
    await time.advance(1000);
    assert.equal(writes.length, 2);
  });

  it('drops a pending write when the reconcile ends', async () => {
    progress.stepStarted('kernel_image');
    progress.pulled(layer('reg/k:1', 10, 100));
    assert.deepEqual(time.waiting(), [PROGRESS_WRITE_INTERVAL_MS]);
    progress.stop();
    assert.deepEqual(time.waiting(), []);
    progress.pulled(layer('reg/k:1', 20, 100));
    await time.advance(1000);
    assert.equal(writes.length, 1);
  });
});

describe('progress through the step context (compare-and-swap)', () => {
  let testService: TestService;
  let time: FakeTime;

  beforeEach(() => {
    testService = createTestService('fl-progress-');
    time = new FakeTime();
  });
  afterEach(() => testService.close());

  function storedVm(): MicroVM {
    const created = testService.service.create({
      name: 'vm',
      namespace: 'ns',
      labels: {},
      vcpu: 1,
      memoryMb: 256,
      kernel: { image: 'reg/k:1', cmdline: {}, addNetworkConfig: false },
      rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'reg/root:1' } },
      additionalVolumes: [],
      interfaces: [{ deviceId: 'eth1', type: 'tap' }],
      metadata: {},
      provider: '',
      allowGuestAgent: false,
    });
    assert.ok(created.ok, created.ok ? '' : created.error.message);
    return created.value;
  }

  it('keeps the context current, and never overwrites a status written by someone else', async () => {
    const { repo } = testService;
    const vm = storedVm();
    const ctx: StepContext = new StepContext(vm, { repo, clock: time } as unknown as StepPorts, silentLogger());
    const progress = new ReconcileProgress((fields) => ctx.saveProgress(fields), time, time);
    progress.stepStarted('kernel_image');
    assert.equal(repo.get(vm.id.uid)?.status.reconcileStep, 'kernel_image');
    assert.equal(ctx.vm.version, repo.get(vm.id.uid)?.version, 'the context saw its own write (the final CAS depends on it)');
    // The VMM watcher (say) writes meanwhile: the next progress write must not undo it.
    const other = repo.get(vm.id.uid);
    assert.ok(other);
    repo.saveStatus(vm.id.uid, { ...other.status, guestIps: ['10.0.0.2'] }, time.now(), other.version);
    await time.advance(PROGRESS_WRITE_INTERVAL_MS);
    progress.stepStarted('cloudinit_disk');
    await time.advance(PROGRESS_WRITE_INTERVAL_MS);
    const now = repo.get(vm.id.uid);
    assert.deepEqual(now?.status.guestIps, ['10.0.0.2']);
    assert.equal(now?.status.reconcileStep, 'kernel_image', 'the stale write was dropped');
    assert.deepEqual(withoutProgress({ reconcileStep: 'x', pullProgress: { image: 'i', bytesDone: 1 }, retry: 0 }), { retry: 0 });
  });
});
