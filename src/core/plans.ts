// Plans: the steps that take a VM from its stored spec to its desired host state, and which of
// them must wait for which. The executor (steps/step.ts) runs every step as soon as the steps it
// waits for have finished, so what does not depend on each other overlaps.
import { cloudInitDiskStep } from './steps/cloud-init.js';
import { initrdStep, kernelStep, volumeStep } from './steps/images.js';
import { createInterfaceStep, deleteInterfaceStep, devicesOf, macvtapNodeStep } from './steps/network.js';
import { removeVmmCgroupStep, vmmFilesAccessStep, vmmIdentityStep } from './steps/sandbox.js';
import { ensureStateDirStep, removeStateDirStep } from './steps/state-dir.js';
import { observedSteps, type Plan, type PlannedStep, type Step, type StepContext } from './steps/step.js';
import { restartVmmStep, startVmmStep, stopVmmStep, vmmPowerStep } from './steps/vmm.js';
import { intentOf } from './model.js';

/** Collects a plan in order; a step absent from this VM's plan (undefined) is left out, and so is waiting for it. */
class PlanBuilder {
  private readonly planned: PlannedStep[] = [];

  /** Adds `step` to run once every step in `after` has finished; returns it, to be waited for. */
  add(step: Step | undefined, after: readonly (Step | undefined)[]): Step | undefined {
    if (step === undefined) return undefined;
    this.planned.push({ step, after: after.flatMap((s) => (s !== undefined ? [s.name] : [])) });
    return step;
  }

  /** Every step added so far: what a step that must come after all of them waits for. */
  all(): Step[] {
    return this.planned.map((p) => p.step);
  }

  build(): Plan {
    return this.planned;
  }
}

/**
 * Create (and repair) plan. What waits for what, and why:
 * - the VMM's uid/gid first: the VM dir's group and the taps' owner are made with it, and a VM
 *   that can't have one (a full range) starts nothing;
 * - the state dir, and each NIC (recorded in the store with its alias before it is made: see
 *   network.ts), after the uid/gid; the NICs with each other and with the images (a failed pull
 *   aborts its siblings, but a NIC step already begun finishes and is recorded: host networking
 *   does not watch the signal, and is quick);
 * - each macvtap's device node after its NIC and the state dir it lives in;
 * - kernel and initrd with all of that (their copies live in the image cache), each volume after
 *   the state dir (its private copy lives there);
 * - the cloud-init disk after the state dir, the NICs (network-config names their MACs) and the
 *   volumes (its mounts name their disks);
 * - the VMM's access to its files once they all exist; then the VMM as the lifecycle intent says
 *   (stopped, running or paused), one step after another.
 * The steps write their results to the status at once, each in one synchronous read-modify-write
 * of the latest status (StepContext.saveStatus), so overlapping steps never lose each other's fields.
 */
export function createPlan(ctx: StepContext): Plan {
  const { images } = ctx.ports;
  const spec = ctx.vm.spec;
  const volumes = [...(spec.rootVolume !== undefined ? [spec.rootVolume] : []), ...spec.additionalVolumes];
  const plan = new PlanBuilder();
  const identity = plan.add(vmmIdentityStep(ctx), []);
  const stateDir = plan.add(ensureStateDirStep(ctx), [identity]);
  const nics = spec.interfaces.map((iface) => {
    const nic = plan.add(createInterfaceStep(ctx, iface), [identity]);
    if (iface.type === 'macvtap') plan.add(macvtapNodeStep(ctx, iface), [nic, stateDir]);
    return nic;
  });
  plan.add(kernelStep(ctx, images), [identity]);
  plan.add(initrdStep(ctx, images), [identity]);
  const disks = volumes.map((v) => plan.add(volumeStep(ctx, images, v), [stateDir]));
  plan.add(cloudInitDiskStep(ctx), [stateDir, ...nics, ...disks]);
  plan.add(vmmFilesAccessStep(ctx), plan.all());
  // Stopped: devices and disks kept, no VMM. Otherwise a restart asked for first, then the VMM,
  // then its vCPUs paused or running as asked.
  const vmm = intentOf(ctx.vm).power === 'stopped' ? [stopVmmStep(ctx)] : [restartVmmStep(ctx), startVmmStep(ctx), vmmPowerStep(ctx)];
  for (const step of vmm) plan.add(step, plan.all());
  return observed(ctx, plan.build());
}

/**
 * Delete plan: the VMM stopped first (nothing may use what follows); then its cgroup and its
 * devices, with each other; the state directory last.
 */
export function deletePlan(ctx: StepContext): Plan {
  const plan = new PlanBuilder();
  const stop = plan.add(stopVmmStep(ctx), []);
  plan.add(removeVmmCgroupStep(ctx), [stop]);
  for (const name of devicesOf(ctx)) plan.add(deleteInterfaceStep(ctx, name), [stop]);
  plan.add(removeStateDirStep(ctx), plan.all());
  return observed(ctx, plan.build());
}

/** Each step reports its work to the step observer (metrics), when there is one. */
function observed(ctx: StepContext, plan: Plan): Plan {
  return observedSteps(plan, ctx.ports.stepObserver, ctx.signal);
}
