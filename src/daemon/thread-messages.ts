// What the API thread and the reconcile worker thread say to each other (ADR 0013). Each has its
// own connection to the store; a change one commits is told to the other, which reads the VM
// again from the database, so only ids cross (structured clone of a whole VM would cost more than
// the read).
import type { ImageCacheSize, ImagePullOutcome } from '../adapters/images/oci-image-service.js';
import type { Config } from '../config/config.js';
import type { LogOptions } from '../adapters/log/logger.js';
import type { VmId } from '../core/model.js';
import type { StepOutcome, VmChange } from '../core/ports.js';

export type CommittedChange = { readonly kind: 'upsert'; readonly uid: string } | { readonly kind: 'removed'; readonly id: VmId };

/** A committed change as told across: ids only. */
export function committed(change: VmChange): CommittedChange {
  return change.kind === 'upsert' ? { kind: 'upsert', uid: change.vm.id.uid } : { kind: 'removed', id: change.id };
}

export interface WorkerData {
  readonly config: Config;
  readonly log: LogOptions;
  readonly deviceOwner: string;
  /** The store's write lock word, shared with the main thread (adapters/store/write-lock.ts). */
  readonly writeLock: SharedArrayBuffer;
}

export type ToWorker =
  | { readonly type: 'trigger'; readonly uid: string }
  | { readonly type: 'committed'; readonly changes: readonly CommittedChange[] }
  | { readonly type: 'cache-size'; readonly id: number }
  | { readonly type: 'reopen-log' }
  | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'committed'; readonly changes: readonly CommittedChange[] }
  | { readonly type: 'step'; readonly kind: string; readonly ms: number; readonly outcome: StepOutcome }
  | { readonly type: 'image-received'; readonly bytes: number }
  | { readonly type: 'image-pulled'; readonly outcome: ImagePullOutcome; readonly seconds: number }
  | { readonly type: 'cache-size'; readonly id: number; readonly size?: ImageCacheSize; readonly error?: string }
  | { readonly type: 'stopped' };

/**
 * Collects this side's commits and tells them in one message per turn of the event loop, each VM
 * once (its latest kind): a reconcile writes a VM's status several times in a row, and the other
 * side reads a VM again per notice.
 */
export class CommitBatcher {
  private pending = new Map<string, CommittedChange>();
  private scheduled = false;

  constructor(private readonly send: (changes: readonly CommittedChange[]) => void) {}

  add(change: VmChange): void {
    const told = committed(change);
    const uid = told.kind === 'upsert' ? told.uid : told.id.uid;
    // A VM removed after an upsert in the same turn: only the removal is told.
    this.pending.delete(uid);
    this.pending.set(uid, told);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Tells what is pending now (before a stop). */
  flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) return;
    const changes = [...this.pending.values()];
    this.pending = new Map();
    this.send(changes);
  }
}
