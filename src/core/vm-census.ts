// How many VMs this host has, by state and provider, and which VMM processes run their guests:
// read from the store once, then kept up to date from its change events, so a metrics scrape or
// a host-info call costs a walk over an in-memory map, never a store scan.
import type { MicroVM, VmState } from './model.js';
import type { MicroVMRepository } from './ports.js';

/** A deleted VM still in the store (its delete not yet reconciled) counts as `deleting`. */
export type CensusState = VmState;

export interface CensusEntry {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly state: CensusState;
  readonly provider: string;
  readonly vcpu: number;
  readonly memoryMb: number;
  /** The VMM recorded as running the guest, when there is one. */
  readonly vmm?: { readonly pid: number; readonly startTime: number };
}

export interface StateCount {
  readonly state: CensusState;
  readonly provider: string;
  readonly count: number;
}

function entryOf(vm: MicroVM): CensusEntry {
  const vmm = vm.status.vmm;
  return {
    uid: vm.id.uid,
    namespace: vm.id.namespace,
    name: vm.id.name,
    state: vm.deletedAt !== undefined ? 'deleting' : vm.status.state,
    provider: vm.spec.provider,
    vcpu: vm.spec.vcpu,
    memoryMb: vm.spec.memoryMb,
    ...(vmm !== undefined ? { vmm: { pid: vmm.pid, startTime: vmm.startTime } } : {}),
  };
}

export class VmCensus {
  private readonly entries = new Map<string, CensusEntry>();
  private readonly unsubscribe: () => void;

  constructor(repo: MicroVMRepository) {
    // Subscribed first, then read: a change committed in between is applied twice, harmlessly.
    this.unsubscribe = repo.onChange((change) => {
      if (change.kind === 'upsert') this.entries.set(change.vm.id.uid, entryOf(change.vm));
      else this.entries.delete(change.id.uid);
    });
    for (const vm of repo.list({})) this.entries.set(vm.id.uid, entryOf(vm));
  }

  /** VMs by state and provider; only combinations that have VMs. */
  counts(): StateCount[] {
    const counts = new Map<string, StateCount>();
    for (const { state, provider } of this.entries.values()) {
      const key = `${state}\0${provider}`;
      counts.set(key, { state, provider, count: (counts.get(key)?.count ?? 0) + 1 });
    }
    return [...counts.values()];
  }

  /** Every VM with a VMM recorded as running its guest. */
  withVmm(): Array<CensusEntry & { readonly vmm: NonNullable<CensusEntry['vmm']> }> {
    return [...this.entries.values()].filter((e): e is CensusEntry & { vmm: NonNullable<CensusEntry['vmm']> } => e.vmm !== undefined);
  }

  /** vCPUs and memory the VMs not being deleted ask for. */
  allocated(): { vcpus: number; memoryMb: number } {
    let vcpus = 0;
    let memoryMb = 0;
    for (const e of this.entries.values()) {
      if (e.state === 'deleting') continue;
      vcpus += e.vcpu;
      memoryMb += e.memoryMb;
    }
    return { vcpus, memoryMb };
  }

  close(): void {
    this.unsubscribe();
  }
}
