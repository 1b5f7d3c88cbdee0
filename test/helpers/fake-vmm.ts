// A fake VMM API: a node:http server on a unix socket that serves a VMM's published OpenAPI
// document (Swagger 2.0 for Firecracker, OpenAPI 3 for Cloud Hypervisor) and refuses every request
// the document does not allow:
//   - 404 for a path the document doesn't have, 405 for a method the path doesn't have;
//   - 400 for a body that breaks the operation's schema: wrong type, missing required property,
//     a property the schema doesn't define (unless `additionalProperties` allows it), a value
//     outside an enum or a minimum/maximum/integer format range, a read-only property, a body on an
//     operation that takes none, a missing required body, a body that isn't JSON;
//   - 400 when a path parameter and a body property of the same name differ (Firecracker refuses
//     `PUT /drives/a` with `drive_id: "b"`; not in the schema, but the API's documented rule).
// Errors are `{"fault_message": "..."}`. An accepted request gets the operation's lowest 2xx
// status and, where the document defines a response body, a value built from its schema (or what
// the `onAccepted` hook returns). Every request, accepted or not, is recorded.
// The validator is written here on purpose (no library): it covers the schema keywords the two
// documents use and nothing more.
import { appendFileSync, readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { LinuxProcessTable } from '../../src/adapters/process/process-table.js';
import { UnixSocketApiClient, VmmApiError } from '../../src/adapters/providers/openapi-http.js';
import type { ProcessMention, ProcessTable, SpawnOptions, VmmProcess } from '../../src/core/ports.js';

/** The schema keywords the two documents use. */
export interface Schema {
  readonly $ref?: string;
  readonly type?: string;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Schema;
  readonly items?: Schema;
  readonly enum?: readonly unknown[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly format?: string;
  readonly readOnly?: boolean;
  readonly default?: unknown;
  readonly example?: unknown;
}

interface Parameter {
  readonly name: string;
  readonly in: string;
  readonly required?: boolean;
  readonly schema?: Schema;
  readonly type?: string;
}

interface Operation {
  readonly parameters?: readonly Parameter[];
  readonly requestBody?: { readonly required?: boolean; readonly content?: Readonly<Record<string, { readonly schema?: Schema }>> };
  readonly responses?: Readonly<Record<string, { readonly schema?: Schema; readonly content?: Readonly<Record<string, { readonly schema?: Schema }>> }>>;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;

export type MatchResult =
  | { readonly kind: 'ok'; readonly template: string; readonly operation: Operation; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: 'no-path' }
  | { readonly kind: 'no-method'; readonly allowed: readonly string[] };

/** Integer ranges of the `format`s the documents use. */
const INTEGER_FORMATS: Readonly<Record<string, readonly [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

export class ApiSpec {
  private constructor(
    private readonly doc: Record<string, unknown>,
    /** `/` for Firecracker, `/api/v1` for Cloud Hypervisor. */
    readonly basePath: string,
    private readonly paths: Readonly<Record<string, Record<string, Operation>>>,
  ) {}

  static load(file: string): ApiSpec {
    const doc: unknown = parseYaml(readFileSync(file, 'utf8'));
    if (!isRecord(doc) || !isRecord(doc.paths)) throw new Error(`${file} is not an OpenAPI document`);
    let basePath = '/';
    if (typeof doc.basePath === 'string') basePath = doc.basePath;
    const servers = doc.servers;
    if (Array.isArray(servers) && isRecord(servers[0]) && typeof servers[0].url === 'string') basePath = new URL(servers[0].url).pathname;
    return new ApiSpec(doc, basePath.replace(/\/+$/, '') || '/', doc.paths as Record<string, Record<string, Operation>>);
  }

  /** A `#/...` JSON pointer into the document. */
  private pointer(ref: string): Schema {
    if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
    let node: unknown = this.doc;
    for (const part of ref.slice(2).split('/')) {
      node = isRecord(node) ? node[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
    }
    if (!isRecord(node)) throw new Error(`dangling $ref ${ref}`);
    return node;
  }

  resolve(schema: Schema): Schema {
    let s = schema;
    for (let depth = 0; s.$ref !== undefined; depth++) {
      if (depth > 32) throw new Error(`$ref loop at ${schema.$ref}`);
      s = this.pointer(s.$ref);
    }
    return s;
  }

  /** A named schema (`definitions` in Swagger 2, `components.schemas` in OpenAPI 3). */
  schema(name: string): Schema {
    const swagger = this.doc.definitions;
    return this.pointer(isRecord(swagger) && name in swagger ? `#/definitions/${name}` : `#/components/schemas/${name}`);
  }

  match(method: string, urlPath: string): MatchResult {
    const base = this.basePath === '/' ? '' : this.basePath;
    if (!urlPath.startsWith(`${base}/`)) return { kind: 'no-path' };
    const path = urlPath.slice(base.length);
    const segments = path.split('/');
    for (const [template, item] of Object.entries(this.paths)) {
      const parts = template.split('/');
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const fits = parts.every((part, i) => {
        const segment = segments[i] ?? '';
        const param = /^\{(.+)\}$/.exec(part);
        if (param?.[1] !== undefined) {
          if (segment === '') return false;
          params[param[1]] = decodeURIComponent(segment);
          return true;
        }
        return part === segment;
      });
      if (!fits) continue;
      const operation = item[method.toLowerCase()];
      if (operation === undefined) {
        return { kind: 'no-method', allowed: METHODS.filter((m) => item[m] !== undefined).map((m) => m.toUpperCase()) };
      }
      return { kind: 'ok', template, operation, params };
    }
    return { kind: 'no-path' };
  }

  /** The request body's schema and whether a body is required; undefined: the operation takes none. */
  bodyOf(operation: Operation): { readonly schema: Schema; readonly required: boolean } | undefined {
    const swaggerBody = operation.parameters?.find((p) => p.in === 'body');
    if (swaggerBody?.schema !== undefined) return { schema: swaggerBody.schema, required: swaggerBody.required === true };
    const content = operation.requestBody?.content?.['application/json'];
    if (content?.schema !== undefined) return { schema: content.schema, required: operation.requestBody?.required === true };
    return undefined;
  }

  /** The lowest 2xx status and its body schema. */
  successOf(operation: Operation): { readonly status: number; readonly schema?: Schema } {
    const codes = Object.keys(operation.responses ?? {})
      .map(Number)
      .filter((c) => c >= 200 && c < 300)
      .sort((a, b) => a - b);
    const status = codes[0] ?? 200;
    const response = operation.responses?.[String(status)];
    const schema = response?.schema ?? response?.content?.['application/json']?.schema;
    return schema !== undefined ? { status, schema } : { status };
  }

  /** Every way `value` breaks `schema`, each as `<where>: <what>`; empty when it conforms. */
  validate(schemaOrRef: Schema, value: unknown, where = 'body', request = true): string[] {
    const schema = this.resolve(schemaOrRef);
    const errors: string[] = [];
    if (schema.enum !== undefined && !schema.enum.some((e) => e === value)) {
      errors.push(`${where}: ${JSON.stringify(value)} is not one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`);
      return errors;
    }
    const type = schema.type ?? (schema.properties !== undefined ? 'object' : undefined);
    switch (type) {
      case undefined:
        return errors;
      case 'object': {
        if (!isRecord(value)) return [`${where}: expected an object, got ${typeOf(value)}`];
        for (const name of schema.required ?? []) {
          if (!(name in value)) errors.push(`${where}: missing required property "${name}"`);
        }
        const extra = schema.additionalProperties;
        for (const [name, item] of Object.entries(value)) {
          const property = schema.properties?.[name];
          if (property !== undefined) {
            if (request && this.resolve(property).readOnly === true) errors.push(`${where}.${name}: is read-only`);
            errors.push(...this.validate(property, item, `${where}.${name}`, request));
          } else if (isRecord(extra)) {
            errors.push(...this.validate(extra, item, `${where}.${name}`, request));
          } else if (extra !== true && (schema.properties !== undefined || extra === false)) {
            errors.push(`${where}: unknown property "${name}"`);
          }
        }
        return errors;
      }
      case 'array':
        if (!Array.isArray(value)) return [`${where}: expected an array, got ${typeOf(value)}`];
        if (schema.items !== undefined) {
          const items = schema.items;
          value.forEach((item, i) => errors.push(...this.validate(items, item, `${where}[${i}]`, request)));
        }
        return errors;
      case 'string':
        if (typeof value !== 'string') return [`${where}: expected a string, got ${typeOf(value)}`];
        if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${where}: shorter than ${schema.minLength}`);
        return errors;
      case 'boolean':
        return typeof value === 'boolean' ? errors : [`${where}: expected a boolean, got ${typeOf(value)}`];
      case 'integer':
      case 'number': {
        if (typeof value !== 'number' || !Number.isFinite(value))
          return [`${where}: expected ${type === 'integer' ? 'an integer' : 'a number'}, got ${typeOf(value)}`];
        if (type === 'integer' && !Number.isInteger(value)) return [`${where}: expected an integer, got ${value}`];
        const range = schema.format !== undefined ? INTEGER_FORMATS[schema.format] : undefined;
        if (range !== undefined && (value < range[0] || value > range[1])) errors.push(`${where}: ${value} is out of range for ${schema.format}`);
        if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${where}: ${value} is less than the minimum ${schema.minimum}`);
        if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${where}: ${value} is more than the maximum ${schema.maximum}`);
        return errors;
      }
      default:
        return [`${where}: the document uses type "${type}", which this fake does not know`];
    }
  }

  /** A plausible value of the schema: example, default, first enum value, or required parts. */
  sample(schemaOrRef: Schema): unknown {
    const schema = this.resolve(schemaOrRef);
    if (schema.example !== undefined) return schema.example;
    if (schema.default !== undefined) return schema.default;
    if (schema.enum !== undefined) return schema.enum[0];
    switch (schema.type ?? (schema.properties !== undefined ? 'object' : undefined)) {
      case 'object': {
        const out: Record<string, unknown> = {};
        for (const name of schema.required ?? []) {
          const property = schema.properties?.[name];
          out[name] = property !== undefined ? this.sample(property) : {};
        }
        return out;
      }
      case 'array':
        return [];
      case 'string':
        return 'fake';
      case 'integer':
      case 'number':
        return schema.minimum ?? 0;
      case 'boolean':
        return false;
      default:
        return {};
    }
  }
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  /** The parsed JSON body; absent when the request had none. */
  readonly body?: unknown;
  readonly status: number;
  /** Why the fake refused it. */
  readonly fault?: string;
}

export interface HookResult {
  readonly status?: number;
  readonly body?: unknown;
  /** Runs after the answer was sent (e.g. exit the process). */
  readonly after?: () => void;
}

export interface FakeVmmOptions {
  readonly spec: ApiSpec;
  readonly socketPath: string;
  /** Appends each request as one JSON line here. */
  readonly logFile?: string;
  /**
   * Called for requests the spec allows, with the path parameters. Returns an answer to use
   * instead of the spec's (an error status to model a VMM's own semantic checks), or undefined.
   */
  readonly onAccepted?: (request: RecordedRequest, params: Readonly<Record<string, string>>) => HookResult | undefined;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export class FakeVmm {
  readonly requests: RecordedRequest[] = [];
  private server: Server | undefined;

  constructor(private readonly options: FakeVmmOptions) {}

  async listen(): Promise<void> {
    await rm(this.options.socketPath, { force: true });
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.socketPath, () => resolve());
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.options.socketPath, { force: true });
  }

  private record(entry: RecordedRequest): void {
    this.requests.push(entry);
    if (this.options.logFile !== undefined) appendFileSync(this.options.logFile, `${JSON.stringify(entry)}\n`);
  }

  private answer(res: ServerResponse, status: number, body: unknown): void {
    if (body === undefined || status === 204) {
      res.writeHead(status, { 'Content-Length': '0' });
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)) });
    res.end(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const text = await readBody(req);
    const refuse = (status: number, fault: string, body?: unknown): void => {
      this.record({ method, path, ...(body !== undefined ? { body } : {}), status, fault });
      this.answer(res, status, { fault_message: fault });
    };
    let body: unknown;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text) as unknown;
      } catch {
        refuse(400, `the body is not JSON: ${text.slice(0, 200)}`);
        return;
      }
    }
    const spec = this.options.spec;
    const match = spec.match(method, path);
    if (match.kind === 'no-path') return refuse(404, `no such path in the API: ${path}`, body);
    if (match.kind === 'no-method') return refuse(405, `${method} is not allowed on ${path} (allowed: ${match.allowed.join(', ')})`, body);
    const bodySpec = spec.bodyOf(match.operation);
    if (body !== undefined) {
      if (bodySpec === undefined) return refuse(400, `${method} ${match.template} takes no body`, body);
      const contentType = req.headers['content-type'] ?? '';
      if (!contentType.startsWith('application/json')) return refuse(400, `the body's content type is "${contentType}", not application/json`, body);
      const errors = spec.validate(bodySpec.schema, body);
      for (const [name, value] of Object.entries(match.params)) {
        if (isRecord(body) && name in body && body[name] !== value)
          errors.push(`body.${name}: ${JSON.stringify(body[name])} differs from the path's ${JSON.stringify(value)}`);
      }
      if (errors.length > 0) return refuse(400, errors.join('; '), body);
    } else if (bodySpec?.required === true) {
      return refuse(400, `${method} ${match.template} requires a body`);
    }
    const entry: RecordedRequest = { method, path, ...(body !== undefined ? { body } : {}), status: 0 };
    const hook = this.options.onAccepted?.(entry, match.params);
    const success = spec.successOf(match.operation);
    const status = hook?.status ?? success.status;
    const fault = status >= 300 && isRecord(hook?.body) && typeof hook.body.fault_message === 'string' ? hook.body.fault_message : undefined;
    this.record({ ...entry, status, ...(fault !== undefined ? { fault } : {}) });
    this.answer(res, status, hook?.body ?? (success.schema !== undefined ? spec.sample(success.schema) : undefined));
    if (hook?.after !== undefined) res.once('finish', hook.after);
  }
}

/** The recorded requests a fake VMM binary wrote next to its socket. */
export async function readRequestLog(file: string): Promise<RecordedRequest[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as RecordedRequest);
}

/** Where the fake binary writes its request log and what it was started with. */
export function requestLogPath(socketPath: string): string {
  return `${socketPath}.requests.jsonl`;
}
export function startInfoPath(socketPath: string): string {
  return `${socketPath}.start.json`;
}

// ---------------------------------------------------------------------------------------------

/**
 * A ProcessTable that records what the provider asked of it (spawns and signals) and delegates to
 * a real one (the daemon's LinuxProcessTable in the provider tests).
 */
export class RecordingProcessTable implements ProcessTable {
  readonly spawned: Array<{ readonly bin: string; readonly args: readonly string[]; readonly process: VmmProcess }> = [];
  readonly signals: string[] = [];

  constructor(private readonly inner: ProcessTable) {}

  async spawn(bin: string, args: readonly string[], options: SpawnOptions): Promise<VmmProcess> {
    const process = await this.inner.spawn(bin, args, options);
    this.spawned.push({ bin, args, process });
    return process;
  }

  isAlive(process: VmmProcess): Promise<boolean> {
    return this.inner.isAlive(process);
  }

  exitReason(process: VmmProcess): string | undefined {
    return this.inner.exitReason(process);
  }

  recorded(pidFile: string): Promise<VmmProcess | undefined> {
    return this.inner.recorded(pidFile);
  }

  listMentioning(dir: string): Promise<ProcessMention[]> {
    return this.inner.listMentioning(dir);
  }

  async signal(process: VmmProcess, signal: NodeJS.Signals): Promise<void> {
    if (await this.inner.isAlive(process)) this.signals.push(`${signal} ${process.pid}`);
    await this.inner.signal(process, signal);
  }
}

/**
 * Runs what it spawns inside a network namespace (`ip netns exec <ns>` in front, which execs:
 * the pid is the command's). For providers whose launch chain opens taps by name, which exist
 * only in a test's namespace.
 */
export class NetnsProcessTable implements ProcessTable {
  constructor(
    private readonly inner: ProcessTable,
    private readonly netns: string,
  ) {}

  spawn(bin: string, args: readonly string[], options: SpawnOptions): Promise<VmmProcess> {
    return this.inner.spawn('ip', ['netns', 'exec', this.netns, bin, ...args], options);
  }
  isAlive(process: VmmProcess): Promise<boolean> {
    return this.inner.isAlive(process);
  }
  exitReason(process: VmmProcess): string | undefined {
    return this.inner.exitReason(process);
  }
  recorded(pidFile: string): Promise<VmmProcess | undefined> {
    return this.inner.recorded(pidFile);
  }

  listMentioning(dir: string): Promise<ProcessMention[]> {
    return this.inner.listMentioning(dir);
  }
  signal(process: VmmProcess, signal: NodeJS.Signals): Promise<void> {
    return this.inner.signal(process, signal);
  }
}

/** A FakeVmm on a temp unix socket plus a client, for tests of the fake's own validation. */
export interface FakeApiHarness {
  readonly fake: FakeVmm;
  readonly api: UnixSocketApiClient;
  /** Asserts the request is refused with this status and a detail matching `fault`. */
  refused(method: string, path: string, body: unknown, status: number, fault: RegExp): Promise<void>;
  close(): Promise<void>;
}

export async function fakeApiHarness(specFile: string, prefix: string): Promise<FakeApiHarness> {
  const tmp = await mkdtemp(join(tmpdir(), prefix));
  const socketPath = join(tmp, 'api.sock');
  const fake = new FakeVmm({ spec: ApiSpec.load(specFile), socketPath });
  await fake.listen();
  const api = new UnixSocketApiClient(socketPath);
  return {
    fake,
    api,
    refused: async (method, path, body, status, fault) => {
      await assert.rejects(api.request(method, path, body), (err: unknown) => {
        assert.ok(err instanceof VmmApiError, String(err));
        assert.equal(err.status, status);
        assert.match(err.detail, fault);
        return true;
      });
    },
    close: async () => {
      await fake.close();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** The daemon's real process table, recording what the provider asked of it. */
export const processTable = (): RecordingProcessTable => new RecordingProcessTable(new LinuxProcessTable());

/**
 * A stand-in for Firecracker's jailer (no KVM here for the real one): takes the jailer's
 * arguments (refusing others), makes `<chroot-base>/<exec file name>/<id>/root` owned by the
 * uid/gid as the jailer does, and execs the exec file as that uid/gid with `--id=<id>` and the
 * timings first, as the jailer does. There is no chroot: FAKE_VMM_ROOT tells the fake Firecracker
 * to find its paths inside that directory instead.
 */
export async function writeFakeJailer(dir: string): Promise<string> {
  const bin = join(dir, 'jailer');
  const script = [
    '#!/bin/sh',
    'set -e',
    'fail() { echo "fake-jailer: $*" >&2; exit 1; }',
    'while [ "$#" -gt 0 ]; do',
    '  case "$1" in',
    '    --id) id=$2; shift 2 ;;',
    '    --exec-file) exec_file=$2; shift 2 ;;',
    '    --uid) uid=$2; shift 2 ;;',
    '    --gid) gid=$2; shift 2 ;;',
    '    --chroot-base-dir) base=$2; shift 2 ;;',
    '    --) shift; break ;;',
    '    *) fail "unexpected argument $1" ;;',
    '  esac',
    'done',
    '[ -n "$id" ] && [ -n "$exec_file" ] && [ -n "$uid" ] && [ -n "$gid" ] || fail "--id, --exec-file, --uid and --gid are required"',
    'case "$id" in *[!A-Za-z0-9-]*) fail "invalid id $id" ;; esac',
    'case "$exec_file" in /*) ;; *) fail "--exec-file must be absolute" ;; esac',
    'case "$(basename "$exec_file")" in *firecracker*) ;; *) fail "the exec file name must include firecracker" ;; esac',
    'root="${base:-/srv/jailer}/$(basename "$exec_file")/$id/root"',
    'mkdir -p "$root"',
    'chown "$uid:$gid" "$root"',
    'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups env FAKE_VMM_ROOT="$root" "$exec_file" --id="$id" --start-time-us=0 --start-time-cpu-us=0 "$@"',
    '',
  ].join('\n');
  await writeFile(bin, script);
  await chmod(bin, 0o755);
  return bin;
}

/** A shell script that runs the fake VMM binary with the given environment; a provider's `bin`. */
export async function writeFakeBin(dir: string, name: string, env = ''): Promise<string> {
  const bin = join(dir, name);
  const fakeBin = join(import.meta.dirname, 'fake-vmm-bin.ts');
  const script = ['#!/bin/sh', `${env} exec "${process.execPath}" --import "${import.meta.resolve('tsx')}" "${fakeBin}" "$@"`, ''].join('\n');
  await writeFile(bin, script);
  await chmod(bin, 0o755);
  return bin;
}
