// What `fl microvm list --watch` prints from the watch events, across reconnects. It remembers
// the last state of every VM it showed and the position of the last event, so that after a
// reconnect it prints only what changed meanwhile: a resumed watch replays exactly that; a fresh
// snapshot (the daemon restarted) is compared with what it knew, and VMs missing from it are
// printed as deleted.
import type { MicroVM } from '../../gen/flintlock/types/microvm_pb.js';
import { WatchEvent_Type as EventType, type WatchEvent } from '../../gen/flintlock/services/ext/v1alpha1/watch_pb.js';

/** One line (or document) of watch output. SNAPSHOT: the list before the first changes. */
export interface WatchLine {
  /** What the watch RPC said. */
  readonly type: 'SNAPSHOT' | 'UPDATED' | 'DELETED';
  /** What it means for the list shown (kubectl's words): a VM new to it, changed, or gone. */
  readonly event: WatchEventName;
  readonly vm: MicroVM;
}

export type WatchEventName = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchPosition {
  readonly epoch: string;
  readonly sequence: bigint;
}

export class WatchState {
  private readonly known = new Map<string, MicroVM>();
  /** Uids of the fresh snapshot being received on this connection. */
  private snapshot: Set<string> | undefined;
  private snapshotEnded = false;

  /** The first snapshot has ended (so an interruption after it is worth reconnecting over). */
  get listed(): boolean {
    return this.snapshotEnded;
  }
  private last: WatchPosition | undefined;

  /** Where to resume from on the next connection (undefined before the first event). */
  position(): WatchPosition | undefined {
    return this.last;
  }

  /** The lines to print for one event. */
  apply(event: WatchEvent): WatchLine[] {
    this.last = { epoch: event.epoch, sequence: event.sequence };
    const vm = event.microvm;
    const uid = vm?.spec?.uid ?? '';
    switch (event.type) {
      case EventType.SNAPSHOT: {
        if (vm === undefined) return [];
        (this.snapshot ??= new Set()).add(uid);
        const before = this.known.get(uid);
        this.known.set(uid, vm);
        if (!this.snapshotEnded) return [{ type: 'SNAPSHOT', event: 'ADDED', vm }];
        return before?.version === vm.version ? [] : [{ type: 'UPDATED', event: before === undefined ? 'ADDED' : 'MODIFIED', vm }];
      }
      case EventType.SNAPSHOT_END: {
        const present = this.snapshot ?? new Set<string>();
        this.snapshot = undefined;
        this.snapshotEnded = true;
        if (event.resumed) return [];
        // A fresh snapshot is the whole truth: what it lacks was deleted while we were away.
        const gone = [...this.known.entries()].filter(([known]) => !present.has(known));
        for (const [known] of gone) this.known.delete(known);
        return gone.map(([, last]) => ({ type: 'DELETED', event: 'DELETED', vm: last }));
      }
      case EventType.UPDATED: {
        if (vm === undefined) return [];
        const before = this.known.get(uid);
        this.known.set(uid, vm);
        return [{ type: 'UPDATED', event: before === undefined ? 'ADDED' : 'MODIFIED', vm }];
      }
      case EventType.DELETED: {
        if (vm === undefined) return [];
        // The event carries only the ids; the last state seen says more (in the table).
        const last = this.known.get(uid);
        this.known.delete(uid);
        return [{ type: 'DELETED', event: 'DELETED', vm: last ?? vm }];
      }
      default:
        return [];
    }
  }
}

/** Reconnect delays: doubling from `initialMs` up to `maxMs`, back to the start after a success. */
export class Backoff {
  private nextMs: number;

  constructor(
    private readonly initialMs = 250,
    private readonly maxMs = 5000,
  ) {
    this.nextMs = initialMs;
  }

  next(): number {
    const delay = this.nextMs;
    this.nextMs = Math.min(this.maxMs, this.nextMs * 2);
    return delay;
  }

  reset(): void {
    this.nextMs = this.initialMs;
  }
}
