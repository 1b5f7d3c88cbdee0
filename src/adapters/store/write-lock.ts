// One writer at a time across the daemon's threads (ADR 0013), before SQLite's own lock. SQLite
// makes a connection that finds the database locked sleep and poll (1, 2, 5 ... 100 ms), so a
// thread could sleep tens of milliseconds behind the other thread's sub-millisecond
// transactions, or miss every free moment for the whole busy_timeout under load and fail with
// "database is locked". A lock word in shared memory wakes the waiter the moment it is free.
// A thread that dies holding it ends the daemon anyway (the worker's death is fatal); the wait is
// still bounded, after which SQLite's own lock decides as before.

const FREE = 0;
const HELD = 1;

export class WriteLock {
  private readonly cell: Int32Array;
  private depth = 0;
  private owned = false;

  constructor(
    /** The lock word: made here, or the other thread's (handed over in workerData). */
    readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(4),
    private readonly maxWaitMs = 5000,
  ) {
    this.cell = new Int32Array(buffer);
  }

  /** Runs `write` holding the lock (re-entrant within one thread). */
  run<T>(write: () => T): T {
    if (this.depth === 0) this.owned = this.acquire();
    this.depth++;
    try {
      return write();
    } finally {
      this.depth--;
      if (this.depth === 0 && this.owned) {
        this.owned = false;
        Atomics.store(this.cell, 0, FREE);
        Atomics.notify(this.cell, 0, 1);
      }
    }
  }

  private acquire(): boolean {
    const deadline = Date.now() + this.maxWaitMs;
    for (;;) {
      if (Atomics.compareExchange(this.cell, 0, FREE, HELD) === FREE) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.cell, 0, HELD, left);
    }
  }
}
