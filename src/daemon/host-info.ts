// Gathers what Host/GetHostInfo reports, from the adapters the composition root wires: the
// providers' availability, KVM, the configured network devices as the host has them now, and
// capacity (CPUs and memory from the OS, the VMs from the census: no store scan per call).
import { hostname, cpus, freemem, totalmem } from 'node:os';
import type { HostReport } from '../adapters/api/grpc/host.js';
import { kvmSupport } from '../adapters/providers/host.js';
import type { NetworkService, ProviderRegistry } from '../core/ports.js';
import type { VmCensus } from '../core/vm-census.js';
import { hostNetworkModes } from './prerequisites.js';
import { daemonVersion } from './version.js';

export interface HostInfoSources {
  readonly providers: ProviderRegistry;
  readonly network: Pick<NetworkService, 'getLink'>;
  readonly hostNetwork: { readonly parentIface?: string; readonly bridgeName?: string };
  readonly census: VmCensus;
}

export async function gatherHostReport(sources: HostInfoSources): Promise<HostReport> {
  const { providers, census } = sources;
  const allocated = census.allocated();
  return {
    daemonVersion: daemonVersion(),
    hostname: hostname(),
    defaultProvider: providers.defaultName(),
    providers: providers.names().flatMap((name) => {
      const provider = providers.get(name);
      if (provider === undefined) return [];
      const availability = provider.availability();
      return [
        {
          name,
          available: availability.available,
          ...(availability.reason !== undefined ? { reason: availability.reason } : {}),
          capabilities: [...provider.capabilities].sort(),
        },
      ];
    }),
    kvm: kvmSupport(),
    networkModes: (await hostNetworkModes(sources.network, sources.hostNetwork)).map((m) => ({
      type: m.type,
      configKey: m.configKey,
      device: m.device,
      ...(m.problem !== undefined ? { problem: m.problem.message } : {}),
    })),
    capacity: {
      cpus: cpus().length,
      memoryTotalBytes: totalmem(),
      // libuv reads MemAvailable (not MemFree) from /proc/meminfo.
      memoryAvailableBytes: freemem(),
      microvmsRunning: census.withVmm().length,
      vcpusAllocated: allocated.vcpus,
      memoryAllocatedBytes: allocated.memoryMb * 1024 * 1024,
      microvms: census.counts(),
    },
  };
}
