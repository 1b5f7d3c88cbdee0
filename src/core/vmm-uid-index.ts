// Which uids of `vmm-uid-range` the stored VMs hold (ADR 0009), kept from the store's change
// events so that allocating one for a new VM costs a few set lookups instead of reading every
// stored VM (with 5000 pending VMs that read was ~40% of the daemon's CPU: bench/daemon-scale.ts).
// An allocation is saved in the VM's status in the same synchronous turn as it is picked, and
// the save's change event reaches this index at once, so no two VMs can be given the same uid.
import type { MicroVMRepository } from './ports.js';

export class VmmUidIndex {
  /** VM uid -> the VMM uid its status holds. */
  private readonly byVm = new Map<string, number>();
  /** How many stored VMs hold each VMM uid (more than one only in a store from before the index). */
  private readonly holders = new Map<number, number>();
  private readonly unsubscribe: () => void;

  constructor(repo: MicroVMRepository) {
    // Subscribed first, then read: a change committed in between is applied twice, harmlessly.
    this.unsubscribe = repo.onChange((change) => {
      if (change.kind === 'upsert') this.set(change.vm.id.uid, change.vm.status.vmmIdentity?.uid);
      else this.set(change.id.uid, undefined);
    });
    for (const vm of repo.list({})) this.set(vm.id.uid, vm.status.vmmIdentity?.uid);
  }

  /** Whether a stored VM holds this VMM uid. */
  has(uid: number): boolean {
    return (this.holders.get(uid) ?? 0) > 0;
  }

  close(): void {
    this.unsubscribe();
  }

  private set(vmUid: string, vmmUid: number | undefined): void {
    const before = this.byVm.get(vmUid);
    if (before === vmmUid) return;
    if (before !== undefined) {
      const n = (this.holders.get(before) ?? 1) - 1;
      if (n > 0) this.holders.set(before, n);
      else this.holders.delete(before);
      this.byVm.delete(vmUid);
    }
    if (vmmUid !== undefined) {
      this.byVm.set(vmUid, vmmUid);
      this.holders.set(vmmUid, (this.holders.get(vmmUid) ?? 0) + 1);
    }
  }
}
