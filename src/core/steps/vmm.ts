// The VMM through the provider port. A provider that is not available (binary missing, or not
// built yet) fails the step with a reason that says so; the reconciler retries and then marks
// the VM FAILED with that reason.
import type { VmmProvider } from '../ports.js';
import type { Step, StepContext } from './step.js';

function availableProvider(ctx: StepContext): VmmProvider {
  const name = ctx.vm.spec.provider;
  const provider = ctx.ports.providers.get(name);
  if (provider === undefined) throw new Error(`microvm provider ${name} is not known to this daemon`);
  const availability = provider.availability();
  if (!availability.available) throw new Error(`microvm provider ${name} is not available: ${availability.reason ?? 'no reason given'}`);
  return provider;
}

export function startVmmStep(ctx: StepContext): Step {
  return {
    name: 'vmm_start',
    shouldDo: async () => {
      const provider = ctx.ports.providers.get(ctx.vm.spec.provider);
      // An unavailable provider means work is still to do; `do` explains why it can't be done.
      if (provider === undefined || !provider.availability().available) return true;
      return (await provider.state(ctx.vm, ctx.vmDir)) !== 'running';
    },
    do: async () => availableProvider(ctx).start(ctx.vm, ctx.vmDir),
  };
}

export function stopVmmStep(ctx: StepContext): Step {
  return {
    name: 'vmm_stop',
    shouldDo: async () => {
      const provider = ctx.ports.providers.get(ctx.vm.spec.provider);
      // A provider that can't run here can't have a VMM running to stop.
      if (provider === undefined || !provider.availability().available) return false;
      return (await provider.state(ctx.vm, ctx.vmDir)) === 'running';
    },
    do: async () => availableProvider(ctx).stop(ctx.vm, ctx.vmDir),
  };
}
