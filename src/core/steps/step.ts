// The step machinery: a plan is a list of idempotent steps built from the stored spec and the
// observed host state, each naming the steps it waits for (plans.ts says which and why); steps
// that wait for none of each other run at once. Each step knows whether it still has work to do
// (`shouldDo`) and does it (`do`). The executor re-checks `shouldDo` after `do`, so a step that
// does not converge is an error instead of an endless loop (a known failure of the Go original's
// actuator).
import type { InterfaceStatus, MicroVM, MicroVMStatus, VmmIdentity } from '../model.js';
import type {
  Clock,
  CloudInitDiskBuilder,
  IdGenerator,
  ImageService,
  Logger,
  MicroVMRepository,
  NetworkService,
  ProcessTable,
  ProviderRegistry,
  StepObserver,
  VmFilesystem,
  VmmCgroups,
} from '../ports.js';
import type { NetworkConfigOptions } from '../cloud-init.js';
import type { VmmIdRange, VmmLimitsConfig } from '../sandbox.js';
import { noProgress, withoutProgress, type ProgressFields, type ProgressReporter } from './progress.js';

export interface Step {
  readonly name: string;
  shouldDo(): Promise<boolean>;
  do(): Promise<void>;
}

export interface HostNetworkConfig {
  /** `parent-iface`: parent of macvtap devices. */
  readonly parentIface?: string;
  /** `bridge-name`: default bridge for tap devices. */
  readonly bridgeName?: string;
  /** This daemon's owner id, carried in every device alias (see deviceAlias). */
  readonly deviceOwner: string;
}

export interface StepPorts {
  readonly repo: MicroVMRepository;
  readonly network: NetworkService;
  readonly images: ImageService;
  readonly fs: VmFilesystem;
  readonly providers: ProviderRegistry;
  readonly clock: Clock;
  readonly ids: IdGenerator;
  readonly hostNetwork: HostNetworkConfig;
  readonly processes: ProcessTable;
  readonly cidata: CloudInitDiskBuilder;
  /** Graceful VMM stop before SIGKILL (`delete-vm-timeout`). */
  readonly deleteVmTimeoutMs: number;
  readonly sandbox: SandboxPorts;
  /** How generated network-config is written (`network-config-dhcp6`); absent: the defaults. */
  readonly networkConfig?: NetworkConfigOptions;
  /** Told of every step that had work to do (metrics); none in most tests. */
  readonly stepObserver?: StepObserver;
}

/** How VMMs are confined (ADR 0009). */
export interface SandboxPorts {
  /** `vmm-uid-range`; absent: VMMs keep the daemon's uid. */
  readonly idRange?: VmmIdRange;
  /** Which uids of the range stored VMs hold (vmm-uid-index.ts); absent: every stored VM is read per allocation. */
  readonly vmmUids?: { has(uid: number): boolean };
  readonly cgroups: VmmCgroups;
  readonly limits: VmmLimitsConfig;
}

/**
 * What a step sees: the VM as stored when the reconcile began, its working status, and the ports.
 * Status changes are written through at once, so a crash never loses what a step did on the host.
 */
/** The uid/gid this VM's VMM runs as: none when the daemon runs VMMs as itself (no vmm-uid-range). */
export function vmmIdentityOf(ctx: StepContext): VmmIdentity | undefined {
  return ctx.ports.sandbox.idRange !== undefined ? ctx.status.vmmIdentity : undefined;
}

export class StepContext {
  private current: MicroVM;
  private readonly siblings = new AbortController();
  /**
   * What slow ports (image pulls, a VMM start) watch: aborted by a delete or a shutdown (the
   * reconcile's signal), or when another step of the plan failed (`abortSteps`).
   */
  readonly signal: AbortSignal;

  constructor(
    vm: MicroVM,
    readonly ports: StepPorts,
    readonly log: Logger,
    /** The reconcile's own signal: aborted by a delete or a shutdown. */
    reconcileSignal: AbortSignal = new AbortController().signal,
    /** Where steps report the image pull's progress (the reconciler's; none elsewhere). */
    readonly progress: ProgressReporter = noProgress,
  ) {
    this.current = vm;
    this.signal = AbortSignal.any([reconcileSignal, this.siblings.signal]);
  }

  /** Stops the plan's running steps (one of them failed); the reconcile's own signal is untouched. */
  abortSteps(reason: Error): void {
    this.siblings.abort(reason);
  }

  get vm(): MicroVM {
    return this.current;
  }

  get vmDir(): string {
    return this.ports.fs.vmDir(this.current.id);
  }

  get status(): MicroVMStatus {
    return this.current.status;
  }

  /**
   * Persists a status change now. Steps of a plan run alongside each other, so each builds `next`
   * from `this.status` in the same synchronous turn as this call (`{ ...ctx.status, field }`,
   * never from a copy taken before an await): the store write is synchronous too, so no other
   * step's write can come between the read and the write and be lost.
   */
  saveStatus(next: MicroVMStatus): void {
    const saved = this.ports.repo.saveStatus(this.current.id.uid, next, this.ports.clock.now());
    if (saved === undefined) throw new Error(`microvm ${this.current.id.uid} disappeared from the store during reconcile`);
    this.current = saved;
  }

  /**
   * Writes the progress fields if nothing else wrote the VM since this reconcile last did
   * (compare-and-swap on the version); false when something did, and the write is dropped.
   */
  saveProgress(fields: ProgressFields): boolean {
    const saved = this.ports.repo.saveStatus(
      this.current.id.uid,
      { ...withoutProgress(this.current.status), ...fields },
      this.ports.clock.now(),
      this.current.version,
    );
    if (saved === undefined) return false;
    this.current = saved;
    return true;
  }

  setInterfaceStatus(deviceId: string, iface: InterfaceStatus): void {
    this.saveStatus({ ...this.status, interfaces: { ...this.status.interfaces, [deviceId]: iface } });
  }
}

export interface ExecutionResult {
  /** Steps that had work to do and did it, in the order they finished. */
  readonly executed: string[];
}

export class StepNotConvergedError extends Error {}

/**
 * A step in a plan and the steps it waits for. A plan lists its steps in an order that already
 * satisfies every `after` (each names only steps listed before it), so the plan read top to
 * bottom is also a valid one-at-a-time order, and it cannot have a cycle.
 */
export interface PlannedStep {
  readonly step: Step;
  /** Names of earlier steps that must have finished (done, or found nothing to do) first. */
  readonly after: readonly string[];
}

export type Plan = readonly PlannedStep[];

export interface ExecuteOptions {
  /**
   * What the steps' slow ports see (StepContext.signal). Once aborted, no step starts; the
   * running ones are waited for, then its reason is thrown.
   */
  readonly signal?: AbortSignal;
  /** Aborts `signal`: called with the first failure, so running siblings stop waiting. */
  readonly abort?: (reason: Error) => void;
  /**
   * The steps doing work now (in plan order), each time that set changes while it is not empty:
   * what status.reconcile_step shows.
   */
  readonly onStep?: (running: readonly string[]) => void;
}

/** Why a step was stopped: another step of the same plan failed. */
export class SiblingFailedError extends Error {}

/**
 * Runs the plan: each step as soon as the steps it is `after` have finished, so independent steps
 * overlap. The first failure aborts the others (their ports see the signal); once every running
 * step has settled (nothing of this plan runs after the call returns), the failure of the first
 * failed step in plan order is thrown (not one the abort caused). A step's `do` is followed by a
 * re-check of `shouldDo`, as before.
 */
export async function executeSteps(plan: Plan, log: Logger, options: ExecuteOptions = {}): Promise<ExecutionResult> {
  checkPlan(plan);
  const { signal, abort, onStep } = options;
  const executed: string[] = [];
  const finished = new Set<string>();
  const waiting = [...plan];
  const working = new Set<string>();
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  /** Every step's own failure (not one caused by the abort that the first failure sent), by plan position. */
  const failures: Array<{ readonly index: number; readonly error: unknown }> = [];

  const reportWorking = (): void => {
    if (working.size > 0) onStep?.(plan.map((p) => p.step.name).filter((name) => working.has(name)));
  };

  const run = async (step: Step): Promise<void> => {
    if (!(await step.shouldDo())) return;
    // A sibling may have failed while this one checked: do nothing new after a failure.
    if (failure !== undefined || signal?.aborted === true) return;
    working.add(step.name);
    reportWorking();
    const started = Date.now();
    log.debug({ step: step.name }, 'step starting');
    try {
      await step.do();
      if (await step.shouldDo()) throw new StepNotConvergedError(`step ${step.name} did not converge: it still has work to do after running`);
    } finally {
      working.delete(step.name);
      reportWorking();
    }
    log.debug({ step: step.name, ms: Date.now() - started }, 'step done');
    executed.push(step.name);
  };

  /** Starts every waiting step whose predecessors have all finished. */
  const startReady = (): void => {
    if (failure !== undefined || signal?.aborted === true) return;
    for (let i = 0; i < waiting.length;) {
      const planned = waiting[i];
      if (planned === undefined || !planned.after.every((name) => finished.has(name))) {
        i += 1;
        continue;
      }
      waiting.splice(i, 1);
      const name = planned.step.name;
      const index = plan.indexOf(planned);
      // Settles (never rejects) once the step's outcome is recorded and it has left `running`.
      const settled: Promise<void> = run(planned.step)
        .then(
          () => {
            finished.add(name);
          },
          (e: unknown) => {
            if (!causedByAbort(e)) failures.push({ index, error: e });
            if (failure !== undefined) return;
            failure = { error: e };
            if (signal?.aborted !== true) abort?.(new SiblingFailedError(`stopped: step ${name} failed: ${e instanceof Error ? e.message : String(e)}`));
          },
        )
        .then(() => {
          running.delete(settled);
        });
      running.add(settled);
    }
  };

  startReady();
  while (running.size > 0) {
    await Promise.race(running);
    startReady();
  }
  // When steps running together fail, the first in plan order is told, whichever failed first:
  // the reason a VM shows does not depend on timing (a missing bridge, not the pull beside it).
  if (failure !== undefined) throw failures.sort((a, b) => a.index - b.index)[0]?.error ?? failure.error;
  signal?.throwIfAborted();
  if (waiting.length > 0) throw new Error(`plan stuck: ${waiting.map((p) => p.step.name).join(', ')} wait for steps that never finished`);
  return { executed };
}

/** A step's error that the abort after a sibling's failure (or a delete, a shutdown) caused. */
function causedByAbort(e: unknown): boolean {
  return e instanceof SiblingFailedError || (e instanceof Error && e.name === 'AbortError');
}

/** Names are unique and every `after` names an earlier step (so the plan has no cycle). */
function checkPlan(plan: Plan): void {
  const seen = new Set<string>();
  for (const { step, after } of plan) {
    for (const name of after) if (!seen.has(name)) throw new Error(`plan: step ${step.name} waits for ${name}, which is not an earlier step`);
    if (seen.has(step.name)) throw new Error(`plan: two steps are named ${step.name}`);
    seen.add(step.name);
  }
}

/** A step's name without its instance (`volume_image[root]` is of kind `volume_image`). */
export function stepKind(name: string): string {
  const bracket = name.indexOf('[');
  return bracket < 0 ? name : name.slice(0, bracket);
}

/**
 * The steps, each reporting to the observer when it has done its work: how long `do` took and
 * how it ended, once the executor's re-check says whether it converged (a step still having work
 * to do counts as failed, as the executor fails it). A step aborted by the signal is `aborted`.
 */
export function observedSteps(plan: Plan, observer: StepObserver | undefined, signal: AbortSignal): Plan {
  if (observer === undefined) return plan;
  return plan.map(({ step, after }) => ({ step: observed(step, observer, signal), after }));
}

function observed(step: Step, observer: StepObserver, signal: AbortSignal): Step {
  const kind = stepKind(step.name);
  /** Set between a `do` that returned and the executor's re-check. */
  let doneMs: number | undefined;
  const report = (ms: number, failed: boolean): void => observer.stepDone(kind, ms, !failed ? 'ok' : signal.aborted ? 'aborted' : 'failed');
  return {
    name: step.name,
    shouldDo: async () => {
      const ms = doneMs;
      doneMs = undefined;
      if (ms === undefined) return step.shouldDo();
      let stillToDo = true;
      try {
        stillToDo = await step.shouldDo();
        return stillToDo;
      } finally {
        report(ms, stillToDo);
      }
    },
    do: async () => {
      const started = Date.now();
      try {
        await step.do();
      } catch (e) {
        report(Date.now() - started, true);
        throw e;
      }
      doneMs = Date.now() - started;
    },
  };
}
