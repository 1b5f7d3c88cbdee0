// The gRPC API: microvm.services.api.v1alpha1.MicroVM on grpc-js, plus grpc.health.v1 and server
// reflection (both left open without a token, like health probes and grpcurl expect).
import { create, toBinary, type DescFile } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { MicroVMService } from '../../../core/service.js';
import { boundedMessage, errorMessage, isDiskFull, type AppError, type ErrorKind } from '../../../core/result.js';
import type { Logger } from '../../../core/ports.js';
import {
  MicroVM as MicroVMDesc,
  type CreateMicroVMRequest,
  type CreateMicroVMResponse,
  type DeleteMicroVMRequest,
  type GetMicroVMRequest,
  GetMicroVMResponseSchema,
  type GetMicroVMResponse,
  type ListMessage,
  type ListMicroVMsRequest,
  type ListMicroVMsResponse,
  ListMicroVMsResponseSchema,
} from '../../../gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { createInputFromProto, microvmToProto } from '../convert.js';
import { tokenCheck, type TokenCheck } from '../auth.js';
import { encodeOnce, grpcServiceDefinition } from './service-definition.js';
import type { ApiMetrics } from '../metrics.js';
import { loadServerTls, type ServerTls, type TlsSettings } from '../tls.js';

export type { TlsSettings } from '../tls.js';

export interface GrpcServerOptions {
  /** host:port; port 0 picks a free one. */
  readonly endpoint: string;
  readonly tls: TlsSettings;
  readonly basicAuthToken?: string;
  readonly log: Logger;
  readonly metrics?: ApiMetrics;
}

export interface RunningGrpcServer {
  readonly port: number;
  close(): Promise<void>;
}

const GRPC_CODES: Record<ErrorKind, grpc.status> = {
  'invalid-argument': grpc.status.INVALID_ARGUMENT,
  'failed-precondition': grpc.status.FAILED_PRECONDITION,
  'not-found': grpc.status.NOT_FOUND,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  'resource-exhausted': grpc.status.RESOURCE_EXHAUSTED,
  unavailable: grpc.status.UNAVAILABLE,
  internal: grpc.status.INTERNAL,
};

function toServiceError(error: AppError): Partial<grpc.StatusObject> {
  return { code: GRPC_CODES[error.kind], details: boundedMessage(error.message) };
}

/**
 * grpc-js credentials from the shared TLS options (../tls.ts): createSsl takes no minimum
 * version, so the context (with its TLS 1.3 minimum) is handed over as it is.
 */
class Tls13ServerCredentials extends grpc.ServerCredentials {
  constructor(tls: ServerTls) {
    super({ requestCert: tls.requireClientCert, rejectUnauthorized: tls.requireClientCert }, tls.context);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

export async function serverCredentials(settings: TlsSettings): Promise<grpc.ServerCredentials> {
  const tls = await loadServerTls(settings);
  return tls === undefined ? grpc.ServerCredentials.createInsecure() : new Tls13ServerCredentials(tls);
}

/** Every file a descriptor needs, dependencies first, each once (for reflection). */
function withDependencies(file: DescFile, seen = new Set<string>()): DescFile[] {
  if (seen.has(file.name)) return [];
  seen.add(file.name);
  return [...file.dependencies.flatMap((d) => withDependencies(d, seen)), file];
}

function reflectionService(): ReflectionService {
  const files = withDependencies(MicroVMDesc.file).map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  // @grpc/reflection reads only `fileDescriptorProtos` from a proto-loader package definition.
  const definition = { [MicroVMDesc.typeName]: { fileDescriptorProtos: files } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  return new ReflectionService(definition);
}

function authorizationOf(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** grpc-js, grpc-go and grpcio clients refuse answers over 4 MiB unless told otherwise. */
export const LIST_ANSWER_MAX_BYTES = 4 * 1024 * 1024 - 1024;

function listTooLarge(count: number, size: number): AppError {
  return {
    kind: 'resource-exhausted',
    message:
      `the answer holds ${count} microvms in ${size} bytes, more than the ${LIST_ANSWER_MAX_BYTES} a client accepts by default: ` +
      'list one namespace or one name, or use ListMicroVMsStream (one message per microvm)',
  };
}

/** A throw from below (e.g. the store failing) becomes an Internal error, not a crash. */
function guarded<T>(body: () => { ok: true; value: T } | { ok: false; error: AppError }): { ok: true; value: T } | { ok: false; error: AppError } {
  try {
    return body();
  } catch (e) {
    if (isDiskFull(e)) return { ok: false, error: { kind: 'resource-exhausted', message: `the daemon's disk is full: ${errorMessage(e)}` } };
    return { ok: false, error: { kind: 'internal', message: `internal error: ${e instanceof Error ? e.message : String(e)}` } };
  }
}

/** Builds the handlers; each checks the token first and counts its outcome. */
export function microvmHandlers(service: MicroVMService, check: TokenCheck, log: Logger, metrics?: ApiMetrics): grpc.UntypedServiceImplementation {
  const unary =
    <Req, Res>(method: string, body: (req: Req) => { ok: true; value: Res } | { ok: false; error: AppError }): Unary<Req, Res> =>
    (call, callback) => {
      const denied = check(authorizationOf(call.metadata));
      const result = denied !== undefined ? { ok: false as const, error: denied } : guarded(() => body(call.request));
      metrics?.handled('grpc', method, result.ok ? 'OK' : result.error.kind);
      if (result.ok) callback(null, result.value);
      else {
        if (result.error.kind === 'internal') log.error({ method, error: result.error.message }, 'request failed');
        callback(toServiceError(result.error), null);
      }
    };

  const createMicroVM = unary<CreateMicroVMRequest, Partial<CreateMicroVMResponse>>('CreateMicroVM', (req) => {
    if (req.microvm === undefined) return { ok: false, error: { kind: 'invalid-argument', message: 'invalid create microvm request: MicroVMSpec required' } };
    const created = service.create(createInputFromProto(req.microvm));
    return created.ok ? { ok: true, value: { microvm: microvmToProto(created.value) } } : created;
  });
  const deleteMicroVM = unary<DeleteMicroVMRequest, Record<string, never>>('DeleteMicroVM', (req) => {
    const deleted = service.delete(req.uid);
    return deleted.ok ? { ok: true, value: {} } : deleted;
  });
  // Get is the hot path (CAPMVM polls it for every machine): answers are kept per uid until the
  // VM changes (the store reports every change in-process), so a repeated Get skips the store,
  // the conversion and, through the serializer's cache, the encoding.
  const answers = new Map<string, GetMicroVMResponse>();
  service.watch({}, (change) => answers.delete(change.kind === 'upsert' ? change.vm.id.uid : change.id.uid));
  const getMicroVM = unary<GetMicroVMRequest, GetMicroVMResponse>('GetMicroVM', (req) => {
    const cached = answers.get(req.uid);
    if (cached !== undefined) return { ok: true, value: cached };
    const found = service.get(req.uid);
    if (!found.ok) return found;
    const answer = create(GetMicroVMResponseSchema, { microvm: microvmToProto(found.value) });
    answers.set(req.uid, answer);
    return { ok: true, value: answer };
  });
  // A List answer is capped at what a client accepts by default, rather than sent and refused by
  // the client ("Received message larger than max"). Encoded here once, the serializer reuses it.
  const listMicroVMs = unary<ListMicroVMsRequest, ListMicroVMsResponse>('ListMicroVMs', (req) => {
    const vms = service.list({ namespace: req.namespace, ...(req.name !== undefined ? { name: req.name } : {}) });
    const answer = create(ListMicroVMsResponseSchema, { microvm: vms.map(microvmToProto) });
    const size = encodeOnce(ListMicroVMsResponseSchema, answer).length;
    if (size > LIST_ANSWER_MAX_BYTES) return { ok: false, error: listTooLarge(vms.length, size) };
    return { ok: true, value: answer };
  });

  const listMicroVMsStream: grpc.handleServerStreamingCall<ListMicroVMsRequest, Partial<ListMessage>> = (call) => {
    const denied = check(authorizationOf(call.metadata));
    metrics?.handled('grpc', 'ListMicroVMsStream', denied === undefined ? 'OK' : denied.kind);
    if (denied !== undefined) {
      // emit, not destroy: grpc-js sends the status from the stream's own 'error' handler, which a
      // destroyed stream never reaches (the client would hang).
      call.emit('error', Object.assign(new Error(denied.message), toServiceError(denied)));
      return;
    }
    const query = { namespace: call.request.namespace, ...(call.request.name !== undefined ? { name: call.request.name } : {}) };
    // Subscribe before the snapshot so no change falls between the two (a duplicate is harmless).
    const unsubscribe = service.watch(query, (change) => {
      if (change.kind === 'upsert') call.write({ microvm: microvmToProto(change.vm) });
    });
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
    call.on('error', unsubscribe);
    for (const vm of service.list(query)) call.write({ microvm: microvmToProto(vm) });
  };

  return { createMicroVM, deleteMicroVM, getMicroVM, listMicroVMs, listMicroVMsStream };
}

export async function startGrpcServer(service: MicroVMService, options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const credentials = await serverCredentials(options.tls);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(grpcServiceDefinition(MicroVMDesc), microvmHandlers(service, tokenCheck(options.basicAuthToken), options.log, options.metrics));
  new HealthImplementation({ '': 'SERVING', [MicroVMDesc.typeName]: 'SERVING' }).addToServer(server);
  reflectionService().addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.endpoint, credentials, (error, boundPort) =>
      error !== null ? reject(new Error(`cannot listen on ${options.endpoint}: ${error.message}`)) : resolve(boundPort),
    );
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Streams (ListMicroVMsStream) never end by themselves: give them a moment, then force.
        const force = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
