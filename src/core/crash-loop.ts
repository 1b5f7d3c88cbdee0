// Crash-loop backoff for VMM restarts. A VMM that ends on its own is restarted, but a guest that
// crashes as soon as it starts (a bad kernel command line, a guest that powers off) must not make
// the daemon spin starting VMMs: each exit that came within the stable period of its start counts
// as one more in a loop. The first is restarted at once (one crash is not a loop); from the second,
// each restart waits out a backoff that doubles, as a failed reconcile's does (the same base and
// cap). A VMM that runs through the stable period ends the loop (the watcher resets the count).
// The count and the due time are in the VM's status, so `fl` and the API show why it waits, and a
// restarted daemon keeps waiting.
import type { MicroVMStatus } from './model.js';
import { backoffDelay } from './reconciler.js';

export interface CrashLoopOptions {
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** A VMM that ran this long before it ended was not crash-looping. */
  readonly stableMs: number;
}

export const DEFAULT_STABLE_RUN_MS = 60_000;

/** The status fields to record when the VMM of `status` ended at `now`. */
export function crashLoopAfterExit(status: MicroVMStatus, now: number, options: CrashLoopOptions): Pick<MicroVMStatus, 'crashLoopCount' | 'nextRestartAt'> {
  const startedAt = status.vmm?.startedAt;
  // Unknown start (a record from before this was kept): not counted as a loop.
  const quick = startedAt !== undefined && now - startedAt < options.stableMs;
  const crashLoopCount = quick ? (status.crashLoopCount ?? 0) + 1 : 0;
  if (crashLoopCount < 2) return { crashLoopCount };
  return { crashLoopCount, nextRestartAt: now + backoffDelay(crashLoopCount - 1, options.backoffBaseMs, options.backoffMaxMs) };
}

/** A running VMM has run through the stable period: the loop, if there was one, is over. */
export function crashLoopEnded(status: MicroVMStatus, now: number, options: CrashLoopOptions): boolean {
  const startedAt = status.vmm?.startedAt;
  return (status.crashLoopCount ?? 0) > 0 && startedAt !== undefined && now - startedAt >= options.stableMs;
}
