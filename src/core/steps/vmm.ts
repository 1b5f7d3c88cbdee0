// The VMM through the provider port. The VMM process is identified by pid and start time (never
// a pid alone: pids are reused), so a restarted daemon re-adopts a running VMM instead of
// starting a second one. A provider that is not available fails the step with a reason that
// says so; the reconciler retries and then marks the VM FAILED with that reason.
import type { VmmProvider } from '../ports.js';
import { buildLaunchSpec, CIDATA_FILE } from '../launch.js';
import { cloudInitFilesFor } from './cloud-init.js';
import type { Step, StepContext } from './step.js';
import { join } from 'node:path';

function availableProvider(ctx: StepContext): VmmProvider {
  const name = ctx.vm.spec.provider;
  const provider = ctx.ports.providers.get(name);
  if (provider === undefined) throw new Error(`microvm provider ${name} is not known to this daemon`);
  const availability = provider.availability();
  if (!availability.available) throw new Error(`microvm provider ${name} is not available: ${availability.reason ?? 'no reason given'}`);
  return provider;
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
      const previous = ctx.status.vmm;
      if (previous !== undefined) {
        // It ran and is gone on its own: record how, count the restart (COMPAT §2.7).
        const reason = ctx.status.lastExitReason ?? `vmm process ${previous.pid} ended: ${processes.exitReason(previous) ?? 'exit status unknown'}`;
        const { vmm: _gone, ...rest } = ctx.status;
        ctx.saveStatus({ ...rest, lastExitReason: reason, restartCount: (ctx.status.restartCount ?? 0) + 1 });
        ctx.log.warn({ pid: previous.pid, reason, restarts: ctx.status.restartCount }, 'restarting the VMM');
      }
      const cidata = provider.capabilities.has('metadata-service') ? undefined : join(ctx.vmDir, CIDATA_FILE);
      const launch = buildLaunchSpec(ctx.vm, ctx.vmDir, cloudInitFilesFor(ctx.vm, ctx.vmDir), cidata);
      const process = await provider.start(launch);
      ctx.saveStatus({
        ...ctx.status,
        vmm: { pid: process.pid, startTime: process.startTime, provider: provider.name },
        consoleLogPath: launch.consoleLogPath,
      });
      ctx.log.info({ pid: process.pid, provider: provider.name }, 'vmm running');
    },
  };
}

export function stopVmmStep(ctx: StepContext): Step {
  const { processes } = ctx.ports;
  return {
    name: 'vmm_stop',
    shouldDo: async () => {
      const vmm = ctx.status.vmm;
      return vmm !== undefined && (await processes.isAlive(vmm));
    },
    do: async () => {
      const vmm = ctx.status.vmm;
      if (vmm === undefined) return;
      const provider = ctx.ports.providers.get(vmm.provider);
      if (provider !== undefined) await provider.stop(ctx.vmDir, vmm, ctx.ports.deleteVmTimeoutMs);
      // Whatever the provider did, a VMM must not outlive its VM.
      if (await processes.isAlive(vmm)) await processes.signal(vmm, 'SIGKILL');
      const { vmm: _stopped, ...rest } = ctx.status;
      ctx.saveStatus(rest);
    },
  };
}
