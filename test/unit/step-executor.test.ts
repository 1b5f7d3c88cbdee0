// The step executor: a plan's steps run as soon as the steps they wait for have finished, so
// independent ones overlap; the first failure aborts the others and is thrown only once they have
// all settled; every `do` is followed by the converge re-check. The steps here are driven by
// promises the test resolves, never by timing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/adapters/log/logger.js';
import type { StepOutcome } from '../../src/core/ports.js';
import { executeSteps, observedSteps, SiblingFailedError, StepNotConvergedError, type Plan, type Step } from '../../src/core/steps/step.js';

/** A step whose `do` waits until the test settles it (or its signal aborts), recording what happened. */
class ControlledStep implements Step {
  readonly events: string[];
  private pending = true;
  private settle: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  /** Set when `do` has begun. */
  readonly begun: Promise<void>;
  private markBegun: () => void = () => undefined;
  /** `shouldDo` stays true after `do` (a step that does not converge). */
  stuck = false;

  constructor(
    readonly name: string,
    events: string[],
    private readonly signal?: AbortSignal,
  ) {
    this.events = events;
    this.begun = new Promise((r) => (this.markBegun = r));
  }

  shouldDo(): Promise<boolean> {
    return Promise.resolve(this.pending || this.stuck);
  }

  do(): Promise<void> {
    this.events.push(`${this.name} start`);
    this.markBegun();
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.signal?.addEventListener('abort', () => reject(this.signal?.reason as Error), { once: true });
    }).then(
      () => {
        this.pending = false;
        this.events.push(`${this.name} done`);
      },
      (e: unknown) => {
        this.events.push(`${this.name} failed`);
        throw e;
      },
    );
  }

  finish(): void {
    assert.ok(this.settle, `${this.name} is not running`);
    this.settle.resolve();
  }

  fail(message: string): void {
    assert.ok(this.settle, `${this.name} is not running`);
    this.settle.reject(new Error(message));
  }
}

/** Whether `promise` has settled, after letting every pending callback run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

const log = silentLogger();

describe('executeSteps', () => {
  it('runs independent steps at once: the plan takes as long as the slower, not the sum', async () => {
    const events: string[] = [];
    const kernel = new ControlledStep('kernel_image', events);
    const nic = new ControlledStep('network_iface_create[eth0]', events);
    const run = executeSteps(
      [
        { step: kernel, after: [] },
        { step: nic, after: [] },
      ],
      log,
    );
    await Promise.all([kernel.begun, nic.begun]);
    assert.deepEqual(events, ['kernel_image start', 'network_iface_create[eth0] start'], 'both started before either finished');
    nic.finish();
    assert.equal(await settled(run), false, 'still waiting for the kernel');
    kernel.finish();
    assert.deepEqual(await run, { executed: ['network_iface_create[eth0]', 'kernel_image'] }, 'in the order they finished');
  });

  it('starts a step only once every step it waits for has finished', async () => {
    const events: string[] = [];
    const dir = new ControlledStep('vm_state_dir_create', events);
    const nic = new ControlledStep('network_iface_create[eth0]', events);
    const node = new ControlledStep('macvtap_device_node[eth0]', events);
    const run = executeSteps(
      [
        { step: dir, after: [] },
        { step: nic, after: [] },
        { step: node, after: ['vm_state_dir_create', 'network_iface_create[eth0]'] },
      ],
      log,
    );
    await Promise.all([dir.begun, nic.begun]);
    nic.finish();
    await settled(run);
    assert.ok(!events.includes('macvtap_device_node[eth0] start'), 'not before the state dir');
    dir.finish();
    await node.begun;
    node.finish();
    await run;
    assert.deepEqual(events.slice(-2), ['macvtap_device_node[eth0] start', 'macvtap_device_node[eth0] done']);
  });

  it('skips a step with nothing to do, and what waits for it goes on at once', async () => {
    const events: string[] = [];
    const dir = new ControlledStep('vm_state_dir_create', events);
    const node = new ControlledStep('macvtap_device_node[eth0]', events);
    const done: Step = { name: 'network_iface_create[eth0]', shouldDo: () => Promise.resolve(false), do: () => Promise.reject(new Error('must not run')) };
    const run = executeSteps(
      [
        { step: dir, after: [] },
        { step: done, after: [] },
        { step: node, after: ['vm_state_dir_create', 'network_iface_create[eth0]'] },
      ],
      log,
    );
    await dir.begun;
    dir.finish();
    await node.begun;
    node.finish();
    assert.deepEqual((await run).executed, ['vm_state_dir_create', 'macvtap_device_node[eth0]']);
  });

  it('on the first failure aborts the running siblings, starts nothing more, and throws it once they have settled', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const kernel = new ControlledStep('kernel_image', events, controller.signal);
    // A sibling that ignores the signal: the executor must still wait for it.
    const nic = new ControlledStep('network_iface_create[eth0]', events);
    const vmm = new ControlledStep('vmm_start', events, controller.signal);
    const aborts: Error[] = [];
    const run = executeSteps(
      [
        { step: kernel, after: [] },
        { step: nic, after: [] },
        { step: vmm, after: ['kernel_image', 'network_iface_create[eth0]'] },
      ],
      log,
      {
        signal: controller.signal,
        abort: (reason) => {
          aborts.push(reason);
          controller.abort(reason);
        },
      },
    );
    await Promise.all([kernel.begun, nic.begun]);
    nic.fail('parent network device "eth9" does not exist');
    await settled(run);
    assert.equal(aborts.length, 1);
    assert.ok(aborts[0] instanceof SiblingFailedError);
    assert.match(aborts[0].message, /network_iface_create\[eth0\] failed: parent network device "eth9" does not exist/);
    assert.ok(events.includes('kernel_image failed'), 'the kernel pull saw the abort');
    await assert.rejects(run, /parent network device "eth9" does not exist/, 'the first failure, not the abort it caused');
    assert.ok(!events.includes('vmm_start start'), 'nothing started after the failure');
  });

  it('waits for a sibling that finishes its work after the failure, and throws the failure', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const slow = new ControlledStep('network_iface_create[eth0]', events); // deaf to the signal
    const failing = new ControlledStep('kernel_image', events, controller.signal);
    const run = executeSteps(
      [
        { step: slow, after: [] },
        { step: failing, after: [] },
      ],
      log,
      { signal: controller.signal, abort: (reason) => controller.abort(reason) },
    );
    await Promise.all([slow.begun, failing.begun]);
    failing.fail('registry unreachable');
    assert.equal(await settled(run), false, 'the NIC step is still running: the plan has not ended');
    slow.finish();
    await assert.rejects(run, /registry unreachable/);
    assert.deepEqual(events.slice(-1), ['network_iface_create[eth0] done'], 'its work finished before the executor returned');
  });

  it('when steps running together both fail, throws the failure of the first in plan order, whichever failed first', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const nic = new ControlledStep('network_iface_create[eth0]', events); // deaf to the signal
    const kernel = new ControlledStep('kernel_image', events, controller.signal);
    const initrd = new ControlledStep('initrd_image', events, controller.signal);
    const run = executeSteps(
      [
        { step: nic, after: [] },
        { step: kernel, after: [] },
        { step: initrd, after: [] },
      ],
      log,
      { signal: controller.signal, abort: (reason) => controller.abort(reason) },
    );
    await Promise.all([nic.begun, kernel.begun, initrd.begun]);
    kernel.fail('registry unreachable'); // first in time; the initrd is aborted by it
    nic.fail('bridge "br-missing" does not exist'); // first in the plan
    await assert.rejects(run, /bridge "br-missing" does not exist/);
    assert.ok(events.includes('initrd_image failed'), 'the initrd was aborted, not told');
  });

  it('fails a step that still has work to do after running (the converge re-check)', async () => {
    const events: string[] = [];
    const stuck = new ControlledStep('cloud_init_disk', events);
    stuck.stuck = true;
    const run = executeSteps([{ step: stuck, after: [] }], log);
    await stuck.begun;
    stuck.finish();
    await assert.rejects(run, (e: unknown) => e instanceof StepNotConvergedError && /cloud_init_disk did not converge/.test(e.message));
  });

  it('once the reconcile is aborted starts nothing more, waits for the running steps, and throws the reason', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const nic = new ControlledStep('network_iface_create[eth0]', events); // deaf to the signal
    const next = new ControlledStep('macvtap_device_node[eth0]', events);
    const run = executeSteps(
      [
        { step: nic, after: [] },
        { step: next, after: ['network_iface_create[eth0]'] },
      ],
      log,
      { signal: controller.signal },
    );
    await nic.begun;
    controller.abort(new Error('the microvm is being deleted'));
    assert.equal(await settled(run), false);
    nic.finish();
    await assert.rejects(run, /the microvm is being deleted/);
    assert.ok(!events.includes('macvtap_device_node[eth0] start'));
  });

  it('tells onStep which steps are doing work, each time that changes', async () => {
    const events: string[] = [];
    const a = new ControlledStep('kernel_image', events);
    const b = new ControlledStep('volume_image[root]', events);
    const reports: string[] = [];
    const run = executeSteps(
      [
        { step: a, after: [] },
        { step: b, after: [] },
      ],
      log,
      { onStep: (running) => reports.push(running.join(',')) },
    );
    await Promise.all([a.begun, b.begun]);
    b.finish();
    await settled(run);
    a.finish();
    await run;
    assert.deepEqual(reports, ['kernel_image', 'kernel_image,volume_image[root]', 'kernel_image']);
  });

  it('refuses a plan whose step waits for one that is not listed before it (a cycle, or a typo)', async () => {
    const step: Step = { name: 'a', shouldDo: () => Promise.resolve(false), do: () => Promise.resolve() };
    await assert.rejects(executeSteps([{ step, after: ['b'] }], log), /step a waits for b, which is not an earlier step/);
    await assert.rejects(
      executeSteps(
        [
          { step, after: [] },
          { step, after: [] },
        ],
        log,
      ),
      /two steps are named a/,
    );
  });

  it('the step observer hears of every step that worked: ok, failed, or aborted by the failure', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const ok = new ControlledStep('network_iface_create[eth0]', events);
    const failing = new ControlledStep('kernel_image', events);
    const aborted = new ControlledStep('volume_image[root]', events, controller.signal);
    const heard: Array<[string, StepOutcome]> = [];
    const plan: Plan = observedSteps(
      [
        { step: ok, after: [] },
        { step: failing, after: [] },
        { step: aborted, after: [] },
      ],
      { stepDone: (kind, _ms, outcome) => heard.push([kind, outcome]) },
      controller.signal,
    );
    const run = executeSteps(plan, log, { signal: controller.signal, abort: (reason) => controller.abort(reason) });
    await Promise.all([ok.begun, failing.begun, aborted.begun]);
    ok.finish();
    await settled(run);
    failing.fail('registry unreachable');
    await assert.rejects(run, /registry unreachable/);
    assert.deepEqual(heard.sort(), [
      ['kernel_image', 'failed'],
      ['network_iface_create', 'ok'],
      ['volume_image', 'aborted'],
    ]);
  });
});
