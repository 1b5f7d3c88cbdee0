// The VM state directory `<state-dir>/vm/<ns>/<name>/<uid>/`: created first, removed last.
import type { Step, StepContext } from './step.js';

export function ensureStateDirStep(ctx: StepContext): Step {
  const fs = ctx.ports.fs;
  return {
    name: 'vm_state_dir_create',
    shouldDo: async () => !(await fs.vmDirExists(ctx.vm.id)),
    do: async () => {
      await fs.ensureVmDir(ctx.vm.id);
    },
  };
}

export function removeStateDirStep(ctx: StepContext): Step {
  const fs = ctx.ports.fs;
  return {
    name: 'vm_state_dir_delete',
    shouldDo: () => fs.vmDirExists(ctx.vm.id),
    do: () => fs.removeVmDir(ctx.vm.id),
  };
}
