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
  | { readonly type: 'committed'; readonly change: CommittedChange }
  | { readonly type: 'cache-size'; readonly id: number }
  | { readonly type: 'reopen-log' }
  | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'committed'; readonly change: CommittedChange }
  | { readonly type: 'step'; readonly kind: string; readonly ms: number; readonly outcome: StepOutcome }
  | { readonly type: 'image-received'; readonly bytes: number }
  | { readonly type: 'image-pulled'; readonly outcome: ImagePullOutcome; readonly seconds: number }
  | { readonly type: 'cache-size'; readonly id: number; readonly size?: ImageCacheSize; readonly error?: string }
  | { readonly type: 'stopped' };
