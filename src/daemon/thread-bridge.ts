// The API thread's handle on the reconcile worker thread (ADR 0013): starts it, waits until its
// start-up sweeps are done, and carries commits both ways, triggers to it, and its steps' and
// image pulls' reports to the metrics here.
import { Worker } from 'node:worker_threads';
import type { ImageCacheSize, ImagePullObserver } from '../adapters/images/oci-image-service.js';
import type { SqliteMicroVMRepository } from '../adapters/store/sqlite-repository.js';
import type { Logger, StepObserver } from '../core/ports.js';
import { CommitBatcher, type FromWorker, type ToWorker, type WorkerData } from './thread-messages.js';

export interface WorkerObservers {
  readonly steps: StepObserver;
  readonly images: ImagePullObserver;
}

// dist/ runs the .js. The sources run under tsx, whose loader a worker does not inherit: it
// registers it, then imports the entry.
const FROM_SOURCES = import.meta.url.endsWith('.ts');
const ENTRY = new URL(FROM_SOURCES ? './reconcile-worker.ts' : './reconcile-worker.js', import.meta.url);

function startWorker(data: WorkerData): Worker {
  if (!FROM_SOURCES) return new Worker(ENTRY, { workerData: data });
  const code = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(ENTRY.href)}); })`;
  return new Worker(code, { eval: true, workerData: data });
}

export class ReconcileWorker {
  private stopping: Promise<void> | undefined;
  private exited = false;
  private readonly sizes = new Map<number, { resolve: (s: ImageCacheSize) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  private constructor(
    private readonly worker: Worker,
    private readonly repo: SqliteMicroVMRepository,
  ) {}

  /**
   * Resolves once the worker's start-up (orphan sweeps, reconciler started) is done; rejects with
   * its reason when it fails. `onCrash` hears of a worker that dies later, by a bug.
   */
  static start(
    data: WorkerData,
    repo: SqliteMicroVMRepository,
    observers: WorkerObservers,
    log: Logger,
    onCrash: (reason: string) => void,
  ): Promise<ReconcileWorker> {
    const worker = startWorker(data);
    const handle = new ReconcileWorker(worker, repo);
    const commits = new CommitBatcher((changes) => handle.send({ type: 'committed', changes }));
    repo.forwardCommits((change) => commits.add(change));
    return new Promise((resolve, reject) => {
      let started = false;
      const fail = (reason: string): void => {
        repo.forwardCommits(undefined);
        for (const pending of handle.sizes.values()) pending.reject(new Error(reason));
        handle.sizes.clear();
        if (!started) reject(new Error(reason));
        else if (handle.stopping === undefined) onCrash(reason);
      };
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            started = true;
            resolve(handle);
            return;
          case 'failed':
            fail(message.message);
            return;
          case 'committed':
            for (const change of message.changes) repo.applyCommitted(change);
            return;
          case 'step':
            observers.steps.stepDone(message.kind, message.ms, message.outcome);
            return;
          case 'image-received':
            observers.images.received(message.bytes);
            return;
          case 'image-pulled':
            observers.images.pulled(message.outcome, message.seconds);
            return;
          case 'cache-size': {
            const pending = handle.sizes.get(message.id);
            handle.sizes.delete(message.id);
            if (message.size !== undefined) pending?.resolve(message.size);
            else pending?.reject(new Error(message.error ?? 'no answer'));
            return;
          }
          case 'stopped':
            return;
        }
      });
      worker.on('error', (e) => {
        log.error({ error: e.message }, `the reconcile worker thread failed: ${e.message}`);
        fail(e.message);
      });
      worker.on('exit', (code) => {
        handle.exited = true;
        if (handle.stopping === undefined) fail(`the reconcile worker thread exited (code ${code})`);
      });
    });
  }

  trigger(uid: string): void {
    this.send({ type: 'trigger', uid });
  }

  cacheSize(): Promise<ImageCacheSize> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.sizes.set(id, { resolve, reject });
      this.send({ type: 'cache-size', id });
    });
  }

  reopenLog(): void {
    this.send({ type: 'reopen-log' });
  }

  /** Stops the background work (reconciles in flight aborted, as on the main thread) and waits for the thread's end. */
  stop(): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      this.repo.forwardCommits(undefined);
      if (this.exited) return resolve();
      this.worker.once('exit', () => resolve());
      this.send({ type: 'stop' });
    });
    return this.stopping;
  }

  private send(message: ToWorker): void {
    this.worker.postMessage(message);
  }
}
