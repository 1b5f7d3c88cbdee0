// A small promise wrapper over grpc-js for the MicroVM service, as the fl CLI needs it. Every call
// resolves to a result value (never rejects), so the CLI can map gRPC codes to exit codes in one place.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { grpcServiceDefinition } from '../../adapters/api/grpc/service-definition.js';
import type { MicroVM as MicroVMMessage, MicroVMSpec } from '../../gen/flintlock/types/microvm_pb.js';
import { MicroVM as MicroVMService } from '../../gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { MicroVMWatch, type WatchEvent } from '../../gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { MicroVMLifecycle, type LogChunk } from '../../gen/flintlock/services/ext/v1alpha1/lifecycle_pb.js';
import { Host, type HostInfo } from '../../gen/flintlock/services/ext/v1alpha1/host_pb.js';

export interface TlsClientOptions {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface ClientOptions {
  /** `host:port` (any grpc-js target). */
  readonly host: string;
  /** Sent as `authorization: Basic base64(token)`, as the daemon and CAPMVM expect. */
  readonly token?: string;
  /** When set, TLS (with a client certificate if given); otherwise plaintext h2c. */
  readonly tls?: TlsClientOptions;
  /** Per-call deadline for unary calls. */
  readonly deadlineMs?: number;
}

/** A failed call: the gRPC status and the server's message. */
export interface RpcError {
  readonly code: grpc.status;
  /** `NOT_FOUND`, `UNAVAILABLE`, ... */
  readonly codeName: string;
  readonly details: string;
}

export type RpcResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: RpcError };

/** Thrown only while building the client (unreadable TLS files), never by calls. */
export class ClientSetupError extends Error {
  override readonly name = 'ClientSetupError';
}

export interface WatchHandle {
  cancel(): void;
  /** Settles when the stream ends: ok after `cancel()` or a clean end, else the error. */
  readonly done: Promise<RpcResult<void>>;
}

const DEFAULT_DEADLINE_MS = 30_000;

export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? `CODE_${code}`;
}

function rpcErrorOf(error: Partial<grpc.StatusObject> & { message?: string }): RpcError {
  const code = error.code ?? grpc.status.UNKNOWN;
  // grpc-js puts the server's message in `details`; `message` repeats it behind "<code> <NAME>: ".
  const details = error.details !== undefined && error.details !== '' ? error.details : (error.message ?? '');
  return { code, codeName: statusName(code), details };
}

function readTlsFile(kind: string, path: string | undefined): Buffer | null {
  if (path === undefined || path === '') return null;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ClientSetupError(`cannot read TLS ${kind} file ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (options.tls === undefined) return grpc.credentials.createInsecure();
  const ca = readTlsFile('CA', options.tls.caFile);
  const cert = readTlsFile('certificate', options.tls.certFile);
  const key = readTlsFile('key', options.tls.keyFile);
  if ((cert === null) !== (key === null)) throw new ClientSetupError('a client certificate needs both --tls-cert and --tls-key');
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = grpc.credentials.createSsl(ca, key, cert);
  } catch (e) {
    // OpenSSL's "PEM routines::no start line" and the like: say which files, and the usual mistake.
    const why = e instanceof Error ? e.message.replace(/^error:[0-9A-F]+:/, '') : String(e);
    throw new ClientSetupError(
      `cannot use the TLS files (${why}): --tls-ca and --tls-cert must be PEM certificates and --tls-key the PEM private key of --tls-cert (swapped?)`,
    );
  }
  return withoutIpServername(credentials);
}

interface SecureConnectorInternals {
  _createSecureConnector?: (this: unknown, ...args: unknown[]) => { connectionOptions?: { servername?: string } };
}

/**
 * grpc-js sends the target's host as the TLS server name (SNI) even when it is an IP address,
 * which RFC 6066 forbids and Node answers with a DeprecationWarning on every call (`fl --host
 * 10.0.0.5:9090`). Without a server name Node checks the certificate against the connection's
 * host, IP SANs included, so nothing is lost by leaving it out. grpc-js has no option for this;
 * the hook is its internal connector (pinned grpc-js; test/integration/fl-tls.test.ts fails if
 * the warning comes back).
 */
function withoutIpServername(credentials: grpc.ChannelCredentials): grpc.ChannelCredentials {
  const internals = credentials as unknown as SecureConnectorInternals;
  const create = internals._createSecureConnector;
  if (typeof create !== 'function') return credentials;
  internals._createSecureConnector = function (this: unknown, ...args: unknown[]) {
    const connector = create.apply(this, args);
    const options = connector.connectionOptions;
    if (options?.servername !== undefined && isIP(options.servername) !== 0) delete options.servername;
    return connector;
  };
  return credentials;
}

function callMetadata(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined && token !== '') metadata.set('authorization', `Basic ${Buffer.from(token).toString('base64')}`);
  return metadata;
}

interface TypedMethod<I extends DescMessage, O extends DescMessage> {
  readonly path: string;
  readonly serialize: (value: MessageShape<I>) => Buffer;
  readonly deserialize: (bytes: Buffer) => MessageShape<O>;
  readonly input: I;
}

// Typed from the protobuf-es descriptors; grpc-js's own ServiceDefinition is untyped (`any`).
function typedMethod<I extends DescMessage, O extends DescMessage>(method: {
  readonly name: string;
  readonly parent: { readonly typeName: string };
  readonly input: I;
  readonly output: O;
}): TypedMethod<I, O> {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    serialize: (value) => Buffer.from(toBinary(method.input, value)),
    deserialize: (bytes) => fromBinary(method.output, bytes),
    input: method.input,
  };
}

const METHODS = {
  create: typedMethod(MicroVMService.method.createMicroVM),
  delete: typedMethod(MicroVMService.method.deleteMicroVM),
  get: typedMethod(MicroVMService.method.getMicroVM),
  list: typedMethod(MicroVMService.method.listMicroVMs),
  // Our extension services, on the same port (flintlockd's, not the Go original's).
  watch: typedMethod(MicroVMWatch.method.watchMicroVMs),
  stop: typedMethod(MicroVMLifecycle.method.stopMicroVM),
  start: typedMethod(MicroVMLifecycle.method.startMicroVM),
  restart: typedMethod(MicroVMLifecycle.method.restartMicroVM),
  pause: typedMethod(MicroVMLifecycle.method.pauseMicroVM),
  resume: typedMethod(MicroVMLifecycle.method.resumeMicroVM),
  logs: typedMethod(MicroVMLifecycle.method.getMicroVMLogs),
  hostInfo: typedMethod(Host.method.getHostInfo),
};

export type LifecycleCall = 'stop' | 'start' | 'restart' | 'pause' | 'resume';

const MicroVMClientConstructor = grpc.makeGenericClientConstructor(grpcServiceDefinition(MicroVMService), 'MicroVM');

// grpc-js backs off reconnects up to 2 minutes; `list --watch` and `--wait` outlive daemon
// restarts, so they should notice a daemon that is back within seconds.
const CHANNEL_OPTIONS: grpc.ClientOptions = { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 5000 };

export interface WatchRequest {
  readonly namespace: string;
  readonly name?: string;
  /** The position of the last event received, to resume from. */
  readonly resume?: { readonly epoch: string; readonly sequence: bigint };
}

export class MicroVMClient {
  private readonly client: grpc.Client;
  private readonly deadlineMs: number;
  private readonly token: string | undefined;

  /** Throws ClientSetupError when TLS files cannot be read. */
  constructor(options: ClientOptions) {
    this.client = new MicroVMClientConstructor(options.host, channelCredentials(options), CHANNEL_OPTIONS);
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.token = options.token;
  }

  private unary<I extends DescMessage, O extends DescMessage>(method: TypedMethod<I, O>, request: MessageInitShape<I>): Promise<RpcResult<MessageShape<O>>> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        method.path,
        method.serialize,
        method.deserialize,
        create(method.input, request),
        callMetadata(this.token),
        { deadline: Date.now() + this.deadlineMs },
        (error, response) => {
          if (error !== null) resolve({ ok: false, error: rpcErrorOf(error) });
          else if (response === undefined) resolve({ ok: false, error: { code: grpc.status.INTERNAL, codeName: 'INTERNAL', details: 'empty response' } });
          else resolve({ ok: true, value: response });
        },
      );
    });
  }

  /** The created (or, for an identical existing spec, the existing) VM. */
  async createMicroVM(spec: MicroVMSpec): Promise<RpcResult<MicroVMMessage>> {
    const result = await this.unary(METHODS.create, { microvm: spec });
    return result.ok ? withVm(result.value.microvm) : result;
  }

  async getMicroVM(uid: string): Promise<RpcResult<MicroVMMessage>> {
    const result = await this.unary(METHODS.get, { uid });
    return result.ok ? withVm(result.value.microvm) : result;
  }

  /** Empty namespace: every namespace. */
  async listMicroVMs(namespace: string, name?: string): Promise<RpcResult<MicroVMMessage[]>> {
    const result = await this.unary(METHODS.list, { namespace, ...(name !== undefined ? { name } : {}) });
    return result.ok ? { ok: true, value: result.value.microvm } : result;
  }

  async deleteMicroVM(uid: string): Promise<RpcResult<void>> {
    const result = await this.unary(METHODS.delete, { uid });
    return result.ok ? { ok: true, value: undefined } : result;
  }

  /** MicroVMLifecycle: the VM with its new intent. */
  async lifecycle(call: LifecycleCall, uid: string): Promise<RpcResult<MicroVMMessage>> {
    const result = await this.unary(METHODS[call], { uid });
    return result.ok ? withVm(result.value.microvm) : result;
  }

  /** MicroVMLifecycle/GetMicroVMLogs: the console log's chunks until it ends (or, following, until cancelled). */
  logs(request: { uid: string; follow: boolean; tailBytes: bigint }, onChunk: (data: Uint8Array) => void): WatchHandle {
    const call = this.client.makeServerStreamRequest(
      METHODS.logs.path,
      METHODS.logs.serialize,
      METHODS.logs.deserialize,
      create(METHODS.logs.input, request),
      callMetadata(this.token),
      {},
    );
    return this.streamHandle(call, (chunk: LogChunk) => onChunk(chunk.data));
  }

  /** Host/GetHostInfo (flintlockd's extension service). */
  async hostInfo(): Promise<RpcResult<HostInfo>> {
    const result = await this.unary(METHODS.hostInfo, {});
    if (!result.ok) return result;
    const host = result.value.host;
    return host !== undefined
      ? { ok: true, value: host }
      : { ok: false, error: { code: grpc.status.INTERNAL, codeName: 'INTERNAL', details: 'answer without a host' } };
  }

  /** MicroVMWatch/WatchMicroVMs: the snapshot (or a resume), then every change, until cancelled. */
  watch(request: WatchRequest, onEvent: (event: WatchEvent) => void): WatchHandle {
    const message = create(METHODS.watch.input, {
      namespace: request.namespace,
      ...(request.name !== undefined ? { name: request.name } : {}),
      ...(request.resume !== undefined ? { resumeEpoch: request.resume.epoch, resumeSequence: request.resume.sequence } : {}),
    });
    const call = this.client.makeServerStreamRequest(
      METHODS.watch.path,
      METHODS.watch.serialize,
      METHODS.watch.deserialize,
      message,
      callMetadata(this.token),
      {},
    );
    return this.streamHandle(call, onEvent);
  }

  private streamHandle<T>(call: grpc.ClientReadableStream<T>, onMessage: (message: T) => void): WatchHandle {
    let cancelled = false;
    const done = new Promise<RpcResult<void>>((resolve) => {
      call.on('data', onMessage);
      call.on('error', (error: grpc.ServiceError) => {
        if (cancelled && error.code === grpc.status.CANCELLED) resolve({ ok: true, value: undefined });
        else resolve({ ok: false, error: rpcErrorOf(error) });
      });
      call.on('end', () => resolve({ ok: true, value: undefined }));
    });
    return {
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
      done,
    };
  }

  close(): void {
    this.client.close();
  }
}

function withVm(vm: MicroVMMessage | undefined): RpcResult<MicroVMMessage> {
  // Both known clients dereference these; a server that omits them is not one we can talk to.
  if (vm === undefined) return { ok: false, error: { code: grpc.status.INTERNAL, codeName: 'INTERNAL', details: 'the server answered without a microvm' } };
  return { ok: true, value: vm };
}
