// Plans: the ordered steps that take a VM from its stored spec to its desired host state.
import { createInterfaceStep, deleteInterfaceStep, devicesOf, macvtapNodeStep } from './steps/network.js';
import { ensureStateDirStep, removeStateDirStep } from './steps/state-dir.js';
import type { Step, StepContext } from './steps/step.js';
import { startVmmStep, stopVmmStep } from './steps/vmm.js';

/** Create (and repair) plan: state dir, NICs in spec order, macvtap nodes, then the VMM. */
export function createPlan(ctx: StepContext): Step[] {
  const steps: Step[] = [ensureStateDirStep(ctx)];
  for (const iface of ctx.vm.spec.interfaces) {
    steps.push(createInterfaceStep(ctx, iface));
    if (iface.type === 'macvtap') steps.push(macvtapNodeStep(ctx, iface));
  }
  steps.push(startVmmStep(ctx));
  return steps;
}

/** Delete plan: stop the VMM, remove its devices, then its state directory. */
export function deletePlan(ctx: StepContext): Step[] {
  return [stopVmmStep(ctx), ...devicesOf(ctx).map((name) => deleteInterfaceStep(ctx, name)), removeStateDirStep(ctx)];
}
