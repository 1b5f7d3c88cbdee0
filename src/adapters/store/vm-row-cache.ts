// Parsed VM rows, kept per uid for the row version they were parsed from. A read asks SQLite
// only for the version (an integer) and parses the spec and status JSON (kilobytes of a CAPMVM
// spec) only when that version is not here: under load the API reads the same VMs over and over
// while few of them change, and the parse was the store's largest cost (bench/load.ts profile).
// Every write bumps the version, so a hit is never stale. Only committed rows go in: the
// repository adds a row it wrote after its transaction returned.
//
// Returning the same object for an unchanged VM also lets the API layer keep its conversion and
// encoding per VM object (a WeakMap there).
import type { MicroVM } from '../../core/model.js';

export interface CachedVm {
  readonly vm: MicroVM;
  /** The status as stored (canonical JSON), to tell a status write that changes nothing. */
  readonly statusJson: string;
}

/**
 * Freezes a VM (deeply) before it is shared: readers get the same object, and one that changed
 * it would change what every later read returns. A write to it throws instead.
 */
export function frozen<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) frozen(inner);
    Object.freeze(value);
  }
  return value;
}

export class VmRowCache {
  private readonly entries = new Map<string, CachedVm>();

  constructor(private readonly capacity: number) {}

  /** The VM parsed from version `version` of its row, if it is here. */
  get(uid: string, version: number): CachedVm | undefined {
    const entry = this.entries.get(uid);
    return entry !== undefined && entry.vm.version === version ? entry : undefined;
  }

  set(entry: CachedVm): void {
    frozen(entry.vm);
    const uid = entry.vm.id.uid;
    this.entries.delete(uid);
    this.entries.set(uid, entry);
    // The oldest written goes first; a miss only costs a parse.
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
  }

  delete(uid: string): void {
    this.entries.delete(uid);
  }
}
