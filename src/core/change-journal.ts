// The daemon's recent change history, for watches that resume (docs/adr/0011). Each committed
// change gets the next sequence number; the last `capacity` changes are kept as ids only (never
// whole VMs), so the history costs a bounded, small amount of memory whatever the VMs hold. A
// resuming watch is sent the current state of each VM that changed since its position, which is
// exact because the store, the history and the listeners all run on the one event loop: nothing
// this thread commits can land between reading the position and reading the VMs. A commit of the
// reconcile worker thread (ADR 0013) is journaled when its notice arrives, so a VM read just
// before may be sent once more; never one change less.
import type { MicroVM, VmId } from './model.js';
import type { ListQuery, VmChange } from './ports.js';
import { matches } from './service.js';

export interface JournalEntry {
  readonly sequence: number;
  readonly kind: VmChange['kind'];
  readonly id: VmId;
}

/** What a resuming watch is sent instead of a snapshot, in sequence order. */
export type ReplayItem =
  { readonly kind: 'upsert'; readonly sequence: number; readonly vm: MicroVM } | { readonly kind: 'removed'; readonly sequence: number; readonly id: VmId };

export interface ChangeSource {
  watch(query: ListQuery, listener: (change: VmChange) => void): () => void;
  get(uid: string): { ok: true; value: MicroVM } | { ok: false };
}

export type JournalListener = (sequence: number, change: VmChange) => void;

export const DEFAULT_JOURNAL_CAPACITY = 8192;

export class ChangeJournal {
  private current = 0;
  /** A ring: entries[(sequence - 1) % capacity] while the sequence is still kept. */
  private readonly entries: (JournalEntry | undefined)[];
  private readonly listeners = new Set<{ readonly fn: JournalListener }>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly source: ChangeSource,
    /** Names this run of the daemon: positions from another run are meaningless here. */
    readonly epoch: string,
    private readonly capacity = DEFAULT_JOURNAL_CAPACITY,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`journal capacity must be a positive integer, got ${capacity}`);
    this.entries = new Array<JournalEntry | undefined>(capacity);
    this.unsubscribe = source.watch({}, (change) => this.record(change));
  }

  /** The sequence of the latest change (0 before any). */
  get sequence(): number {
    return this.current;
  }

  /** Called with each change after it is numbered; returns an unsubscribe function. */
  subscribe(fn: JournalListener): () => void {
    const entry = { fn };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /**
   * What changed after `sequence` among the VMs matching `query`: each changed VM once, as it is
   * now, ordered by its latest change. Undefined when that history is no longer (or never was) kept.
   */
  replay(epoch: string, sequence: number, query: ListQuery): ReplayItem[] | undefined {
    if (epoch !== this.epoch || !Number.isSafeInteger(sequence) || sequence < 0 || sequence > this.current) return undefined;
    const oldestKept = Math.max(1, this.current - this.capacity + 1);
    if (sequence + 1 < oldestKept) return undefined;
    const latest = new Map<string, JournalEntry>();
    for (let s = sequence + 1; s <= this.current; s++) {
      const entry = this.entries[(s - 1) % this.capacity];
      if (entry === undefined || entry.sequence !== s) return undefined;
      if (!matches(query, entry.id.namespace, entry.id.name)) continue;
      // Re-inserted so the map's order is the order of each VM's latest change.
      latest.delete(entry.id.uid);
      latest.set(entry.id.uid, entry);
    }
    return [...latest.values()].map((entry): ReplayItem => {
      const found = entry.kind === 'upsert' ? this.source.get(entry.id.uid) : undefined;
      return found?.ok === true ? { kind: 'upsert', sequence: entry.sequence, vm: found.value } : { kind: 'removed', sequence: entry.sequence, id: entry.id };
    });
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private record(change: VmChange): void {
    const sequence = ++this.current;
    const id = change.kind === 'upsert' ? change.vm.id : change.id;
    this.entries[(sequence - 1) % this.capacity] = { sequence, kind: change.kind, id };
    for (const l of [...this.listeners]) {
      try {
        l.fn(sequence, change);
      } catch {
        // One broken watcher must not stop the others (the change is committed either way).
      }
    }
  }
}
