// Where one pull's (or one ext4 build's) milliseconds go, by named phase: the service hands them
// to `OciImageServiceOptions.onTimings` (bench/image-pull.ts prints them). Phases that run
// concurrently (layer downloads) each count their own wall time, so the sum can exceed the total.
import { performance } from 'node:perf_hooks';

export class Timings {
  private readonly phases = new Map<string, number>();
  private readonly started = performance.now();

  add(phase: string, ms: number): void {
    this.phases.set(phase, (this.phases.get(phase) ?? 0) + ms);
  }

  async time<T>(phase: string, work: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      this.add(phase, performance.now() - t0);
    }
  }

  /** Milliseconds since this was made. */
  elapsed(): number {
    return performance.now() - this.started;
  }

  entries(): Record<string, number> {
    return Object.fromEntries(this.phases);
  }
}
