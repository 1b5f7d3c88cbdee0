// The HTTP/JSON gateway (COMPAT §1): the REST mapping the Go original serves through
// grpc-gateway, on node:https (node:http only when `insecure`), calling the same MicroVMService
// in-process. JSON follows grpc-gateway's default marshaler (protojson EmitUnpopulated,
// DiscardUnknown, lowerCamelCase). Transport security is the gRPC port's (COMPAT §2.10).
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { create, fromJson, toJson, type DescField, type DescMessage, type JsonObject, type JsonValue, type MessageShape } from '@bufbuild/protobuf';
import { MicroVMSpecSchema } from '../../../gen/flintlock/types/microvm_pb.js';
import {
  CreateMicroVMResponseSchema,
  GetMicroVMResponseSchema,
  ListMessageSchema,
  ListMicroVMsRequestSchema,
  ListMicroVMsResponseSchema,
} from '../../../gen/microvm/services/api/v1alpha1/microvms_pb.js';
import type { MicroVMService } from '../../../core/service.js';
import type { ListQuery, Logger } from '../../../core/ports.js';
import { appError, errorMessage, thrownError, type AppError, type ErrorKind } from '../../../core/result.js';
import { createInputFromProto, listQuery, microvmToProto } from '../convert.js';
import { tokenCheck, type TokenCheck } from '../auth.js';
import type { ApiMetrics } from '../metrics.js';
import { sendPaced } from '../bounded-writer.js';
import { unknownEnumName } from './json-enums.js';
import { loadServerTls, tlsMode, tlsServerOptions, type TlsSettings } from '../tls.js';

export interface HttpGatewayOptions {
  /** host:port; port 0 picks a free one. */
  readonly endpoint: string;
  /** The gRPC port's settings: required, so no caller gets a plaintext gateway by omission. */
  readonly tls: TlsSettings;
  readonly basicAuthToken?: string;
  readonly log: Logger;
  readonly metrics?: ApiMetrics;
}

export interface RunningHttpGateway {
  readonly port: number;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** gRPC's OK, counted for a request answered without error. */
const OK_CODE = 0;
const STREAM_PATH = '/microvm.services.api.v1alpha1.MicroVM/ListMicroVMsStream';

/** An error as the gateway answers it: HTTP status, gRPC code (counted in metrics), and its kind. */
class HttpError {
  constructor(
    readonly status: number,
    readonly code: number,
    readonly kind: string,
    readonly message: string,
    readonly allow?: string,
  ) {}
}

const STATUS_OF: Record<ErrorKind, { status: number; code: number }> = {
  'invalid-argument': { status: 400, code: 3 },
  'failed-precondition': { status: 400, code: 9 },
  'not-found': { status: 404, code: 5 },
  unauthenticated: { status: 401, code: 16 },
  'resource-exhausted': { status: 429, code: 8 },
  unavailable: { status: 503, code: 14 },
  internal: { status: 500, code: 13 },
};

const fromAppError = (e: AppError): HttpError => new HttpError(STATUS_OF[e.kind].status, STATUS_OF[e.kind].code, e.kind, e.message);
// Same codes and texts as grpc-gateway's DefaultRoutingErrorHandler (405 carries Unimplemented).
const NOT_FOUND = new HttpError(404, 5, 'not-found', 'Not Found');
const methodNotAllowed = (allow: string): HttpError => new HttpError(405, 12, 'unimplemented', 'Method Not Allowed', allow);
const TOO_LARGE = new HttpError(413, 8, 'resource-exhausted', `request body exceeds ${MAX_BODY_BYTES} bytes`);

type Route =
  | { readonly rpc: 'CreateMicroVM' }
  | { readonly rpc: 'DeleteMicroVM'; readonly uid: string }
  // The original answers this path with List only; the rpc is settled once we know whether {x} is a uid.
  | { readonly rpc: 'GetOrList'; readonly x: string; readonly name: string | undefined }
  | { readonly rpc: 'ListMicroVMs'; readonly query: ListQuery }
  | { readonly rpc: 'ListMicroVMsStream' };

/** A ULID as the daemon makes uids: 26 characters of Crockford base32, upper case. */
const looksLikeUid = (x: string): boolean => /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(x);

type Answer = { readonly rpc: string; readonly body: JsonValue } | { readonly rpc: string; readonly error: HttpError };

function route(requestMethod: string, url: URL): Route | HttpError {
  // HEAD is GET without the body (node:http leaves the body out of a HEAD answer itself).
  const method = requestMethod === 'HEAD' ? 'GET' : requestMethod;
  const path = url.pathname;
  const name = url.searchParams.has('name') ? (url.searchParams.get('name') ?? '') : undefined;
  const only = (allowed: string, r: Route): Route | HttpError => (method === allowed ? r : methodNotAllowed(allowed === 'GET' ? 'GET, HEAD' : allowed));
  if (path === '/v1alpha1/microvm') return only('POST', { rpc: 'CreateMicroVM' });
  if (path === '/v1alpha1/microvms') return only('GET', { rpc: 'ListMicroVMs', query: listQuery(url.searchParams.get('namespace') ?? '', name) });
  if (path === STREAM_PATH) return only('POST', { rpc: 'ListMicroVMsStream' });
  const match = /^\/v1alpha1\/microvm\/([^/]*)$/.exec(path);
  if (match === null) return NOT_FOUND;
  let segment: string;
  try {
    segment = decodeURIComponent(match[1] ?? '');
  } catch {
    return fromAppError(appError('invalid-argument', `malformed path segment ${JSON.stringify(match[1])}`));
  }
  if (method === 'GET') return { rpc: 'GetOrList', x: segment, name };
  if (method === 'DELETE') return { rpc: 'DeleteMicroVM', uid: segment };
  return methodNotAllowed('GET, HEAD, DELETE');
}

/** Go's EmitUnpopulated writes unset singular message fields as null; protobuf-es omits them. */
function withNulls(desc: DescMessage, json: JsonValue): JsonValue {
  // Well-known types have their own JSON forms (Timestamp is a string, Struct any object).
  if (!isObject(json) || desc.typeName.startsWith('google.protobuf.')) return json;
  const out: JsonObject = {};
  for (const field of desc.fields) {
    const value = json[field.jsonName];
    if (value !== undefined) out[field.jsonName] = nestedWithNulls(field, value);
    // Oneof members and proto3 `optional` (a synthetic oneof in Go) stay omitted, as in protojson.
    else if (field.fieldKind === 'message' && field.oneof === undefined && !field.proto.proto3Optional) out[field.jsonName] = null;
  }
  for (const [key, value] of Object.entries(json)) if (!(key in out)) out[key] = value;
  return out;
}

function nestedWithNulls(field: DescField, value: JsonValue): JsonValue {
  if (field.fieldKind === 'message') return withNulls(field.message, value);
  if (field.fieldKind === 'list' && field.listKind === 'message' && Array.isArray(value)) return value.map((v) => withNulls(field.message, v));
  if (field.fieldKind === 'map' && field.mapKind === 'message' && isObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withNulls(field.message, v)]));
  }
  return value;
}

function isObject(v: JsonValue): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function encode<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  return withNulls(schema, toJson(schema, message, { alwaysEmitImplicit: true }));
}

function decode<Desc extends DescMessage>(schema: Desc, text: string): MessageShape<Desc> | HttpError {
  let json: JsonValue;
  try {
    // grpc-gateway treats an empty body as an empty message.
    json = text.trim() === '' ? {} : (JSON.parse(text) as JsonValue);
  } catch (e) {
    return fromAppError(appError('invalid-argument', `invalid JSON body: ${errorMessage(e)}`));
  }
  const badEnum = unknownEnumName(schema, json);
  // Worded as validation words a spec's problems, since it is one.
  const subject = schema.typeName === MicroVMSpecSchema.typeName ? 'microvm spec' : `${schema.name} body`;
  if (badEnum !== undefined) return fromAppError(appError('invalid-argument', `invalid ${subject}: ${badEnum}`));
  try {
    return fromJson(schema, json, { ignoreUnknownFields: true });
  } catch (e) {
    return fromAppError(appError('invalid-argument', `invalid ${schema.name} body: ${errorMessage(e)}`));
  }
}

const isHttpError = (v: unknown): v is HttpError => v instanceof HttpError;

function answerUnary(service: MicroVMService, r: Exclude<Route, { rpc: 'ListMicroVMsStream' }>, body: string): Answer {
  switch (r.rpc) {
    case 'CreateMicroVM': {
      const spec = decode(MicroVMSpecSchema, body);
      if (isHttpError(spec)) return { rpc: r.rpc, error: spec };
      const created = service.create(createInputFromProto(spec));
      if (!created.ok) return { rpc: r.rpc, error: fromAppError(created.error) };
      return { rpc: r.rpc, body: encode(CreateMicroVMResponseSchema, create(CreateMicroVMResponseSchema, { microvm: microvmToProto(created.value) })) };
    }
    case 'DeleteMicroVM': {
      const deleted = service.delete(r.uid);
      return deleted.ok ? { rpc: r.rpc, body: {} } : { rpc: r.rpc, error: fromAppError(deleted.error) };
    }
    case 'GetOrList': {
      const found = service.get(r.x);
      if (found.ok)
        return { rpc: 'GetMicroVM', body: encode(GetMicroVMResponseSchema, create(GetMicroVMResponseSchema, { microvm: microvmToProto(found.value) })) };
      // A uid that names no VM (deleted, say) is a Get that found nothing, unless some VMs do live
      // in a namespace of that spelling: then it is the original's List.
      if (looksLikeUid(r.x) && service.list(listQuery(r.x, undefined)).length === 0) return { rpc: 'GetMicroVM', error: fromAppError(found.error) };
      return answerUnary(service, { rpc: 'ListMicroVMs', query: listQuery(r.x, r.name) }, body);
    }
    case 'ListMicroVMs': {
      const microvm = service.list(r.query).map(microvmToProto);
      return { rpc: r.rpc, body: encode(ListMicroVMsResponseSchema, create(ListMicroVMsResponseSchema, { microvm })) };
    }
  }
}

function readBody(req: http.IncomingMessage): Promise<string | HttpError> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.resolve(TOO_LARGE);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else {
        req.off('data', onData);
        resolve(TOO_LARGE);
      }
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const errorJson = (e: HttpError): JsonObject => ({ code: e.code, message: e.message, details: [] });

function send(res: http.ServerResponse, status: number, body: JsonValue, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: http.ServerResponse, e: HttpError): void {
  // An unread oversized body is not worth draining: close the connection after answering.
  send(res, e.status, errorJson(e), { ...(e.allow !== undefined ? { allow: e.allow } : {}), ...(e === TOO_LARGE ? { connection: 'close' } : {}) });
}

/**
 * Newline-delimited `{"result":...}` chunks, like grpc-gateway's server-streaming forwarder: the
 * matching VMs, then the end of the response, as the original's ListMicroVMsStream. Written as the
 * client reads (each chunk waits for 'drain' once the socket buffer is full), never all at once.
 */
function serveStream(service: MicroVMService, query: ListQuery, res: http.ServerResponse, open: Set<http.ServerResponse>, log: Logger): void {
  const vms = service.list(query);
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  res.flushHeaders();
  open.add(res);
  const chunks = (function* toChunks(): Generator<string> {
    for (const vm of vms) yield `${JSON.stringify({ result: encode(ListMessageSchema, create(ListMessageSchema, { microvm: microvmToProto(vm) })) })}\n`;
  })();
  // Headers are out: a failure can only cut the response short, so the client sees it incomplete.
  const stop = sendPaced(
    res,
    chunks,
    () => res.end(),
    (e) => {
      log.error({ method: 'ListMicroVMsStream', error: errorMessage(e) }, 'http gateway stream failed');
      res.destroy();
    },
  );
  res.on('close', () => {
    stop();
    open.delete(res);
  });
}

function parseEndpoint(endpoint: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(endpoint.trim());
  if (match === null) throw new Error(`invalid http endpoint ${JSON.stringify(endpoint)}: expected host:port`);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? undefined : host, port: Number(match[3]) };
}

const GATEWAY_MODE_TEXT: Record<ReturnType<typeof tlsMode>, string> = {
  plaintext: 'serves plain HTTP: TLS is DISABLED (insecure)',
  TLS: 'serves HTTPS: TLS 1.3, no client certificates',
  mTLS: 'serves HTTPS: TLS 1.3, client certificates required (mTLS)',
};

export async function startHttpGateway(service: MicroVMService, options: HttpGatewayOptions): Promise<RunningHttpGateway> {
  const check: TokenCheck = tokenCheck(options.basicAuthToken);
  const streams = new Set<http.ServerResponse>();
  const count = (rpc: string, code: number): void => options.metrics?.httpHandledRequest(rpc, code);

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const r = route(req.method ?? 'GET', new URL(req.url ?? '/', 'http://gateway'));
    if (isHttpError(r)) {
      count('unknown', r.code);
      return sendError(res, r);
    }
    // GetOrList is counted as ListMicroVMs when refused: that is what the path means in the original.
    const rpcName = r.rpc === 'GetOrList' ? 'ListMicroVMs' : r.rpc;
    const denied = check(req.headers.authorization);
    const body = denied === undefined ? await readBody(req) : fromAppError(denied);
    if (isHttpError(body)) {
      count(rpcName, body.code);
      return sendError(res, body);
    }
    if (r.rpc === 'ListMicroVMsStream') {
      const request = decode(ListMicroVMsRequestSchema, body);
      count(r.rpc, isHttpError(request) ? request.code : OK_CODE);
      if (isHttpError(request)) return sendError(res, request);
      return serveStream(service, listQuery(request.namespace, request.name), res, streams, options.log);
    }
    const answer = answerUnary(service, r, body);
    count(answer.rpc, 'error' in answer ? answer.error.code : OK_CODE);
    if ('error' in answer) {
      if (answer.error.kind === 'internal') options.log.error({ method: answer.rpc, error: answer.error.message }, 'request failed');
      return sendError(res, answer.error);
    }
    // A Create or Delete is acknowledged once it is on disk (a failing sync is an internal error, below).
    if (answer.rpc === 'CreateMicroVM' || answer.rpc === 'DeleteMicroVM') await service.durable();
    send(res, 200, answer.body);
  };

  const listener: http.RequestListener = (req, res) => {
    handle(req, res).catch((e: unknown) => {
      options.log.error({ method: req.method, url: req.url, error: errorMessage(e) }, 'http gateway request failed');
      const failure = thrownError(e, 'internal error');
      if (!res.headersSent) sendError(res, fromAppError(failure));
      else res.destroy();
    });
  };
  // Loaded before listening: a bad file stops start-up instead of leaving a port half-configured.
  const tls = await loadServerTls(options.tls);
  // With mTLS, node:https refuses a missing or untrusted client cert in the handshake, before any
  // request reaches the token check (which still applies on top).
  const server = tls === undefined ? http.createServer(listener) : https.createServer(tlsServerOptions(tls), listener);
  const { host, port } = parseEndpoint(options.endpoint);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`cannot listen on ${options.endpoint}: ${errorMessage(e)}`)));
    server.listen(port, host, resolve);
  });
  const mode = tlsMode(options.tls);
  options.log.info({ endpoint: options.endpoint, tls: mode }, `http gateway ${GATEWAY_MODE_TEXT[mode]}`);
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        // A stream still being written (a slow reader) is cut short rather than waited for.
        for (const res of streams) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
