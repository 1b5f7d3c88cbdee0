// What the daemon does, for Prometheus: VMs by state and provider, the reconcile queue, reconcile
// steps, image pulls and the image cache, and each running VMM's CPU and memory. Gauges are
// computed when scraped, from in-memory state (the VM census) or one aggregate query (the queue);
// the VMMs' usage is read from /proc then. Step and pull events arrive through the observer ports.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { VmState } from '../../core/model.js';
import type { Clock, MicroVMRepository, StepObserver, StepOutcome } from '../../core/ports.js';
import type { VmCensus } from '../../core/vm-census.js';
import type { ImageCacheSize, ImagePullObserver, ImagePullOutcome } from '../images/oci-image-service.js';
import { processUsage, type ProcessUsage } from '../process/proc-usage.js';

const STATES: readonly VmState[] = ['pending', 'created', 'failed', 'deleting'];
/** Seconds: steps range from a mkdir (ms) to a VMM start or an image pull (minutes). */
const STEP_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const PULL_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export interface DaemonMetricsSources {
  readonly census: VmCensus;
  readonly repo: Pick<MicroVMRepository, 'queueStats'>;
  readonly clock: Clock;
  /** Provider names this daemon knows: each gets a zero for every state. */
  readonly providers: readonly string[];
  /** Defaults to /proc; tests substitute. */
  readonly usage?: (process: { pid: number; startTime: number }) => Promise<ProcessUsage | undefined>;
}

/** One computation shared by every gauge collected in the same scrape (they are collected together). */
function perScrape<T>(compute: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= compute().finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
}

export class DaemonMetrics implements StepObserver {
  private readonly stepSeconds: Histogram<'step'>;
  private readonly steps: Counter<'step' | 'outcome'>;

  constructor(registry: Registry, sources: DaemonMetricsSources) {
    const registers = [registry];
    const { census, repo, clock } = sources;
    new Gauge({
      name: 'flintlock_microvms',
      help: 'MicroVMs in the store, by state (pending, created, failed, deleting) and provider.',
      labelNames: ['state', 'provider'],
      registers,
      collect() {
        this.reset();
        for (const provider of sources.providers) for (const state of STATES) this.set({ state, provider }, 0);
        for (const { state, provider, count } of census.counts()) this.set({ state, provider }, count);
      },
    });

    const queue = (name: string, help: string, pick: (now: number) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(pick(clock.now()));
        },
      });
    };
    queue('flintlock_reconcile_queue_entries', 'Entries in the reconcile work queue (due now or later).', (now) => repo.queueStats(now).entries);
    queue(
      'flintlock_reconcile_queue_due_entries',
      'Reconcile queue entries that are due (waiting for a worker or running).',
      (now) => repo.queueStats(now).due,
    );
    queue('flintlock_reconcile_queue_oldest_due_age_seconds', 'How long the oldest due reconcile queue entry has been due; 0 when none is.', (now) => {
      const oldest = repo.queueStats(now).oldestDueAt;
      return oldest === undefined ? 0 : (now - oldest) / 1000;
    });

    this.stepSeconds = new Histogram({
      name: 'flintlock_reconcile_step_duration_seconds',
      help: 'Time reconcile steps took to do their work, by step kind (aborted runs excluded).',
      labelNames: ['step'],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.steps = new Counter({
      name: 'flintlock_reconcile_steps_total',
      help: 'Reconcile steps that had work to do, by step kind and outcome (ok, failed, aborted).',
      labelNames: ['step', 'outcome'],
      registers,
    });

    this.vmmGauges(registers, census, sources.usage ?? processUsage);
  }

  stepDone(kind: string, ms: number, outcome: StepOutcome): void {
    this.steps.inc({ step: kind, outcome });
    if (outcome !== 'aborted') this.stepSeconds.observe({ step: kind }, ms / 1000);
  }

  private vmmGauges(registers: Registry[], census: VmCensus, usage: NonNullable<DaemonMetricsSources['usage']>): void {
    const labelNames = ['namespace', 'name', 'uid', 'provider'] as const;
    type Labels = Record<(typeof labelNames)[number], string>;
    const read = perScrape(async () => {
      const all = await Promise.all(
        census
          .withVmm()
          .map(async (vm) => ({ labels: { namespace: vm.namespace, name: vm.name, uid: vm.uid, provider: vm.provider }, usage: await usage(vm.vmm) })),
      );
      return all.filter((r): r is { labels: Labels; usage: ProcessUsage } => r.usage !== undefined);
    });
    // A counter by nature, but its value comes from /proc: reset and set at each scrape (a VM gone is dropped).
    new Counter({
      name: 'flintlock_vmm_cpu_seconds_total',
      help: 'CPU time (user and system) used by the VMM process of each running microVM.',
      labelNames,
      registers,
      async collect() {
        const all = await read();
        this.reset();
        for (const { labels, usage: u } of all) this.inc(labels, u.cpuSeconds);
      },
    });
    new Gauge({
      name: 'flintlock_vmm_resident_memory_bytes',
      help: 'Resident memory (VmRSS) of the VMM process of each running microVM, guest memory it touched included.',
      labelNames,
      registers,
      async collect() {
        const all = await read();
        this.reset();
        for (const { labels, usage: u } of all) this.set(labels, u.residentBytes);
      },
    });
  }
}

/** Image pulls (bytes received, pulls and their duration) and the image cache's size. */
export class ImageMetrics implements ImagePullObserver {
  private readonly pullBytes: Counter;
  private readonly pulls: Counter<'outcome'>;
  private readonly pullSeconds: Histogram<'outcome'>;

  /** `cacheSize` is called at scrape time only. */
  constructor(registry: Registry, cacheSize: () => Promise<ImageCacheSize>) {
    const registers = [registry];
    this.pullBytes = new Counter({ name: 'flintlock_image_pull_received_bytes_total', help: 'Bytes received from OCI registries (blobs).', registers });
    this.pulls = new Counter({
      name: 'flintlock_image_pulls_total',
      help: 'Images fetched and unpacked (images found in the cache are not counted), by outcome (pulled, failed, aborted).',
      labelNames: ['outcome'],
      registers,
    });
    this.pullSeconds = new Histogram({
      name: 'flintlock_image_pull_duration_seconds',
      help: 'Time to fetch and unpack an image, by outcome.',
      labelNames: ['outcome'],
      buckets: PULL_BUCKETS,
      registers,
    });
    for (const outcome of ['pulled', 'failed', 'aborted'] as const) this.pulls.inc({ outcome }, 0);
    this.cacheGauges(registers, cacheSize);
  }

  received(bytes: number): void {
    this.pullBytes.inc(bytes);
  }

  pulled(outcome: ImagePullOutcome, seconds: number): void {
    this.pulls.inc({ outcome });
    this.pullSeconds.observe({ outcome }, seconds);
  }

  private cacheGauges(registers: Registry[], size: () => Promise<ImageCacheSize>): void {
    // One walk of the cache per scrape, shared by both gauges.
    const once = perScrape(size);
    new Gauge({
      name: 'flintlock_image_cache_bytes',
      help: 'Bytes in the image cache, by area: blobs (downloaded layers), ext4 (volume images), files (kernels, initrds). Unpacked filesystems are not counted.',
      labelNames: ['area'],
      registers,
      async collect() {
        const s = await once();
        this.set({ area: 'blobs' }, s.blobsBytes);
        this.set({ area: 'ext4' }, s.ext4Bytes);
        this.set({ area: 'files' }, s.filesBytes);
      },
    });
    new Gauge({
      name: 'flintlock_image_cache_images',
      help: 'Images in the image cache.',
      registers,
      async collect() {
        this.set((await once()).images);
      },
    });
  }
}
