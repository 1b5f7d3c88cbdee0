// The VMM sandbox's steps (ADR 0009): a uid/gid of its own for each VM, allocated before anything
// is created with it; the VMM's files in the VM dir made reachable by that gid (and nothing
// else); the VM's cgroup removed with the VM.
import { vmmFiles } from '../launch.js';
import { allocateVmmIdentity, VMM_ACCESS_MODES } from '../sandbox.js';
import { vmmIdentityOf, type Step, type StepContext } from './step.js';
import { launchFilesFor } from './vmm.js';

/** Undefined when VMMs keep the daemon's uid (no `vmm-uid-range`). */
export function vmmIdentityStep(ctx: StepContext): Step | undefined {
  const range = ctx.ports.sandbox.idRange;
  if (range === undefined) return undefined;
  return {
    name: 'vmm_identity',
    shouldDo: () => Promise.resolve(ctx.status.vmmIdentity === undefined),
    do: () => {
      // Look up, pick and save in one synchronous turn: no other reconcile can interleave and
      // take the same uid. Ids stay with their VM (its files and taps carry them) until it is removed.
      const identity = allocateVmmIdentity(range, inUseBy(ctx));
      if ('error' in identity) return Promise.reject(new Error(identity.error));
      ctx.saveStatus({ ...ctx.status, vmmIdentity: identity });
      return Promise.resolve();
    },
  };
}

/** Whether another stored VM holds a VMM uid: the index when wired, else every stored VM read. */
function inUseBy(ctx: StepContext): (uid: number) => boolean {
  const index = ctx.ports.sandbox.vmmUids;
  if (index !== undefined) return (uid) => index.has(uid);
  const used = new Set(
    ctx.ports.repo.list({}).flatMap((vm) => (vm.id.uid !== ctx.vm.id.uid && vm.status.vmmIdentity !== undefined ? [vm.status.vmmIdentity.uid] : [])),
  );
  return (uid) => used.has(uid);
}

/**
 * Ownership and modes of the files the VMM opens by path (console log, volumes, cidata disk):
 * root-owned, group the VM's gid. Re-checked before every start, so a crash between making a
 * file and granting it, or a VM made before sandboxing, still ends up right. The console log is
 * made here: a file the VMM created itself could be a symlink the daemon later follows.
 */
export function vmmFilesAccessStep(ctx: StepContext): Step | undefined {
  if (ctx.ports.sandbox.idRange === undefined) return undefined;
  const fs = ctx.ports.fs;
  return {
    name: 'vmm_files_access',
    shouldDo: async () => {
      const gid = vmmIdentityOf(ctx)?.gid;
      if (gid === undefined) return false;
      const spec = launchFilesFor(ctx);
      for (const file of vmmFiles(spec)) {
        const have = await fs.access(file.path);
        if (have === undefined) {
          if (file.path === spec.consoleLogPath) return true;
          continue;
        }
        const kind = file.access === 'dir' ? 'dir' : 'file';
        if (have.kind !== kind || have.gid !== gid || have.mode !== VMM_ACCESS_MODES[file.access]) return true;
      }
      return false;
    },
    do: async () => {
      const gid = vmmIdentityOf(ctx)?.gid;
      if (gid === undefined) return;
      const spec = launchFilesFor(ctx);
      await fs.ensureFile(spec.consoleLogPath);
      for (const file of vmmFiles(spec)) {
        if ((await fs.access(file.path)) !== undefined) await fs.grantVmmAccess(file.path, gid, file.access);
      }
    },
  };
}

export function removeVmmCgroupStep(ctx: StepContext): Step {
  const cgroups = ctx.ports.sandbox.cgroups;
  return {
    name: 'vmm_cgroup_delete',
    shouldDo: () => cgroups.exists(ctx.vm.id.uid),
    do: () => cgroups.remove(ctx.vm.id.uid),
  };
}
