// The reconciler: drives every stored VM towards its spec.
//
// - Work comes from the durable queue in the store (a create or delete enqueues in the same
//   transaction that records it), so nothing acknowledged is lost on a crash.
// - Up to `concurrency` VMs reconcile at once; one VM is never reconciled twice at once (a trigger
//   during a run marks it to run again afterwards).
// - A free worker takes a VM's first attempt before any retry, then the VM of the namespace that
//   used the workers least lately (fair-share.ts), then the one ready longest.
// - A failed attempt is retried with exponential backoff; after `maxRetry` retries the VM is
//   FAILED with the reason recorded. A Delete pre-empts a pending retry (and aborts a running
//   create plan between steps).
// - A VMM restart delayed by crash-loop backoff (crash-loop.ts) is a queue entry due later.
//   Neither a retry nor a delayed restart runs before its time (not at a resync, not after a
//   restart of the daemon); a delete runs at once.
// - Every VM is reconciled at start-up and every `resyncPeriodMs`.
// - A reconcile interrupted by the daemon's shutdown is not a failed attempt: it isn't counted,
//   and its queue entry makes the next start pick it up.
// - Time comes from the Clock and Timers ports, so backoff is tested in fake time.
import { Aborted, errorMessage, isDiskFull, PermanentFailure } from './result.js';
import type { MicroVM, MicroVMStatus } from './model.js';
import { intentOf, vmIdString } from './model.js';
import { FairShare } from './fair-share.js';
import { createPlan, deletePlan } from './plans.js';
import type { Clock, Logger, MicroVMRepository, Timers } from './ports.js';
import { systemTimers } from './timers.js';
import { executeSteps, StepContext, type StepPorts } from './steps/step.js';
import { ReconcileProgress, withoutProgress } from './steps/progress.js';

export interface ReconcilerOptions {
  readonly concurrency: number;
  readonly maxRetry: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly resyncPeriodMs: number;
}

/** What the API needs from the reconciler. */
export interface ReconcileTrigger {
  /** Reconcile the VM as soon as a worker is free. */
  trigger(uid: string): void;
  /**
   * Reconcile the VM at `dueAt` (epoch ms): a VMM restart delayed by crash-loop backoff. The
   * queue entry records the due time, so a restarted daemon keeps it; an earlier trigger (a
   * delete) still runs at once.
   */
  triggerAt(uid: string, dueAt: number): void;
}

export function backoffDelay(retry: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
}

export class Reconciler implements ReconcileTrigger {
  private readonly due = new Map<string, { dueAt: number; cancel: () => void }>();
  private readonly ready: string[] = [];
  private readonly running = new Map<string, AbortController>();
  /** When a VM that is running now must run again: the earliest of what was asked meanwhile. */
  private readonly rerunAt = new Map<string, number>();
  /** VMs waiting out a retry: when one is ready, a VM's first attempt goes before them. */
  private readonly retrying = new Set<string>();
  /** Reconciles that could not record their outcome (the store failing, a full disk), per VM. */
  private readonly crashes = new Map<string, number>();
  /** Reconcile attempts per namespace, lately. */
  private readonly share = new FairShare();
  /** The namespace of each VM seen in the queue (looked up once). */
  private readonly namespaces = new Map<string, string>();
  private readonly idleWaiters: Array<() => void> = [];
  private cancelResync: (() => void) | undefined;
  private stopped = true;

  constructor(
    private readonly ports: StepPorts,
    private readonly repo: MicroVMRepository,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly options: ReconcilerOptions,
    private readonly timers: Timers = systemTimers,
  ) {}

  /** Schedules every queued entry and reconciles every VM once (start-up), then resyncs periodically. */
  start(): void {
    this.stopped = false;
    for (const entry of this.repo.queue()) this.schedule(entry.uid, entry.dueAt);
    const resync = (): void => {
      this.resync();
      if (!this.stopped) this.cancelResync = this.timers.after(this.options.resyncPeriodMs, resync);
    };
    resync();
  }

  /** Stops scheduling and waits for running reconciles to finish their current step. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelResync?.();
    for (const { cancel } of this.due.values()) cancel();
    this.due.clear();
    this.ready.length = 0;
    for (const controller of this.running.values()) controller.abort(new Aborted('the daemon is shutting down'));
    await this.idle();
  }

  /** Resolves when no reconcile is running or ready (for tests and shutdown). */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.ready.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  trigger(uid: string): void {
    const now = this.clock.now();
    this.retrying.delete(uid); // new intent (a create, a delete, a VMM that died): not a retry
    this.repo.enqueue(uid, now);
    const current = this.running.get(uid);
    if (current !== undefined) {
      // A delete must not wait for a create plan: abort it (a pull or a VMM start stops waiting).
      if (this.repo.get(uid)?.deletedAt !== undefined) current.abort(new Aborted('the microvm is being deleted'));
    }
    this.schedule(uid, now);
  }

  triggerAt(uid: string, dueAt: number): void {
    this.retrying.add(uid); // a restart waiting out its backoff: a new VM's first attempt goes first
    this.requeue(uid, dueAt);
    this.schedule(uid, dueAt);
  }

  private resync(): void {
    const now = this.clock.now();
    for (const vm of this.repo.list({})) {
      if (vm.status.state === 'failed' && vm.deletedAt === undefined) continue;
      this.schedule(vm.id.uid, Math.max(now, waitingUntil(vm) ?? now));
    }
  }

  /** Sets the VM's queue entry to `dueAt` (enqueue alone keeps an earlier due time, so a delete pre-empts). */
  private requeue(uid: string, dueAt: number): void {
    // A crash between the two calls only loses the delay: start-up reconciles every VM anyway.
    this.repo.dequeue(uid);
    this.repo.enqueue(uid, dueAt);
  }

  private schedule(uid: string, dueAt: number): void {
    if (this.stopped) return;
    if (this.running.has(uid)) {
      // After this run, at the earliest time asked for: a retry's backoff, or now for a trigger.
      this.rerunAt.set(uid, Math.min(this.rerunAt.get(uid) ?? dueAt, dueAt));
      return;
    }
    const existing = this.due.get(uid);
    if (existing !== undefined) {
      if (existing.dueAt <= dueAt) return;
      existing.cancel();
    }
    if (this.ready.includes(uid)) return;
    const cancel = this.timers.after(Math.max(0, dueAt - this.clock.now()), () => {
      this.due.delete(uid);
      this.ready.push(uid);
      this.pump();
    });
    this.due.set(uid, { dueAt, cancel });
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.options.concurrency) {
      const index = this.nextReady();
      if (index < 0) break;
      const [uid] = this.ready.splice(index, 1) as [string];
      const controller = new AbortController();
      this.running.set(uid, controller);
      const namespace = this.namespaceOf(uid);
      void this.reconcile(uid, controller.signal)
        // reconcile records every outcome itself; this only catches the store failing under it
        // (a full disk): retried with backoff, not left until the next resync.
        .catch((e: unknown) => {
          const crashes = (this.crashes.get(uid) ?? 0) + 1;
          this.crashes.set(uid, crashes);
          const delayMs = backoffDelay(crashes, this.options.backoffBaseMs, this.options.backoffMaxMs);
          const what = isDiskFull(e) ? 'the disk is full, so the outcome could not be recorded' : 'the outcome could not be recorded';
          this.log.error({ uid, error: errorMessage(e), delayMs }, `reconcile failed and ${what}; will retry`);
          this.schedule(uid, this.clock.now() + delayMs);
        })
        .finally(() => {
          this.running.delete(uid);
          // One unit per attempt, not its duration: a graceful delete waits seconds for the guest
          // to power off, idle, and charging that put the namespace that had just deleted a VM
          // behind every flood (bench/load.ts: a healthy create waited 29 s).
          this.share.charge(namespace, 1, this.clock.now());
          const again = this.rerunAt.get(uid);
          this.rerunAt.delete(uid);
          if (again !== undefined) this.schedule(uid, again);
          this.pump();
          if (this.running.size === 0 && this.ready.length === 0) this.idleWaiters.splice(0).forEach((resolve) => resolve());
        });
    }
  }

  /**
   * The index in `ready` of the VM to run next: a first attempt before any retry (so a healthy
   * new VM never waits behind failing ones), then the namespace that used the workers least
   * lately, then the VM ready longest. -1 when none can run.
   */
  private nextReady(): number {
    const now = this.clock.now();
    const usage = new Map<string, number>();
    let best = -1;
    let bestIsRetry = true;
    let bestUsage = Number.POSITIVE_INFINITY;
    for (const [index, uid] of this.ready.entries()) {
      if (this.running.has(uid)) continue;
      const isRetry = this.retrying.has(uid);
      if (isRetry && !bestIsRetry) continue;
      const namespace = this.namespaceOf(uid);
      const used = usage.get(namespace) ?? this.share.usage(namespace, now);
      usage.set(namespace, used);
      if (best < 0 || (bestIsRetry && !isRetry) || used < bestUsage) {
        best = index;
        bestIsRetry = isRetry;
        bestUsage = used;
      }
    }
    return best;
  }

  private namespaceOf(uid: string): string {
    let namespace = this.namespaces.get(uid);
    if (namespace === undefined) {
      namespace = this.repo.get(uid)?.id.namespace ?? '';
      this.namespaces.set(uid, namespace);
    }
    return namespace;
  }

  /** One reconcile of one VM. Never throws: every outcome is recorded in the store. */
  private async reconcile(uid: string, signal: AbortSignal): Promise<void> {
    const vm = this.repo.get(uid);
    if (vm === undefined) {
      this.repo.dequeue(uid);
      this.retrying.delete(uid);
      this.crashes.delete(uid);
      this.namespaces.delete(uid);
      return;
    }
    const log = this.log.child({ vmid: vmIdString(vm.id) });
    if (vm.deletedAt === undefined && vm.status.state === 'failed') {
      this.repo.dequeue(uid);
      return;
    }
    const deleting = vm.deletedAt !== undefined;
    const started = this.clock.now();
    const waitUntil = waitingUntil(vm);
    if (waitUntil !== undefined && waitUntil > started) {
      // Run early (a resync, a restart of the daemon): the backoff still holds.
      this.schedule(uid, waitUntil);
      return;
    }
    // The step and pull progress clients see (fl --wait): throttled writes, CAS through ctx.
    const progress: ReconcileProgress = new ReconcileProgress((fields): boolean => ctx.saveProgress(fields), this.clock, this.timers);
    const ctx: StepContext = new StepContext(vm, this.ports, log, signal, progress);
    try {
      const { executed } = await executeSteps(deleting ? deletePlan(ctx) : createPlan(ctx), log, {
        signal: ctx.signal,
        abort: (reason) => ctx.abortSteps(reason),
        // Steps that overlap are shown together: "network_iface_create[eth0],kernel_image".
        onStep: (running) => progress.stepsRunning(running),
      }).finally(() => progress.stop());
      this.retrying.delete(uid);
      this.crashes.delete(uid);
      if (deleting) {
        this.repo.remove(uid);
        this.namespaces.delete(uid);
        log.info({ steps: executed, ms: this.clock.now() - started }, 'microvm deleted');
        return;
      }
      const current = this.repo.get(uid);
      // A delete that arrived during the run wins; its own reconcile follows (rerun).
      if (current === undefined || current.deletedAt !== undefined) return;
      // Compare-and-swap on the version the steps left: if anything else wrote meanwhile (the
      // watcher saw the VMM end), CREATED would be a lie: decide again on fresh state.
      if (this.repo.saveStatus(uid, succeeded(ctx.status), this.clock.now(), ctx.vm.version) === undefined) {
        log.info({ version: ctx.vm.version }, 'microvm changed during its reconcile; reconciling again');
        this.schedule(uid, this.clock.now());
        return;
      }
      this.repo.dequeue(uid);
      if (executed.length > 0) log.info({ steps: executed, ms: this.clock.now() - started }, 'microvm reconciled');
    } catch (e) {
      if (signal.aborted) {
        // Stopped on purpose, not a failure: a shutdown leaves the queue entry for the next start;
        // a delete's own reconcile follows this one (rerun). Its progress is over either way.
        if (ctx.status.reconcileStep !== undefined || ctx.status.pullProgress !== undefined) ctx.saveProgress({});
        log.info({ reason: errorMessage(signal.reason) }, 'reconcile aborted; not counted as a failed attempt');
        return;
      }
      const current = this.repo.get(uid);
      if (current === undefined) return;
      if (!deleting && current.deletedAt !== undefined) return; // deleted meanwhile: the delete follows
      const message = errorMessage(e);
      this.recordFailure(
        current,
        ctx.status,
        isDiskFull(e) && !/disk full/i.test(message) ? `disk full: ${message}` : message,
        log,
        e instanceof PermanentFailure,
      );
    }
  }

  private recordFailure(vm: MicroVM, working: MicroVMStatus, message: string, log: Logger, permanent: boolean): void {
    const now = this.clock.now();
    const retry = vm.status.retry + 1;
    const deleting = vm.deletedAt !== undefined;
    // A delete is never given up: it retries with capped backoff until the host is clean.
    if (!deleting && (permanent || retry > this.options.maxRetry)) {
      const failureReason = permanent
        ? `${message} (not retried: no retry can succeed until that changes)`
        : `reconcile failed ${retry} times; last error: ${message}`;
      const { nextRetryAt: _dropped, ...rest } = withoutProgress(working);
      this.repo.saveStatus(vm.id.uid, { ...rest, state: 'failed', retry, lastError: message, failureReason }, now);
      this.repo.dequeue(vm.id.uid);
      this.retrying.delete(vm.id.uid);
      log.error({ retry, reason: failureReason }, permanent ? 'microvm failed: permanent failure' : 'microvm failed: retries exhausted');
      return;
    }
    this.retrying.add(vm.id.uid);
    const delay = backoffDelay(retry, this.options.backoffBaseMs, this.options.backoffMaxMs);
    const nextRetryAt = now + delay;
    this.repo.saveStatus(vm.id.uid, { ...withoutProgress(working), state: deleting ? 'deleting' : 'pending', retry, lastError: message, nextRetryAt }, now);
    this.requeue(vm.id.uid, nextRetryAt);
    this.schedule(vm.id.uid, nextRetryAt);
    log.warn({ retry, delayMs: delay, error: message }, 'microvm reconcile failed; will retry');
  }
}

/** When a VM that is not being deleted waits for a retry or a VMM restart (backoff), if it does. */
function waitingUntil(vm: MicroVM): number | undefined {
  if (vm.deletedAt !== undefined) return undefined;
  const { nextRetryAt } = vm.status;
  // A stop asked for during a crash-loop wait needs no VMM: it needn't wait.
  const nextRestartAt = intentOf(vm).power === 'stopped' ? undefined : vm.status.nextRestartAt;
  if (nextRetryAt === undefined && nextRestartAt === undefined) return undefined;
  return Math.max(nextRetryAt ?? 0, nextRestartAt ?? 0);
}

function succeeded(status: MicroVMStatus): MicroVMStatus {
  const { lastError: _e, nextRetryAt: _n, failureReason: _f, ...rest } = withoutProgress(status);
  return { ...rest, state: 'created', retry: 0 };
}
