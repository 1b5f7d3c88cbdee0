// The gRPC API: microvm.services.api.v1alpha1.MicroVM on grpc-js, our extension service
// flintlock.services.ext.v1alpha1.MicroVMWatch (./watch.ts), MicroVMLifecycle (./lifecycle.ts) and Host (./host.ts) beside it with the same checks, plus
// grpc.health.v1 and server reflection (both left open without a token, like health probes and
// grpcurl expect).
import { randomUUID } from 'node:crypto';
import { create, toBinary, type DescFile } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { MicroVMService } from '../../../core/service.js';
import { thrownError, type AppError } from '../../../core/result.js';
import type { Logger } from '../../../core/ports.js';
import { ChangeJournal, DEFAULT_JOURNAL_CAPACITY } from '../../../core/change-journal.js';
import { MicroVMWatch as MicroVMWatchDesc } from '../../../gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { MicroVMLifecycle as MicroVMLifecycleDesc } from '../../../gen/flintlock/services/ext/v1alpha1/lifecycle_pb.js';
import { lifecycleHandlers } from './lifecycle.js';
import { Host as HostDesc } from '../../../gen/flintlock/services/ext/v1alpha1/host_pb.js';
import {
  MicroVM as MicroVMDesc,
  type CreateMicroVMRequest,
  type CreateMicroVMResponse,
  type DeleteMicroVMRequest,
  type GetMicroVMRequest,
  GetMicroVMResponseSchema,
  type GetMicroVMResponse,
  type ListMessage,
  ListMessageSchema,
  type ListMicroVMsRequest,
  type ListMicroVMsResponse,
  ListMicroVMsResponseSchema,
} from '../../../gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { createInputFromProto, listQuery, microvmToProto } from '../convert.js';
import { tokenCheck, type TokenCheck } from '../auth.js';
import { encodeOnce, grpcServiceDefinition, withEmbeddedEncoding } from './service-definition.js';
import type { ApiMetrics } from '../metrics.js';
import { sendPaced, type BacklogLimits } from '../bounded-writer.js';
import { authorizationOf, failStream, guarded, unaryCalls } from './call.js';
import { DEFAULT_WATCH_LIMITS, WatchHub, watchHandlers, type WatchStats } from './watch.js';
import { hostHandlers, type HostReport } from './host.js';
import { loadServerTls, type ServerTls, type TlsSettings } from '../tls.js';

export type { TlsSettings } from '../tls.js';

export interface GrpcServerOptions {
  /** host:port; port 0 picks a free one. */
  readonly endpoint: string;
  readonly tls: TlsSettings;
  readonly basicAuthToken?: string;
  readonly log: Logger;
  readonly metrics?: ApiMetrics;
  /** Per watch client: how much may wait for it before it is cut off (DEFAULT_WATCH_LIMITS). */
  readonly watchLimits?: BacklogLimits;
  /** Changes kept for watches that resume (DEFAULT_JOURNAL_CAPACITY). */
  readonly watchHistory?: number;
  /** What Host/GetHostInfo reports; without it the Host service is not served. */
  readonly hostReport?: () => Promise<HostReport>;
}

export interface RunningGrpcServer {
  readonly port: number;
  /** The watch streams and their backlogs (also exported as metrics). */
  watchStats(): WatchStats;
  close(): Promise<void>;
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
  const seen = new Set<string>();
  const files = [MicroVMDesc.file, MicroVMWatchDesc.file, MicroVMLifecycleDesc.file, HostDesc.file]
    .flatMap((file) => withDependencies(file, seen))
    .map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  // @grpc/reflection reads only `fileDescriptorProtos` from a proto-loader package definition.
  const definition = { [MicroVMDesc.typeName]: { fileDescriptorProtos: files } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  return new ReflectionService(definition);
}

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

/** Builds the handlers; each checks the token first (outcomes are counted by ApiMetrics.interceptor). */
export function microvmHandlers(service: MicroVMService, check: TokenCheck, log: Logger): grpc.UntypedServiceImplementation {
  const unary = unaryCalls(check, log, () => service.durable());

  const createMicroVM = unary<CreateMicroVMRequest, Partial<CreateMicroVMResponse>>(
    'CreateMicroVM',
    (req) => {
      if (req.microvm === undefined) return { ok: false, error: { kind: 'invalid-argument', message: 'invalid create microvm request: MicroVMSpec required' } };
      const created = service.create(createInputFromProto(req.microvm));
      return created.ok ? { ok: true, value: { microvm: microvmToProto(created.value) } } : created;
    },
    true,
  );
  const deleteMicroVM = unary<DeleteMicroVMRequest, Record<string, never>>(
    'DeleteMicroVM',
    (req) => {
      const deleted = service.delete(req.uid);
      return deleted.ok ? { ok: true, value: {} } : deleted;
    },
    true,
  );
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
    const microvm = microvmToProto(found.value);
    const answer = withEmbeddedEncoding(create(GetMicroVMResponseSchema, { microvm }), GetMicroVMResponseSchema.field.microvm, [microvm]);
    answers.set(req.uid, answer);
    return { ok: true, value: answer };
  });
  // A List answer is capped at what a client accepts by default, rather than sent and refused by
  // the client ("Received message larger than max"). Encoded here once, the serializer reuses it.
  const listMicroVMs = unary<ListMicroVMsRequest, ListMicroVMsResponse>('ListMicroVMs', (req) => {
    const vms = service.list(listQuery(req.namespace, req.name));
    const microvms = vms.map(microvmToProto);
    const answer = withEmbeddedEncoding(create(ListMicroVMsResponseSchema, { microvm: microvms }), ListMicroVMsResponseSchema.field.microvm, microvms);
    const size = encodeOnce(ListMicroVMsResponseSchema, answer).length;
    if (size > LIST_ANSWER_MAX_BYTES) return { ok: false, error: listTooLarge(vms.length, size) };
    return { ok: true, value: answer };
  });

  // The matching VMs, then the end of the stream, as the original: clients read it to EOF. The
  // live watch is MicroVMWatch/WatchMicroVMs. Sent as the client reads, never all at once.
  const listMicroVMsStream: grpc.handleServerStreamingCall<ListMicroVMsRequest, Partial<ListMessage>> = (call) => {
    const denied = check(authorizationOf(call.metadata));
    if (denied !== undefined) {
      failStream(call, denied);
      return;
    }
    const query = listQuery(call.request.namespace, call.request.name);
    const listed = guarded(() => ({ ok: true, value: service.list(query) }));
    if (!listed.ok) {
      log.error({ method: 'ListMicroVMsStream', error: listed.error.message }, 'request failed');
      failStream(call, listed.error);
      return;
    }
    const messages = (function* toMessages(): Generator<Partial<ListMessage>> {
      for (const vm of listed.value) {
        const microvm = microvmToProto(vm);
        yield withEmbeddedEncoding(create(ListMessageSchema, { microvm }), ListMessageSchema.field.microvm, [microvm]);
      }
    })();
    const stop = sendPaced(
      call,
      messages,
      () => {
        call.end();
      },
      (e) => {
        const error = thrownError(e);
        log.error({ method: 'ListMicroVMsStream', error: error.message }, 'request failed');
        failStream(call, error);
      },
    );
    call.on('cancelled', stop);
  };

  return { createMicroVM, deleteMicroVM, getMicroVM, listMicroVMs, listMicroVMsStream };
}

export async function startGrpcServer(service: MicroVMService, options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const credentials = await serverCredentials(options.tls);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    ...(options.metrics !== undefined ? { interceptors: [options.metrics.interceptor] } : {}),
  });
  const check = tokenCheck(options.basicAuthToken);
  const addService = (definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation): void => {
    server.addService(definition, handlers);
    options.metrics?.initializeService(definition);
  };
  addService(grpcServiceDefinition(MicroVMDesc), microvmHandlers(service, check, options.log));
  // A new epoch per server: sequences restart with it, so a position from before a restart is
  // recognised as foreign and answered with a fresh snapshot.
  const journal = new ChangeJournal(service, randomUUID(), options.watchHistory ?? DEFAULT_JOURNAL_CAPACITY);
  const hub = new WatchHub(service, journal, options.watchLimits ?? DEFAULT_WATCH_LIMITS, options.metrics);
  addService(grpcServiceDefinition(MicroVMWatchDesc), watchHandlers(hub, check));
  addService(grpcServiceDefinition(MicroVMLifecycleDesc), lifecycleHandlers(service, check, options.log));
  if (options.hostReport !== undefined) addService(grpcServiceDefinition(HostDesc), hostHandlers(options.hostReport, check, options.log));
  new HealthImplementation({
    '': 'SERVING',
    [MicroVMDesc.typeName]: 'SERVING',
    [MicroVMWatchDesc.typeName]: 'SERVING',
    [MicroVMLifecycleDesc.typeName]: 'SERVING',
    ...(options.hostReport !== undefined ? { [HostDesc.typeName]: 'SERVING' as const } : {}),
  }).addToServer(server);
  reflectionService().addToServer(server);
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.endpoint, credentials, (error, boundPort) =>
        error !== null ? reject(new Error(`cannot listen on ${options.endpoint}: ${error.message}`)) : resolve(boundPort),
      );
    });
  } catch (e) {
    hub.close();
    journal.close();
    throw e;
  }
  return {
    port,
    watchStats: () => hub.stats(),
    close: () =>
      new Promise<void>((resolve) => {
        // Watches end with UNAVAILABLE (clients reconnect); one whose client reads nothing keeps
        // its call open behind unsent data, so give them a moment, then force.
        hub.close();
        journal.close();
        const force = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
