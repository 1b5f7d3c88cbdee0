// The VM state directory `<state-dir>/vm/<ns>/<name>/<uid>/`: created first, removed last. With a
// VMM identity it belongs to root with the VM's gid (ADR 0009); the check also corrects a dir
// made before the VM had one.
import { PRIVATE_VM_DIR_MODE, VM_DIR_MODE } from '../sandbox.js';
import type { Step, StepContext } from './step.js';

export function ensureStateDirStep(ctx: StepContext): Step {
  const fs = ctx.ports.fs;
  return {
    name: 'vm_state_dir_create',
    shouldDo: async () => {
      const have = await fs.vmDirAccess(ctx.vm.id);
      if (have === undefined) return true;
      const gid = ctx.status.vmmIdentity?.gid;
      return gid === undefined ? have.mode !== PRIVATE_VM_DIR_MODE : have.gid !== gid || have.mode !== VM_DIR_MODE;
    },
    do: async () => {
      await fs.ensureVmDir(ctx.vm.id, ctx.status.vmmIdentity?.gid);
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
