// Fake time for the Clock and Timers ports: nothing happens until the test advances it, so
// backoff of minutes is tested in microseconds, exactly.
import { setImmediate as yieldToIo } from 'node:timers/promises';
import type { Clock, Timers } from '../../src/core/ports.js';

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

export class FakeTime implements Clock, Timers {
  private current: number;
  private seq = 0;
  private pending: Pending[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  after(ms: number, fn: () => void): () => void {
    const entry = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    this.pending.push(entry);
    return () => {
      this.pending = this.pending.filter((p) => p !== entry);
    };
  }

  /** Due times of what is waiting, relative to now. */
  waiting(): number[] {
    return this.pending.map((p) => p.at - this.current).sort((a, b) => a - b);
  }

  /** Lets promise chains and I/O callbacks (SQLite, the reconcile's awaits) run. */
  async settle(rounds = 20): Promise<void> {
    for (let i = 0; i < rounds; i++) await yieldToIo();
  }

  /**
   * Moves time forward by `ms`. Timers due at the same instant run together, in the order they were
   * set (as Node runs all expired timers in one pass), then everything settles before the next.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await this.settle();
      const at = Math.min(...this.pending.map((p) => p.at));
      if (!Number.isFinite(at) || at > target) break;
      const due = this.pending.filter((p) => p.at === at).sort((a, b) => a.seq - b.seq);
      this.pending = this.pending.filter((p) => p.at !== at);
      this.current = at;
      for (const entry of due) entry.fn();
    }
    this.current = target;
    await this.settle();
  }
}
