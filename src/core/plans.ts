// Plans: the ordered steps that take a VM from its stored spec to its desired host state.
import { cloudInitDiskStep } from './steps/cloud-init.js';
import { initrdStep, kernelStep, volumeStep } from './steps/images.js';
import { createInterfaceStep, deleteInterfaceStep, devicesOf, macvtapNodeStep } from './steps/network.js';
import { removeVmmCgroupStep, vmmFilesAccessStep, vmmIdentityStep } from './steps/sandbox.js';
import { ensureStateDirStep, removeStateDirStep } from './steps/state-dir.js';
import { observedSteps, type Step, type StepContext } from './steps/step.js';
import { restartVmmStep, startVmmStep, stopVmmStep, vmmPowerStep } from './steps/vmm.js';
import { intentOf } from './model.js';

/**
 * Create (and repair) plan: the VMM's uid/gid, state dir, host NICs in spec order (with macvtap
 * nodes), images (kernel, initrd, volumes), the cloud-init disk, the VMM's access to its files,
 * then the VMM as the lifecycle intent says (stopped, running or paused). NICs come first because they are cheap and local: a VM whose image can't be
 * pulled still shows its devices, and they are recorded before anything slow can be interrupted.
 * The uid/gid comes before everything that is made with it (the VM dir's group, the taps' owner).
 */
export function createPlan(ctx: StepContext): Step[] {
  const { images } = ctx.ports;
  const spec = ctx.vm.spec;
  const volumes = [...(spec.rootVolume !== undefined ? [spec.rootVolume] : []), ...spec.additionalVolumes];
  const optional = (step: Step | undefined): Step[] => (step !== undefined ? [step] : []);
  return observed(ctx, [
    ...optional(vmmIdentityStep(ctx)),
    ensureStateDirStep(ctx),
    ...spec.interfaces.flatMap((iface) => [createInterfaceStep(ctx, iface), ...(iface.type === 'macvtap' ? [macvtapNodeStep(ctx, iface)] : [])]),
    kernelStep(ctx, images),
    ...optional(initrdStep(ctx, images)),
    ...volumes.flatMap((v) => optional(volumeStep(ctx, images, v))),
    ...optional(cloudInitDiskStep(ctx)),
    ...optional(vmmFilesAccessStep(ctx)),
    // Stopped: devices and disks kept, no VMM. Otherwise a restart asked for first, then the VMM,
    // then its vCPUs paused or running as asked.
    ...(intentOf(ctx.vm).power === 'stopped' ? [stopVmmStep(ctx)] : [restartVmmStep(ctx), startVmmStep(ctx), vmmPowerStep(ctx)]),
  ]);
}

/** Delete plan: stop the VMM, remove its cgroup and devices, then its state directory. */
export function deletePlan(ctx: StepContext): Step[] {
  return observed(ctx, [stopVmmStep(ctx), removeVmmCgroupStep(ctx), ...devicesOf(ctx).map((name) => deleteInterfaceStep(ctx, name)), removeStateDirStep(ctx)]);
}

/** Each step reports its work to the step observer (metrics), when there is one. */
function observed(ctx: StepContext, steps: Step[]): Step[] {
  return observedSteps(steps, ctx.ports.stepObserver, ctx.signal);
}
