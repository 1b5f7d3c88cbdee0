// The VMM provider registry. It knows every provider this daemon speaks, with the capabilities
// each VMM has, and whether its binary is installed. The providers themselves arrive with the
// VMM work (issue 4); until then each reports itself unavailable with the reason, which the
// reconciler records when it fails a VM.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { MicroVM } from '../../core/model.js';
import type { ProviderAvailability, ProviderCapability, ProviderRegistry, VmmProvider, VmmState } from '../../core/ports.js';
import type { DefaultProvider } from '../../config/config.js';

export interface ProviderBinaries {
  readonly firecracker: string;
  readonly cloudhypervisor: string;
  readonly qemu: string;
}

/** What each VMM can do (COMPAT §3: upstream Firecracker has no macvtap; it has MMDS). */
export const CAPABILITIES: Readonly<Record<keyof ProviderBinaries, readonly ProviderCapability[]>> = {
  firecracker: ['tap', 'metadata-service', 'vsock'],
  cloudhypervisor: ['macvtap', 'tap', 'virtiofs', 'vsock', 'pause'],
  qemu: ['macvtap', 'tap', 'pause'],
};

/** Absolute path of an executable, searching PATH for a bare name. */
export function findExecutable(bin: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = bin.includes('/')
    ? [bin]
    : path
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => join(d, bin));
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** A provider whose VMM driver is not part of this build: always unavailable, saying why. */
class NotYetImplementedProvider implements VmmProvider {
  readonly capabilities: ReadonlySet<ProviderCapability>;

  constructor(
    readonly name: string,
    private readonly bin: string,
    capabilities: readonly ProviderCapability[],
  ) {
    this.capabilities = new Set(capabilities);
  }

  availability(): ProviderAvailability {
    if (this.bin === '') return { available: false, reason: `${this.name}-bin is empty, so the provider is disabled` };
    if (findExecutable(this.bin) === undefined) return { available: false, reason: `binary "${this.bin}" not found` };
    return { available: false, reason: `the ${this.name} provider is not implemented in this build of flintlockd` };
  }

  start(_vm: MicroVM): Promise<void> {
    return Promise.reject(new Error(this.availability().reason));
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  state(): Promise<VmmState> {
    return Promise.resolve('stopped');
  }
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

export function createProviderRegistry(choice: DefaultProvider, bins: ProviderBinaries): StaticProviderRegistry {
  const providers = (Object.keys(CAPABILITIES) as Array<keyof ProviderBinaries>).map(
    (name) => new NotYetImplementedProvider(name, bins[name], CAPABILITIES[name]),
  );
  return new StaticProviderRegistry(providers, resolveDefaultProvider(choice, bins));
}
