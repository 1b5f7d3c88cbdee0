// The VMM provider registry: every provider this daemon speaks, and the default one.
import type { DefaultProvider } from '../../config/config.js';
import type { Logger, ProcessTable, ProviderRegistry, VmmProvider } from '../../core/ports.js';
import { CloudHypervisorProvider } from './cloud-hypervisor.js';
import { FirecrackerProvider } from './firecracker.js';
import { findExecutable } from '../host/programs.js';
import { kvmUsable } from './host.js';
import { QemuProvider } from './qemu.js';

export interface ProviderBinaries {
  readonly firecracker: string;
  readonly cloudhypervisor: string;
  readonly qemu: string;
}

export class StaticProviderRegistry implements ProviderRegistry {
  private readonly providers: Map<string, VmmProvider>;
  private readonly resolvedDefault: string;

  constructor(providers: readonly VmmProvider[], defaultName: string) {
    this.providers = new Map(providers.map((p) => [p.name, p]));
    if (!this.providers.has(defaultName)) throw new Error(`the provided default provider name ${defaultName} isn't a supported provider`);
    this.resolvedDefault = defaultName;
  }

  names(): string[] {
    return [...this.providers.keys()];
  }

  get(name: string): VmmProvider | undefined {
    return this.providers.get(name);
  }

  defaultName(): string {
    return this.resolvedDefault;
  }
}

/** `auto`: Firecracker when its binary and /dev/kvm are usable, else Cloud Hypervisor likewise, else QEMU. */
export function resolveDefaultProvider(choice: DefaultProvider, bins: ProviderBinaries, kvm = kvmUsable()): keyof ProviderBinaries {
  if (choice !== 'auto') return choice;
  if (kvm && bins.firecracker !== '' && findExecutable(bins.firecracker) !== undefined) return 'firecracker';
  if (kvm && bins.cloudhypervisor !== '' && findExecutable(bins.cloudhypervisor) !== undefined) return 'cloudhypervisor';
  return 'qemu';
}

export interface ProviderSandboxOptions {
  /** VMMs run as uids of their own (`vmm-uid-range` set). */
  readonly sandboxed: boolean;
  /** `firecracker-jailer-bin`; empty: no jailer. */
  readonly firecrackerJailer: string;
}

export function createProviderRegistry(
  choice: DefaultProvider,
  bins: ProviderBinaries,
  deps: { processes: ProcessTable; log: Logger },
  sandbox: ProviderSandboxOptions = { sandboxed: false, firecrackerJailer: '' },
): StaticProviderRegistry {
  const providers: VmmProvider[] = [
    new FirecrackerProvider({ bin: bins.firecracker, ...deps, sandboxed: sandbox.sandboxed, jailerBin: sandbox.firecrackerJailer }),
    new CloudHypervisorProvider({ bin: bins.cloudhypervisor, ...deps, sandboxed: sandbox.sandboxed }),
    new QemuProvider({ bin: bins.qemu, ...deps, sandboxed: sandbox.sandboxed }),
  ];
  return new StaticProviderRegistry(providers, resolveDefaultProvider(choice, bins));
}
