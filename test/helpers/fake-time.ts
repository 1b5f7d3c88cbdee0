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

  /** Moves time forward by `ms`, running each timer when its time comes (and settling after each). */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await this.settle();
      const next = [...this.pending].sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (next === undefined || next.at > target) break;
      this.pending = this.pending.filter((p) => p !== next);
      this.current = next.at;
      next.fn();
    }
    this.current = target;
    await this.settle();
  }
}
