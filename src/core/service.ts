// The MicroVM application service: the use cases behind the API (create, get, list, delete,
// watch, and our lifecycle calls). It validates, stores intent and triggers the reconciler; it never touches the host.
import type { LifecycleIntent, MicroVM, MicroVMSpec } from './model.js';
import { emptyStatus, intentOf, vmIdString } from './model.js';
import type { Clock, IdGenerator, ListQuery, Logger, MicroVMRepository, VmChange } from './ports.js';
import type { ReconcileTrigger } from './reconciler.js';
import { appError, err, ok, type AppError, type Result } from './result.js';
import { validateCreate, type CreateInput, type HostChecks, type ProviderLookup, type ValidationLimits } from './validation.js';
import { injectInstanceId } from './metadata.js';
import { canonicalJson } from './canonical-json.js';
import { hostNetworkProblem } from './steps/network.js';

export interface MicroVMServiceDeps {
  readonly repo: MicroVMRepository;
  readonly reconciler: Pick<ReconcileTrigger, 'trigger'>;
  readonly providers: ProviderLookup;
  readonly limits: ValidationLimits;
  readonly clock: Clock;
  readonly ids: IdGenerator;
  readonly log: Logger;
  readonly hostChecks?: HostChecks;
  /** The daemon's parent-iface and bridge-name: a NIC it can't make is refused at Create. */
  readonly hostNetwork?: { readonly parentIface?: string; readonly bridgeName?: string };
}

export class MicroVMService {
  constructor(private readonly deps: MicroVMServiceDeps) {}

  create(input: CreateInput): Result<MicroVM, AppError> {
    const validated = validateCreate(input, this.deps.limits, this.deps.providers, this.deps.hostChecks);
    if (!validated.ok) return validated;
    const hostNetwork = this.deps.hostNetwork;
    if (hostNetwork !== undefined) {
      const problems = validated.value.spec.interfaces.flatMap((iface) => {
        const problem = hostNetworkProblem(iface, hostNetwork);
        return problem === undefined ? [] : [`interface ${iface.deviceId}: ${problem}`];
      });
      if (problems.length > 0) return err(appError('failed-precondition', `cannot create this microvm here: ${problems.join('; ')}`));
    }
    const { namespace, name } = validated.value;
    const uid = this.deps.ids.next();
    const metadata = injectInstanceId(validated.value.spec.metadata, uid);
    if (!metadata.ok) return metadata;
    const spec: MicroVMSpec = { ...validated.value.spec, metadata: metadata.value };
    const now = this.deps.clock.now();
    const outcome = this.deps.repo.insertUnlessExists({
      id: { namespace, name, uid },
      version: 1,
      spec,
      status: emptyStatus(),
      createdAt: now,
      updatedAt: now,
    });
    if (!outcome.inserted) {
      // Idempotent for CAPMVM's retried creates; anything else would silently change intent.
      const existing = outcome.existing;
      const asIfExisting = injectInstanceId(validated.value.spec.metadata, existing.id.uid);
      if (asIfExisting.ok && canonicalJson({ ...spec, metadata: asIfExisting.value }) === canonicalJson(existing.spec)) return ok(existing);
      return err(
        appError(
          'invalid-argument',
          `microvm ${namespace}/${name} already exists (uid ${existing.id.uid}) with a different spec; specs are immutable: delete it and create it again`,
        ),
      );
    }
    this.deps.log.info({ vmid: `${namespace}/${name}/${uid}` }, 'microvm create accepted');
    this.deps.reconciler.trigger(uid);
    return ok(outcome.vm);
  }

  get(uid: string): Result<MicroVM, AppError> {
    if (uid === '') return err(appError('invalid-argument', 'invalid request: uid is required'));
    const vm = this.deps.repo.get(uid);
    if (vm === undefined) return err(notFound(uid));
    return ok(vm);
  }

  list(query: ListQuery): MicroVM[] {
    return this.deps.repo.list(query);
  }

  delete(uid: string): Result<MicroVM, AppError> {
    if (uid === '') return err(appError('invalid-argument', 'invalid request: uid is required'));
    const vm = this.deps.repo.markDeleting(uid, this.deps.clock.now());
    if (vm === undefined) return err(notFound(uid));
    this.deps.log.info({ vmid: `${vm.id.namespace}/${vm.id.name}/${uid}` }, 'microvm delete requested');
    this.deps.reconciler.trigger(uid);
    return ok(vm);
  }

  /**
   * A lifecycle call (our extension): stop (VMM stopped, devices and disks kept), start (running
   * again, from stopped or paused), pause and resume (vCPUs stopped or running, the VMM kept),
   * restart (the VMM stopped and started again). Stored as intent, done by the reconciler, kept
   * across daemon restarts. Refused, changing nothing, when it can't apply.
   */
  lifecycle(uid: string, action: LifecycleAction): Result<MicroVM, AppError> {
    if (uid === '') return err(appError('invalid-argument', 'invalid request: uid is required'));
    const vm = this.deps.repo.get(uid);
    if (vm === undefined) return err(notFound(uid));
    const refused = lifecycleRefusal(vm, action, this.deps.providers);
    if (refused !== undefined) return err(appError('failed-precondition', `cannot ${action} microvm ${vmIdString(vm.id)}: ${refused}`));
    const changed = this.deps.repo.setIntent(uid, (current) => nextIntent(current, action), this.deps.clock.now());
    if (changed === undefined) return err(appError('failed-precondition', `cannot ${action} microvm ${uid}: it is being deleted`));
    this.deps.log.info({ vmid: vmIdString(vm.id), action, intent: intentOf(changed) }, `microvm ${action} requested`);
    this.deps.reconciler.trigger(uid);
    return ok(changed);
  }

  /** Resolves once every change made so far survives a power cut (acknowledge a Create or Delete after it). */
  durable(): Promise<void> {
    return this.deps.repo.durable();
  }

  /** Calls `listener` with each change to a VM matching the query until unsubscribed. */
  watch(query: ListQuery, listener: (change: VmChange) => void): () => void {
    return this.deps.repo.onChange((change) => {
      const id = change.kind === 'upsert' ? change.vm.id : change.id;
      if (matches(query, id.namespace, id.name)) listener(change);
    });
  }
}

export function matches(query: ListQuery, namespace: string, name: string): boolean {
  if (query.namespace !== undefined && query.namespace !== '' && query.namespace !== namespace) return false;
  return query.name === undefined || query.name === name;
}

export type LifecycleAction = 'stop' | 'start' | 'restart' | 'pause' | 'resume';

function nextIntent(current: LifecycleIntent, action: LifecycleAction): LifecycleIntent {
  switch (action) {
    case 'stop':
      return { ...current, power: 'stopped' };
    case 'start':
    case 'resume':
      return { ...current, power: 'running' };
    case 'pause':
      return { ...current, power: 'paused' };
    case 'restart':
      return { power: 'running', restarts: current.restarts + 1 };
  }
}

/** Why the action can't apply to the VM as it is, if it can't. */
function lifecycleRefusal(vm: MicroVM, action: LifecycleAction, providers: ProviderLookup): string | undefined {
  if (vm.deletedAt !== undefined) return 'it is being deleted';
  if (vm.status.state === 'failed') return `it is FAILED (${vm.status.failureReason ?? 'no reason recorded'}): delete it and create it again`;
  const power = intentOf(vm).power;
  if (power === 'stopped' && (action === 'pause' || action === 'resume' || action === 'restart')) return 'it is stopped: start it';
  if (action === 'resume' && power !== 'paused') return 'it is not paused';
  if (action === 'pause' && providers.get(vm.spec.provider)?.capabilities.has('pause') !== true) {
    return `its provider ${vm.spec.provider} cannot pause a VM`;
  }
  return undefined;
}

function notFound(uid: string): AppError {
  // CAPMVM matches the lowercase words "not found" in the message, not the code.
  return appError('not-found', `microvm with uid ${uid} not found`);
}
