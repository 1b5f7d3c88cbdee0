// What a running reconcile tells clients while it works: the step it is in and how far an image
// pull has got (status.reconcile_step and status.pull_progress), so `fl ... --wait` can show more
// than PENDING for the minutes a big pull takes.
//
// A pull reports every chunk it receives; writing each to the store would be thousands of SQLite
// writes (and watch events) per image. So the writes are throttled: at most one every
// `intervalMs` per VM, the latest state written at the end of the interval (a trailing write),
// so the last change before a quiet spell is never lost. The write itself is the caller's, and it
// is compare-and-swap on the VM's version: progress never overwrites a status someone else wrote.
import type { PullProgress } from '../model.js';
import type { Clock, ImageProgress, Timers } from '../ports.js';

/** At most one progress write per VM in this time. */
export const PROGRESS_WRITE_INTERVAL_MS = 500;

/** The fields progress writes; both absent clears them. */
export interface ProgressFields {
  readonly reconcileStep?: string;
  readonly pullProgress?: PullProgress;
}

/** What the steps report to (a no-op outside a reconcile). */
export interface ProgressReporter {
  /**
   * The steps doing work changed (overlapping steps run together): they are shown joined by ','.
   */
  stepsRunning(names: readonly string[]): void;
  /** An image pull received more bytes. */
  pulled(progress: ImageProgress): void;
}

export const noProgress: ProgressReporter = { stepsRunning: () => undefined, pulled: () => undefined };

/**
 * Writes the fields if the VM has not changed since the reconcile last saw it; false when it has
 * (or is gone): the write is dropped, a newer status stands.
 */
export type ProgressWriter = (fields: ProgressFields) => boolean;

export class ReconcileProgress implements ProgressReporter {
  private step: string | undefined;
  /** The steps `step` names. */
  private running: readonly string[] = [];
  private pull: PullProgress | undefined;
  private lastWriteAt = Number.NEGATIVE_INFINITY;
  private cancelPending: (() => void) | undefined;
  private stopped = false;
  /** Something changed since the last write. */
  private dirty = false;

  constructor(
    private readonly write: ProgressWriter,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly intervalMs = PROGRESS_WRITE_INTERVAL_MS,
  ) {}

  /** One step started (nothing else running): `stepsRunning([name])`. */
  stepStarted(name: string): void {
    this.stepsRunning([name]);
  }

  stepsRunning(names: readonly string[]): void {
    const name = names.join(',');
    // The pull shown belongs to one of the steps that ran: kept while any of them still runs (a
    // sibling that finished says nothing about it); once none does, the next step's pull (if
    // any) starts from nothing, and the last step's numbers would mislead.
    const continues = names.some((n) => this.running.includes(n));
    this.running = [...names];
    if (this.step === name && (continues || this.pull === undefined)) return;
    this.step = name;
    if (!continues) this.pull = undefined;
    this.changed();
  }

  pulled(progress: ImageProgress): void {
    const bytesDone = progress.imageBytes ?? progress.bytes;
    const total = progress.imageTotal ?? progress.total;
    const next: PullProgress = { image: progress.ref, bytesDone, ...(total > 0 ? { bytesTotal: total } : {}) };
    const last = this.pull;
    if (last !== undefined && last.image === next.image && last.bytesDone === next.bytesDone && last.bytesTotal === next.bytesTotal) return;
    this.pull = next;
    this.changed();
  }

  /**
   * The reconcile ended: nothing more is written (a pending write is dropped). The caller's final
   * status write clears the fields (see `withoutProgress`).
   */
  stop(): void {
    this.stopped = true;
    this.cancelPending?.();
    this.cancelPending = undefined;
  }

  /** What was last reported (the step and pull), written or not. */
  current(): ProgressFields {
    return { ...(this.step !== undefined ? { reconcileStep: this.step } : {}), ...(this.pull !== undefined ? { pullProgress: this.pull } : {}) };
  }

  private changed(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.cancelPending !== undefined) return; // the pending write will carry this change
    const wait = this.lastWriteAt + this.intervalMs - this.clock.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.cancelPending = this.timers.after(wait, () => {
      this.cancelPending = undefined;
      this.flush();
    });
  }

  private flush(): void {
    if (this.stopped || !this.dirty) return;
    this.dirty = false;
    this.lastWriteAt = this.clock.now();
    // A dropped write (the VM changed under the reconcile) is not retried: the reconcile will run
    // again on the fresh state, and its own progress follows. A failing store (a full disk, a
    // closed database) must not become an exception in a timer: progress is only a report, and
    // the step's own writes will meet the failure and record it.
    try {
      this.write(this.current());
    } catch {
      this.stop();
    }
  }
}

/** A status without the progress fields: what a reconcile leaves behind when it ends. */
export function withoutProgress<S extends ProgressFields>(status: S): Omit<S, keyof ProgressFields> {
  const { reconcileStep: _step, pullProgress: _pull, ...rest } = status;
  return rest;
}
