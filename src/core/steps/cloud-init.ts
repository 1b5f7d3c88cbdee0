// The cloud-init NoCloud disk (label cidata) for providers without a metadata service.
// Its content follows from the immutable spec and the stable host MACs, so it is built once.
import { join } from 'node:path';
import { cloudInitFiles, type NetworkConfigOptions } from '../cloud-init.js';
import { CIDATA_FILE, launchDisks, launchNics } from '../launch.js';
import { vmIdString, type MicroVM } from '../model.js';
import type { CloudInitFiles, Logger } from '../ports.js';
import type { Step, StepContext } from './step.js';

/** The VM's cloud-init files; warnings (e.g. vendor-data we could not add mounts to) are logged. */
export function cloudInitFilesFor(vm: MicroVM, vmDir: string, options: NetworkConfigOptions, log?: Logger): CloudInitFiles {
  const result = cloudInitFiles(vm, launchNics(vm, vmDir), launchDisks(vm), options);
  if (!result.ok) throw new Error(result.error.message);
  for (const warning of result.value.warnings) log?.warn({ vmid: vmIdString(vm.id) }, `cloud-init: ${warning}`);
  return result.value.files;
}

export function cloudInitDiskStep(ctx: StepContext): Step | undefined {
  const provider = ctx.ports.providers.get(ctx.vm.spec.provider);
  if (provider?.capabilities.has('metadata-service') === true) return undefined;
  const path = join(ctx.vmDir, CIDATA_FILE);
  return {
    name: 'cloud_init_disk',
    shouldDo: async () => !(await ctx.ports.fs.fileExists(path)),
    do: () => ctx.ports.cidata.build(path, cloudInitFilesFor(ctx.vm, ctx.vmDir, ctx.ports.networkConfig ?? {}, ctx.log)),
  };
}
