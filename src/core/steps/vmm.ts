// The VMM through the provider port. The VMM process is identified by pid and start time (never
// a pid alone: pids are reused), so a restarted daemon re-adopts a running VMM instead of
// starting a second one. A provider that is not available fails the step with a reason that
// says so; the reconciler retries and then marks the VM FAILED with that reason.
//
// Each start gets the VM's sandbox (ADR 0009): its uid/gid and the cgroup (created here, with the
// limits its spec implies) that the VMM joins before it execs.
import type { LaunchSpec, VmmProcess, VmmProvider, VmmSandbox } from '../ports.js';
import { buildLaunchSpec, CIDATA_FILE, CONSOLE_LOG_FILE, VMM_PID_FILE } from '../launch.js';
import { vmmCgroupLimits } from '../sandbox.js';
import { cloudInitFilesFor } from './cloud-init.js';
import { vmmIdentityOf, type Step, type StepContext } from './step.js';
import { intentOf } from '../model.js';
import { PermanentFailure } from '../result.js';
import { join } from 'node:path';

function availableProvider(ctx: StepContext): VmmProvider {
  const name = ctx.vm.spec.provider;
  const provider = ctx.ports.providers.get(name);
  if (provider === undefined) throw new Error(`microvm provider ${name} is not known to this daemon`);
  const availability = provider.availability();
  if (!availability.available) throw new Error(`microvm provider ${name} is not available: ${availability.reason ?? 'no reason given'}`);
  return provider;
}

/** The VM's cidata disk, unless its provider delivers metadata itself. */
export function cidataPathFor(ctx: StepContext): string | undefined {
  return ctx.ports.providers.get(ctx.vm.spec.provider)?.capabilities.has('metadata-service') === true ? undefined : join(ctx.vmDir, CIDATA_FILE);
}

/** The launch spec as far as files go (no cloud-init content): what the sandbox steps inspect. */
export function launchFilesFor(ctx: StepContext): LaunchSpec {
  return buildLaunchSpec(ctx.vm, ctx.vmDir, { 'meta-data': '' }, cidataPathFor(ctx));
}

/**
 * A VMM spawned but never recorded in the status (the daemon was killed while it started): its
 * pid file names it. Adopted, so no second VMM runs the same guest.
 */
async function unrecordedVmm(ctx: StepContext): Promise<VmmProcess | undefined> {
  const spawned = await ctx.ports.processes.recorded(join(ctx.vmDir, VMM_PID_FILE));
  const known = ctx.status.vmm;
  return spawned !== undefined && (known === undefined || known.pid !== spawned.pid || known.startTime !== spawned.startTime) ? spawned : undefined;
}

export function startVmmStep(ctx: StepContext): Step {
  const { processes } = ctx.ports;
  return {
    name: 'vmm_start',
    shouldDo: async () => {
      const vmm = ctx.status.vmm;
      return vmm === undefined || !(await processes.isAlive(vmm));
    },
    do: async () => {
      const provider = availableProvider(ctx);
      const adopted = await unrecordedVmm(ctx);
      if (adopted !== undefined) {
        const { nextRestartAt: _due, ...current } = ctx.status;
        ctx.saveStatus({
          ...current,
          // It started a moment before the crash that hid it: close enough for the stable period.
          vmm: { ...adopted, provider: provider.name, startedAt: ctx.ports.clock.now() },
          power: 'running',
          consoleLogPath: join(ctx.vmDir, CONSOLE_LOG_FILE),
        });
        ctx.log.warn({ pid: adopted.pid }, 'adopted a VMM that was started but not recorded (the daemon stopped while it started)');
        return;
      }
      const previous = ctx.status.vmm;
      if (previous !== undefined) {
        // It ran and is gone on its own: record how, count the restart (COMPAT §2.7).
        const reason = ctx.status.lastExitReason ?? `vmm process ${previous.pid} ended: ${processes.exitReason(previous) ?? 'exit status unknown'}`;
        const { vmm: _gone, ...rest } = ctx.status;
        ctx.saveStatus({ ...rest, lastExitReason: reason, restartCount: (ctx.status.restartCount ?? 0) + 1 });
        ctx.log.warn({ pid: previous.pid, reason, restarts: ctx.status.restartCount }, 'restarting the VMM');
      }
      const { cgroups, limits } = ctx.ports.sandbox;
      const uid = ctx.vm.id.uid;
      const cgroupProcs = await cgroups.ensure(uid, vmmCgroupLimits(ctx.vm.spec.memoryMb, limits));
      const identity = vmmIdentityOf(ctx);
      const sandbox: VmmSandbox = { cgroupProcs, ...(identity !== undefined ? { identity } : {}) };
      const launch = {
        ...buildLaunchSpec(ctx.vm, ctx.vmDir, cloudInitFilesFor(ctx.vm, ctx.vmDir, ctx.ports.networkConfig ?? {}), cidataPathFor(ctx)),
        sandbox,
      };
      const startedAt = ctx.ports.clock.now();
      let process;
      try {
        process = await provider.start(launch, ctx.signal);
      } catch (e) {
        // The provider leaves no process behind (aborted or failed), so nothing holds the cgroup.
        await cgroups.remove(uid).catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'could not remove the VMM cgroup'));
        throw e;
      }
      const { nextRestartAt: _due, ...current } = ctx.status;
      ctx.saveStatus({
        ...current,
        vmm: { pid: process.pid, startTime: process.startTime, provider: provider.name, startedAt },
        power: 'running',
        consoleLogPath: launch.consoleLogPath,
      });
      ctx.log.info({ pid: process.pid, provider: provider.name }, 'vmm running');
    },
  };
}

/** Stops the VMM (gracefully, then SIGKILL), including one that was spawned but never recorded. */
async function stopVmm(ctx: StepContext): Promise<void> {
  const { processes } = ctx.ports;
  // One the status never learned of (started just before a crash) must not outlive its VM either.
  const unrecorded = await unrecordedVmm(ctx);
  if (unrecorded !== undefined) {
    await processes.signal(unrecorded, 'SIGKILL');
    ctx.log.warn({ pid: unrecorded.pid }, 'killed a VMM that was started but not recorded');
  }
  const vmm = ctx.status.vmm;
  if (vmm === undefined) return;
  if (await processes.isAlive(vmm)) {
    const provider = ctx.ports.providers.get(vmm.provider);
    if (provider !== undefined) await provider.stop(ctx.vmDir, vmm, ctx.ports.deleteVmTimeoutMs);
    // Whatever the provider did, a VMM must not outlive its VM.
    if (await processes.isAlive(vmm)) await processes.signal(vmm, 'SIGKILL');
  }
  const { vmm: _stopped, nextRestartAt: _noRestart, ...rest } = ctx.status;
  ctx.saveStatus({ ...rest, power: 'stopped' });
}

export function stopVmmStep(ctx: StepContext): Step {
  const { processes } = ctx.ports;
  return {
    name: 'vmm_stop',
    shouldDo: async () => {
      const vmm = ctx.status.vmm;
      return (vmm !== undefined && (await processes.isAlive(vmm))) || (await unrecordedVmm(ctx)) !== undefined;
    },
    do: () => stopVmm(ctx),
  };
}

/** A restart asked for (LifecycleIntent.restarts) and not done yet: the VMM is stopped, startVmmStep starts it. */
export function restartVmmStep(ctx: StepContext): Step {
  const asked = intentOf(ctx.vm).restarts;
  return {
    name: 'vmm_restart',
    shouldDo: () => Promise.resolve((ctx.status.restartsDone ?? 0) < asked),
    do: async () => {
      await stopVmm(ctx);
      ctx.saveStatus({ ...ctx.status, restartsDone: asked });
      ctx.log.info({ restarts: asked }, 'vmm stopped for a restart');
    },
  };
}

/** Pauses or resumes the running VMM's vCPUs as the intent says (the provider's 'pause' capability). */
export function vmmPowerStep(ctx: StepContext): Step {
  const want = intentOf(ctx.vm).power === 'paused' ? 'paused' : 'running';
  return {
    name: want === 'paused' ? 'vmm_pause' : 'vmm_resume',
    shouldDo: () => Promise.resolve(ctx.status.vmm !== undefined && (ctx.status.power ?? 'running') !== want),
    do: async () => {
      const vmm = ctx.status.vmm;
      if (vmm === undefined) return;
      const provider = availableProvider(ctx);
      if (provider.pause === undefined || provider.resume === undefined) {
        throw new PermanentFailure(`microvm provider ${provider.name} cannot pause or resume a VM`);
      }
      if (want === 'paused') await provider.pause(ctx.vmDir, vmm);
      else await provider.resume(ctx.vmDir, vmm);
      ctx.saveStatus({ ...ctx.status, power: want });
      ctx.log.info({ pid: vmm.pid }, want === 'paused' ? 'vmm paused' : 'vmm resumed');
    },
  };
}
