// The MicroVM application service: the use cases behind the API (create, get, list, delete,
// watch). It validates, stores intent and triggers the reconciler; it never touches the host.
import type { MicroVM, MicroVMSpec } from './model.js';
import { emptyStatus } from './model.js';
import type { Clock, IdGenerator, ListQuery, Logger, MicroVMRepository, VmChange } from './ports.js';
import type { ReconcileTrigger } from './reconciler.js';
import { appError, err, ok, type AppError, type Result } from './result.js';
import { validateCreate, type CreateInput, type HostChecks, type ProviderLookup, type ValidationLimits } from './validation.js';
import { injectInstanceId } from './metadata.js';
import { canonicalJson } from './canonical-json.js';
import { hostNetworkProblem } from './steps/network.js';

export interface MicroVMServiceDeps {
  readonly repo: MicroVMRepository;
  readonly reconciler: ReconcileTrigger;
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
    this.deps.log.info({ vmid: `${namespace}/${name}/${uid}` }, 'microvm created');
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

function notFound(uid: string): AppError {
  // CAPMVM matches the lowercase words "not found" in the message, not the code.
  return appError('not-found', `microvm with uid ${uid} not found`);
}
