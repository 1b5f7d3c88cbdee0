// The step machinery: a plan is an ordered list of idempotent steps built from the stored spec
// and the observed host state. Each step knows whether it still has work to do (`shouldDo`) and
// does it (`do`). The executor re-checks `shouldDo` after `do`, so a step that does not converge
// is an error instead of an endless loop (a known failure of the Go original's actuator).
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

  constructor(
    vm: MicroVM,
    readonly ports: StepPorts,
    readonly log: Logger,
    /** Aborted by a delete or a shutdown: slow ports (image pulls, a VMM start) stop waiting. */
    readonly signal: AbortSignal = new AbortController().signal,
    /** Where steps report the image pull's progress (the reconciler's; none elsewhere). */
    readonly progress: ProgressReporter = noProgress,
  ) {
    this.current = vm;
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

  /** Persists a status change now. */
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
  /** Steps that had work to do and did it. */
  readonly executed: string[];
}

export class StepNotConvergedError extends Error {}

/**
 * Runs the steps in order; stops at the first failure (the error propagates) or when aborted.
 * `onStep` hears of each step that has work to do, as it starts (status.reconcile_step).
 */
export async function executeSteps(steps: readonly Step[], log: Logger, signal?: AbortSignal, onStep?: (name: string) => void): Promise<ExecutionResult> {
  const executed: string[] = [];
  for (const step of steps) {
    signal?.throwIfAborted();
    if (!(await step.shouldDo())) continue;
    onStep?.(step.name);
    const started = Date.now();
    log.debug({ step: step.name }, 'step starting');
    await step.do();
    if (await step.shouldDo()) throw new StepNotConvergedError(`step ${step.name} did not converge: it still has work to do after running`);
    log.debug({ step: step.name, ms: Date.now() - started }, 'step done');
    executed.push(step.name);
  }
  return { executed };
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
export function observedSteps(steps: readonly Step[], observer: StepObserver | undefined, signal: AbortSignal): Step[] {
  if (observer === undefined) return [...steps];
  return steps.map((step) => {
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
  });
}
