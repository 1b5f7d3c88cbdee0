// Shared test fixtures: valid domain objects with sensible defaults, overridable per test.
import { emptyStatus } from '../../src/core/model.js';
import type { MicroVM, MicroVMSpec, MicroVMStatus, VmId } from '../../src/core/model.js';

/** Epoch ms used as the default creation time, so tests don't depend on the wall clock. */
export const SAMPLE_TIME = 1_700_000_000_000;

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
let uidCounter = 0;

/**
 * A 26-character ULID-shaped uid (Crockford base32). Fixed time part, counter as the random
 * part: unique within a process and sorting in creation order, yet reproducible run to run.
 */
export function sampleUid(n: number = ++uidCounter): string {
  let suffix = '';
  let rest = n;
  for (let i = 0; i < 16; i++) {
    suffix = CROCKFORD.charAt(rest % 32) + suffix;
    rest = Math.floor(rest / 32);
  }
  return `01HGW2N7EH${suffix}`;
}

export function sampleSpec(overrides: Partial<MicroVMSpec> = {}): MicroVMSpec {
  return {
    labels: {},
    vcpu: 2,
    memoryMb: 512,
    kernel: { image: 'registry.local/kernel:1', cmdline: { console: 'ttyS0' }, addNetworkConfig: true },
    rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'registry.local/root:1' } },
    additionalVolumes: [],
    interfaces: [{ deviceId: 'eth0', type: 'macvtap' }],
    metadata: {},
    provider: 'qemu',
    allowGuestAgent: false,
    ...overrides,
  };
}

export interface SampleVmOverrides {
  readonly id?: Partial<VmId>;
  readonly version?: number;
  readonly spec?: Partial<MicroVMSpec>;
  readonly status?: Partial<MicroVMStatus>;
  readonly createdAt?: number;
  readonly updatedAt?: number;
  readonly deletedAt?: number;
}

/** A valid MicroVM `ns1/vm1` with a fresh uid; nested parts are merged one level deep. */
export function sampleVm(overrides: SampleVmOverrides = {}): MicroVM {
  const createdAt = overrides.createdAt ?? SAMPLE_TIME;
  const vm: MicroVM = {
    id: { namespace: 'ns1', name: 'vm1', uid: sampleUid(), ...overrides.id },
    version: overrides.version ?? 1,
    spec: sampleSpec(overrides.spec),
    status: { ...emptyStatus(), ...overrides.status },
    createdAt,
    updatedAt: overrides.updatedAt ?? createdAt,
  };
  return overrides.deletedAt === undefined ? vm : { ...vm, deletedAt: overrides.deletedAt };
}
