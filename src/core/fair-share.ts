// Fair share of the reconcile workers between namespaces (a namespace is a tenant: CAPMVM puts
// each cluster in its own). Each namespace is charged for its use of the workers (the reconciler
// charges one unit per attempt), and the charge decays with a half-life, so what counts is recent
// use. When a worker is free, the ready VM whose namespace used the least goes first: a namespace
// that floods the queue with creates that keep failing slows itself, not a quiet namespace's
// healthy VM, which otherwise would wait first-in-first-out behind every attempt queued before it.

const DEFAULT_HALF_LIFE_MS = 10_000;
/** A use this small is forgotten (keeps the table to namespaces in use lately). */
const NEGLIGIBLE = 0.01;
const PRUNE_AT_ENTRIES = 1024;

export class FairShare {
  private readonly used = new Map<string, { amount: number; at: number }>();

  constructor(private readonly halfLifeMs = DEFAULT_HALF_LIFE_MS) {}

  /** Adds `amount` to `key`'s use at `now`. */
  charge(key: string, amount: number, now: number): void {
    this.used.set(key, { amount: this.usage(key, now) + Math.max(0, amount), at: now });
    if (this.used.size > PRUNE_AT_ENTRIES) this.prune(now);
  }

  /** `key`'s decayed use at `now` (0 for a key never charged). */
  usage(key: string, now: number): number {
    const entry = this.used.get(key);
    if (entry === undefined) return 0;
    return entry.amount * 2 ** (-Math.max(0, now - entry.at) / this.halfLifeMs);
  }

  private prune(now: number): void {
    for (const key of [...this.used.keys()]) if (this.usage(key, now) < NEGLIGIBLE) this.used.delete(key);
  }
}
