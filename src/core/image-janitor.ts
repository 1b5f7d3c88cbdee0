// Garbage collection of cached images: at start-up and after VMs are removed, every image no
// stored VM references (by digest, recorded in its status) goes, once past the keep time.
import type { ImageService, Logger, MicroVMRepository } from './ports.js';
import { errorMessage } from './result.js';

export class ImageJanitor {
  private pending: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly repo: MicroVMRepository,
    private readonly images: ImageService,
    private readonly log: Logger,
    /** Removals in quick succession (a cluster deleted at once) share one collection. */
    private readonly debounceMs = 2000,
  ) {}

  start(): void {
    this.unsubscribe = this.repo.onChange((change) => {
      if (change.kind === 'removed') this.schedule();
    });
    void this.collect();
  }

  stop(): Promise<void> {
    this.unsubscribe?.();
    if (this.pending !== undefined) clearTimeout(this.pending);
    return this.running;
  }

  private schedule(): void {
    if (this.pending !== undefined) clearTimeout(this.pending);
    this.pending = setTimeout(() => void this.collect(), this.debounceMs);
    this.pending.unref();
  }

  /** One collection (serialised with any running one). */
  collect(): Promise<void> {
    this.running = this.running.then(async () => {
      const referenced = new Set(this.repo.list({}).flatMap((vm) => Object.values(vm.status.images ?? {})));
      try {
        const removed = await this.images.collectGarbage(referenced);
        if (removed.length > 0) this.log.info({ removed }, `removed ${removed.length} unused cached images`);
      } catch (e) {
        this.log.warn({ error: errorMessage(e) }, 'image garbage collection failed');
      }
    });
    return this.running;
  }
}
