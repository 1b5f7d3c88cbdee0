// The API fuzzer's environment, transports and invariants, shared by test/fuzz/api-fuzz.test.ts
// (a few thousand cases with a fixed seed) and bench/fuzz.ts (a long run); the cases themselves
// are in api-fuzz-cases.ts. The environment is the real MicroVMService over SQLite behind the
// real gRPC server and HTTP gateway, with the real providers' capabilities and virtiofs checks.
// Every case is checked by runCase against the same invariants: the daemon stays up (no crash,
// no unhandled rejection), a refused request stores nothing, answers InvalidArgument and names
// the field, an accepted one holds only values the identifier policy allows and lays out no file
// outside its VM directory, nothing appears outside the state directory, and error messages stay
// short and never repeat a value at length.
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { create, fromBinary, fromJson, toBinary, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { startHttpGateway, type RunningHttpGateway } from '../../src/adapters/api/http/gateway.js';
import { createInputFromProto, microvmToProto } from '../../src/adapters/api/convert.js';
import { NodeVmFilesystem } from '../../src/adapters/fs/vm-filesystem.js';
import { virtiofsHostChecks } from '../../src/adapters/fs/virtiofs-roots.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { CloudHypervisorProvider } from '../../src/adapters/providers/cloud-hypervisor.js';
import { FirecrackerProvider } from '../../src/adapters/providers/firecracker.js';
import { QemuProvider } from '../../src/adapters/providers/qemu.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import { cloudInitFiles } from '../../src/core/cloud-init.js';
import { CIDATA_FILE, CONSOLE_LOG_FILE } from '../../src/core/launch.js';
import type { LaunchDisk, LaunchNic } from '../../src/core/ports.js';
import type { MicroVM } from '../../src/core/model.js';
import { volumePath } from '../../src/core/steps/images.js';
import { macvtapNodePath } from '../../src/core/steps/network.js';
import { MicroVMSchema, MicroVMSpecSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import {
  CreateMicroVMRequestSchema,
  CreateMicroVMResponseSchema,
  GetMicroVMRequestSchema,
  GetMicroVMResponseSchema,
  ListMicroVMsRequestSchema,
  ListMicroVMsResponseSchema,
  ListMessageSchema,
  DeleteMicroVMRequestSchema,
} from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import {
  applyMutations,
  baseCase,
  baseChoicesDefault,
  baseJson,
  bodyCase,
  bodyText,
  createCase,
  FILL,
  isObject,
  lookupCase,
  SENTINEL,
  setOwn,
  wireCase,
  type BodyCase,
  type CreateCase,
  type FuzzCase,
  type LookupCase,
  type Sandbox,
  type WireCase,
  type WireValue,
} from './api-fuzz-cases.js';
import { MemoryProcesses } from './doubles.js';
import { createTestService, type TestService } from './service.js';

// ---------------------------------------------------------------------------------------------
// Settings

export { SENTINEL, type FuzzCase, type Sandbox };

/** The seed of a run: FUZZ_SEED, else a fixed one so CI failures reproduce. */
export function fuzzSeed(fallback = 0x5eed): number {
  const n = Number.parseInt(process.env['FUZZ_SEED'] ?? '', 10);
  return Number.isFinite(n) ? n : fallback;
}

export function envInt(name: string, fallback: number): number {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** identifiers.ts echoes 64 characters; library messages that quote context (YAML's excerpt) stay below twice that. */
const ECHO_RUN = FILL.repeat(65);
/** The brief's bound: MAX_ERROR_MESSAGE_CHARS (2048) plus the "... (N more characters)" tail. */
export const MAX_MESSAGE_CHARS = 2100;
const CALL_TIMEOUT_MS = 20_000;
/** gRPC codes as plain numbers: outcomes carry HTTP's `code` field too. */
const INVALID_ARGUMENT: number = grpc.status.INVALID_ARGUMENT;
const INTERNAL: number = grpc.status.INTERNAL;
// ---------------------------------------------------------------------------------------------
// The environment: a real MicroVMService over SQLite behind the real gRPC server and HTTP gateway

export interface FuzzEnv {
  readonly sandbox: Sandbox;
  readonly svc: TestService;
  readonly grpcAddress: string;
  readonly httpPort: number;
  /** Uids of VMs stored before the run (lookups and deletes must leave them alone). */
  readonly seedUids: readonly string[];
  /** Unhandled rejections and uncaught exceptions seen since the last check. */
  readonly crashes: string[];
  close(): Promise<void>;
}

export async function startFuzzEnv(): Promise<FuzzEnv> {
  let sandbox: Sandbox | undefined;
  const log = silentLogger();
  const processes = new MemoryProcesses();
  // The real providers (binaries that don't exist: nothing is ever started), so every capability
  // rule of validation applies as in the daemon.
  const providers = new StaticProviderRegistry(
    [
      new QemuProvider({ bin: '/nonexistent/qemu-system-x86_64', processes, log, kvm: false, tscKhz: 1_000_000 }),
      new FirecrackerProvider({ bin: '/nonexistent/firecracker', processes, log, kvmUsable: () => false }),
      new CloudHypervisorProvider({ bin: '/nonexistent/cloud-hypervisor', processes, log, kvmUsable: () => false }),
    ],
    'qemu',
  );
  const svc = createTestService('fl-fuzz-', {
    providers,
    hostChecks: (dir) => {
      const sharesRoot = join(dir, 'shares');
      const shareDir = join(sharesRoot, 'data');
      const outsideDir = join(dir, 'outside');
      const escapeLink = join(sharesRoot, 'link-out');
      mkdirSync(shareDir, { recursive: true });
      mkdirSync(outsideDir, { recursive: true });
      symlinkSync(outsideDir, escapeLink);
      sandbox = { root: dir, stateDir: join(dir, 'state'), sharesRoot, shareDir, outsideDir, escapeLink };
      return virtiofsHostChecks([sharesRoot]);
    },
  });
  if (sandbox === undefined) throw new Error('the sandbox was not laid out');
  const grpcServer: RunningGrpcServer = await startGrpcServer(svc.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log });
  const gateway: RunningHttpGateway = await startHttpGateway(svc.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log });
  const seedUids: string[] = [];
  for (const name of ['seed-0', 'seed-1', 'seed-2']) {
    const spec = fromJson(MicroVMSpecSchema, { ...baseJson(baseChoicesDefault, sandbox), id: name, namespace: 'fuzz-seeds' });
    const created = svc.service.create(createInputFromProto(spec));
    if (!created.ok) throw new Error(`seed VM refused: ${created.error.message}`);
    seedUids.push(created.value.id.uid);
  }
  const crashes: string[] = [];
  const onRejection = (reason: unknown): void => void crashes.push(`unhandledRejection: ${describe(reason)}`);
  const onException = (error: unknown): void => void crashes.push(`uncaughtException: ${describe(error)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  const env: FuzzEnv = {
    sandbox,
    svc,
    grpcAddress: `127.0.0.1:${grpcServer.port}`,
    httpPort: gateway.port,
    seedUids,
    crashes,
    close: async () => {
      grpcClient?.close();
      grpcClient = undefined;
      httpAgent.destroy();
      await grpcServer.close();
      await gateway.close();
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
      svc.close();
    },
  };
  baseline = treeOutsideState(sandbox);
  stateBaseline = new Set(readdirSync(sandbox.stateDir));
  return env;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
}
// ---------------------------------------------------------------------------------------------
// Transports

interface Outcome {
  /** gRPC status code; for HTTP the `code` of the error body (0 on 200). */
  readonly code: number;
  readonly httpStatus?: number;
  readonly message: string;
  /** The uid an accepted create answered. */
  readonly uid?: string;
  readonly listed?: ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
  readonly problems: string[];
}

let grpcClient: grpc.Client | undefined;
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function client(env: FuzzEnv): grpc.Client {
  grpcClient ??= new grpc.Client(env.grpcAddress, grpc.credentials.createInsecure());
  return grpcClient;
}

const SERVICE = '/microvm.services.api.v1alpha1.MicroVM';

function unary(env: FuzzEnv, method: string, bytes: Uint8Array): Promise<{ code: number; details: string; answer?: Buffer }> {
  return new Promise((resolvePromise) => {
    client(env).makeUnaryRequest<Buffer, Buffer>(
      `${SERVICE}/${method}`,
      (b) => b,
      (b) => b,
      Buffer.from(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + CALL_TIMEOUT_MS },
      (error, value) => {
        if (error !== null) resolvePromise({ code: error.code, details: error.details });
        else resolvePromise({ code: 0, details: '', ...(value !== undefined ? { answer: value } : {}) });
      },
    );
  });
}

function httpCall(env: FuzzEnv, method: string, path: string, body?: string, stream = false): Promise<{ status: number; text: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: env.httpPort, method, path, agent: httpAgent, headers: body !== undefined ? { 'content-type': 'application/json' } : {} },
      (res) => {
        if (stream && res.statusCode === 200) {
          // The stream never ends by itself: its status is what matters here.
          res.destroy();
          resolvePromise({ status: 200, text: '' });
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(CALL_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${CALL_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** A path segment as a raw-path client would send it: only bytes HTTP can carry unescaped stay. */
function pathSegment(value: string, raw: boolean): string {
  let out = '';
  for (const ch of value) {
    if (raw ? /^[A-Za-z0-9._~!$&'()*+,;=:@%/-]$/.test(ch) : /^[A-Za-z0-9._~-]$/.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function httpOutcome(res: { status: number; text: string }): Outcome {
  const problems: string[] = [];
  let body: unknown;
  try {
    body = res.text === '' ? {} : JSON.parse(res.text);
  } catch {
    problems.push(`HTTP ${res.status} answered a body that is not JSON: ${res.text.slice(0, 200)}`);
  }
  const obj = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (res.status === 200) return { code: 0, httpStatus: 200, message: '', problems };
  const code = typeof obj['code'] === 'number' ? obj['code'] : -1;
  const message = typeof obj['message'] === 'string' ? obj['message'] : '';
  if (code === -1 || typeof obj['message'] !== 'string' || !Array.isArray(obj['details']))
    problems.push(`HTTP ${res.status}: error body is not {code, message, details}: ${res.text.slice(0, 200)}`);
  const expected: Record<number, number> = { 400: 3, 404: 5, 405: 12, 413: 8, 429: 8, 500: 13, 503: 14 };
  if (expected[res.status] !== code) problems.push(`HTTP ${res.status} carries gRPC code ${code}`);
  return { code, httpStatus: res.status, message, problems };
}

async function sendCreate(env: FuzzEnv, c: CreateCase | BodyCase): Promise<Outcome & { readonly sent: string }> {
  if (c.kind === 'body') {
    const res = await httpCall(env, 'POST', '/v1alpha1/microvm', c.body);
    const out = httpOutcome(res);
    return { ...out, sent: c.body, ...(res.status === 200 ? { uid: uidOfJson(res.text) } : {}) };
  }
  const json = applyMutations(baseJson(c.base, env.sandbox), c.mutations, c.transport);
  if (c.transport === 'http') {
    const text = bodyText(json);
    const res = await httpCall(env, 'POST', '/v1alpha1/microvm', text);
    return { ...httpOutcome(res), sent: text, ...(res.status === 200 ? { uid: uidOfJson(res.text) } : {}) };
  }
  // gRPC mutations keep JSON types right, so protojson always converts them to a message. UTF-8
  // can't carry a lone surrogate: a client sends U+FFFD (or bad bytes: see the wire cases).
  const spec = fromJson(MicroVMSpecSchema, wellFormed(json), { ignoreUnknownFields: true });
  const bytes = toBinary(CreateMicroVMRequestSchema, create(CreateMicroVMRequestSchema, { microvm: spec }));
  const res = await unary(env, 'CreateMicroVM', bytes);
  const uid = res.answer !== undefined ? fromBinary(CreateMicroVMResponseSchema, res.answer).microvm?.spec?.uid : undefined;
  return { code: res.code, message: res.details, problems: [], sent: bodyText(json), ...(uid !== undefined ? { uid } : {}) };
}

/** Lone surrogates become U+FFFD, as a UTF-8 encoder writes them. */
const utf8 = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

function wellFormed(v: JsonValue): JsonValue {
  if (typeof v === 'string') return utf8(v);
  if (Array.isArray(v)) return v.map(wellFormed);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) setOwn(out, utf8(k), wellFormed(x));
  return out;
}

function uidOfJson(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { microvm?: { spec?: { uid?: string } } };
    return body.microvm?.spec?.uid;
  } catch {
    return undefined;
  }
}

function writeField(w: BinaryWriter, no: number, value: WireValue): void {
  switch (value.w) {
    case 'varint':
      w.tag(no, WireType.Varint).uint64(value.v);
      break;
    case 'bytes':
      w.tag(no, WireType.LengthDelimited).bytes(value.v);
      break;
    case 'fixed32':
      w.tag(no, WireType.Bit32).fixed32(value.v);
      break;
    case 'fixed64':
      w.tag(no, WireType.Bit64).fixed64(value.v);
      break;
  }
}

/** Protobuf lets a later occurrence of a field override (scalars) or merge into (messages) an earlier one. */
function wireBytes(c: WireCase, sandbox: Sandbox): Uint8Array {
  const spec = fromJson(MicroVMSpecSchema, baseJson(c.base, sandbox), { ignoreUnknownFields: true });
  const w = new BinaryWriter();
  w.raw(toBinary(MicroVMSpecSchema, spec));
  for (const f of c.fields) {
    if (f.path === 'spec') writeField(w, f.no, f.value);
    else {
      const inner = new BinaryWriter();
      writeField(inner, f.no, f.value);
      // interfaces = 10 (repeated: appends an interface), additional_volumes = 9, kernel = 6 (merged).
      const outer = f.path === 'interface' ? 10 : f.path === 'volume' ? 9 : 6;
      w.tag(outer, WireType.LengthDelimited).bytes(inner.finish());
    }
  }
  const specBytes = w.finish();
  const req = new BinaryWriter();
  if (!c.noSpec) req.tag(1, WireType.LengthDelimited).bytes(specBytes);
  const bytes = req.finish();
  for (const flip of c.flips) if (bytes.length > 0) bytes[flip.at % bytes.length] = flip.byte;
  return c.truncate !== undefined && bytes.length > 0 ? bytes.subarray(0, c.truncate % bytes.length) : bytes;
}

// ---------------------------------------------------------------------------------------------
// Invariants

/** Fields validation may name (indexes as [], map keys as {}), from validation.ts and metadata.ts. */
const VOLUME_FIELDS = ['id', 'partition_id', 'source', 'source.container_source', 'source.virtiofs_source', 'size_in_mb', 'mount_point'];
const KNOWN_FIELDS = new Set([
  'id',
  'namespace',
  'labels',
  'labels{}',
  'metadata',
  'metadata{}',
  'vcpu',
  'memory_in_mb',
  'kernel',
  'kernel.image',
  'kernel.filename',
  'kernel.cmdline',
  'kernel.cmdline{}',
  'initrd.image',
  'initrd.filename',
  'root_volume',
  ...VOLUME_FIELDS.map((f) => `root_volume.${f}`),
  'additional_volumes',
  ...VOLUME_FIELDS.map((f) => `additional_volumes[].${f}`),
  'interfaces',
  ...['device_id', 'type', 'guest_mac', 'overrides.bridge_name', 'address.address', 'address.gateway', 'address.nameservers', 'address.nameservers[]'].map(
    (f) => `interfaces[].${f}`,
  ),
  'provider',
  'allow_guest_agent',
]);
const SPEC_PROBLEM = /^invalid microvm spec: ([a-z_]+(?:\[[^\]]*\])?(?:\.[a-z_]+(?:\[[^\]]*\])?)*): \S/;
/**
 * protobuf-es's fromJson errors behind the gateway's prefix: they name the proto field, or for a
 * value of the wrong JSON type in a message, enum or well-known type (Timestamp) that type.
 */
const JSON_PROBLEM =
  /^invalid MicroVMSpec body: cannot decode (?:(?:field|oneof) flintlock\.types\.[A-Za-z]+\.[a-z_]+|(?:message |enum )?(?:flintlock\.types|google\.protobuf)\.[A-Za-z.]+) from JSON/;

/** Whether a refusal message names a field in one of the documented forms; else what is wrong. */
function messageProblem(message: string, transport: 'grpc' | 'http'): string | undefined {
  const spec = SPEC_PROBLEM.exec(message);
  if (spec !== null) {
    const name = (spec[1] ?? '').replace(/\[\d+\]/g, '[]').replace(/^(labels|metadata|kernel\.cmdline)\[[^\]]*\]$/, '$1{}');
    return KNOWN_FIELDS.has(name) ? undefined : `the message names ${JSON.stringify(spec[1])}, not a field of the spec`;
  }
  if (message === 'invalid create microvm request: MicroVMSpec required' && transport === 'grpc') return undefined;
  if (transport === 'http' && (message.startsWith('invalid JSON body: ') || JSON_PROBLEM.test(message))) return undefined;
  return 'the message names no field in a documented form';
}

// Restated here rather than imported, so that a loosened policy in src/core/identifiers.ts fails
// the fuzzer instead of silently moving it along.
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;
const DEVICE = /^[a-z][a-z0-9_]{0,14}$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const CMDLINE_KEY = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const labelKey = (k: string): boolean => {
  const slash = k.indexOf('/');
  return slash < 0 ? NAME.test(k) : DNS_SUBDOMAIN.test(k.slice(0, slash)) && NAME.test(k.slice(slash + 1));
};
/** The kernel's dev_valid_name(), as the iproute2 adapter enforces it, plus no control characters. */
const ifName = (n: string): boolean => {
  const bytes = Buffer.byteLength(n);
  return bytes >= 1 && bytes <= 15 && n !== '.' && n !== '..' && !/[\s/:\p{Cc}]/u.test(n);
};
const cidr = (v: string): boolean => {
  const [ip, prefix, extra] = v.split('/');
  if (ip === undefined || prefix === undefined || extra !== undefined || !/^\d{1,3}$/.test(prefix)) return false;
  const family = isIP(ip);
  return family !== 0 && Number(prefix) <= (family === 4 ? 32 : 128);
};
/** Whether `path` is strictly below `root` (a component like `..boot` is fine, `..` is not). */
const inside = (root: string, path: string): boolean => {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
};
const IMAGE_ROOT = '/image-rootfs';

/** What an accepted VM holds that the identifier policy or the limits forbid. */
export function policyViolations(vm: MicroVM, sandbox: Sandbox): string[] {
  const v: string[] = [];
  const bad = (what: string, value: unknown): void => void v.push(`accepted ${what} ${JSON.stringify(value)?.slice(0, 200) ?? String(value)}`);
  const { spec } = vm;
  if (!NAME.test(vm.id.name)) bad('id', vm.id.name);
  if (!NAME.test(vm.id.namespace)) bad('namespace', vm.id.namespace);
  if (Object.keys(spec.labels).length > 64) bad('label count', Object.keys(spec.labels).length);
  for (const [k, val] of Object.entries(spec.labels)) {
    if (!labelKey(k)) bad('label key', k);
    if (Buffer.byteLength(val) > 256 || CONTROL.test(val)) bad('label value', val);
  }
  // 16 of the client's plus the meta-data the server adds.
  if (Object.keys(spec.metadata).length > 17) bad('metadata key count', Object.keys(spec.metadata).length);
  for (const k of Object.keys(spec.metadata)) if (!NAME.test(k)) bad('metadata key', k);
  if (!Number.isInteger(spec.vcpu) || spec.vcpu < 1 || spec.vcpu > 64) bad('vcpu', spec.vcpu);
  if (!Number.isInteger(spec.memoryMb) || spec.memoryMb < 128 || spec.memoryMb > 32768) bad('memory_in_mb', spec.memoryMb);
  const inImage = (what: string, path: string | undefined): void => {
    if (path === undefined) return;
    const parts = path.replace(/^\/+/, '').split('/');
    if (CONTROL.test(path) || parts.some((p) => p === '' || p === '.' || p === '..') || !inside(IMAGE_ROOT, join(IMAGE_ROOT, path))) bad(what, path);
  };
  const image = (what: string, ref: string): void => {
    if (ref === '' || CONTROL.test(ref) || Buffer.byteLength(ref) > 1024) bad(what, ref);
  };
  image('kernel.image', spec.kernel.image);
  inImage('kernel.filename', spec.kernel.filename);
  if (spec.initrd !== undefined) {
    image('initrd.image', spec.initrd.image);
    inImage('initrd.filename', spec.initrd.filename);
  }
  let cmdlineBytes = 0;
  for (const [k, val] of Object.entries(spec.kernel.cmdline)) {
    if (!CMDLINE_KEY.test(k)) bad('kernel.cmdline key', k);
    if (CONTROL.test(val) || val.includes('"')) bad('kernel.cmdline value', val);
    cmdlineBytes += Buffer.byteLength(k) + Buffer.byteLength(val) + 2;
  }
  if (cmdlineBytes > 1536) bad('kernel.cmdline size', cmdlineBytes);
  const volumes = [...(spec.rootVolume !== undefined ? [spec.rootVolume] : []), ...spec.additionalVolumes];
  if (spec.additionalVolumes.length > 16) bad('additional volume count', spec.additionalVolumes.length);
  if (new Set(volumes.map((x) => x.id)).size !== volumes.length)
    bad(
      'duplicate volume ids',
      volumes.map((x) => x.id),
    );
  for (const volume of volumes) {
    if (!NAME.test(volume.id)) bad('volume id', volume.id);
    if (volume.partitionId !== undefined && !NAME.test(volume.partitionId)) bad('partition id', volume.partitionId);
    if (
      volume.mountPoint !== undefined &&
      (!volume.mountPoint.startsWith('/') || CONTROL.test(volume.mountPoint) || Buffer.byteLength(volume.mountPoint) > 1024)
    )
      bad('mount point', volume.mountPoint);
    if (volume.sizeMb !== undefined && (!Number.isInteger(volume.sizeMb) || volume.sizeMb < 0 || volume.sizeMb > 1024 * 1024)) bad('size_in_mb', volume.sizeMb);
    if (volume.source.containerImage !== undefined) image('container source', volume.source.containerImage);
    const share = volume.source.virtiofsPath;
    if (share !== undefined) {
      let real: string | undefined;
      try {
        real = realpathSync(share);
      } catch {
        real = undefined;
      }
      const root = realpathSync(sandbox.sharesRoot);
      if (real === undefined || !(real === root || inside(root, real)) || !statSync(real).isDirectory()) bad('virtiofs source outside the allowed root', share);
    }
  }
  const nics = spec.interfaces.filter((i) => i.allowMetadata !== true);
  if (nics.length > 16) bad('interface count', nics.length);
  if (new Set(spec.interfaces.map((i) => i.deviceId)).size !== spec.interfaces.length)
    bad(
      'duplicate device ids',
      spec.interfaces.map((i) => i.deviceId),
    );
  for (const iface of spec.interfaces) {
    if (!DEVICE.test(iface.deviceId)) bad('device id', iface.deviceId);
    if (iface.type !== 'tap' && iface.type !== 'macvtap') bad('interface type', iface.type);
    if (iface.guestMac !== undefined) {
      const first = Number.parseInt(iface.guestMac.slice(0, 2), 16);
      if (!MAC.test(iface.guestMac) || (first & 1) === 1 || iface.guestMac === '00:00:00:00:00:00') bad('guest mac', iface.guestMac);
    }
    if (iface.bridgeName !== undefined && !ifName(iface.bridgeName)) bad('bridge name', iface.bridgeName);
    const address = iface.address;
    if (address !== undefined) {
      if (!cidr(address.address)) bad('address', address.address);
      if (address.gateway !== undefined && isIP(address.gateway.split('/')[0] ?? '') === 0) bad('gateway', address.gateway);
      if (address.nameservers.length > 8) bad('nameserver count', address.nameservers.length);
      for (const ns of address.nameservers) if (isIP(ns) === 0) bad('nameserver', ns);
    }
  }
  if (!['qemu', 'firecracker', 'cloudhypervisor'].includes(spec.provider)) bad('provider', spec.provider);
  const size = toBinary(MicroVMSchema, microvmToProto(vm)).length;
  if (size > 4 * 1024 * 1024 - 1024) bad('a VM no default client can receive, bytes:', size);
  return v;
}

let baseline: Set<string> = new Set();
let stateBaseline: Set<string> = new Set();

/** Every path under the sandbox except inside the state directory (which the store owns). */
function treeOutsideState(sandbox: Sandbox): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (path === sandbox.stateDir) continue;
      out.add(path);
      if (lstatSync(path).isDirectory()) walk(path);
    }
  };
  walk(sandbox.root);
  return out;
}

/** Where an escape aimed at the sentinel could have landed. */
function sentinelSightings(sandbox: Sandbox): string[] {
  const dirs = new Set([sandbox.root, dirname(sandbox.root), tmpdir(), '/', process.cwd(), sandbox.stateDir, sandbox.sharesRoot, sandbox.outsideDir]);
  const seen: string[] = [];
  for (const dir of dirs) if (existsSync(join(dir, SENTINEL))) seen.push(join(dir, SENTINEL));
  return seen;
}

/**
 * Lays out, for an accepted VM, the files the reconciler would create from its spec (state
 * directory, volume copies, macvtap nodes, cloud-init disk, console log), as empty files: a path
 * built from a hostile value would show here. Only paths inside the VM directory are written.
 */
async function layOut(vm: MicroVM, sandbox: Sandbox): Promise<string[]> {
  const v: string[] = [];
  const fs = new NodeVmFilesystem(sandbox.stateDir);
  const vmDir = fs.vmDir(vm.id);
  if (!inside(join(sandbox.stateDir, 'vm'), vmDir)) return [`the VM directory ${JSON.stringify(vmDir)} is outside ${sandbox.stateDir}/vm`];
  await fs.ensureVmDir(vm.id);
  const files = [
    join(vmDir, CIDATA_FILE),
    join(vmDir, CONSOLE_LOG_FILE),
    ...[...(vm.spec.rootVolume !== undefined ? [vm.spec.rootVolume] : []), ...vm.spec.additionalVolumes]
      .filter((x) => x.source.containerImage !== undefined)
      .flatMap((x) => [volumePath(vmDir, x.id), volumePath(vmDir, x.id, 'qcow2')]),
    ...vm.spec.interfaces.filter((i) => i.type === 'macvtap').map((i) => macvtapNodePath(vmDir, i.deviceId)),
  ];
  for (const file of files) {
    if (!inside(vmDir, resolve(file)) || file.includes('\u0000')) {
      v.push(`a file of the VM would be at ${JSON.stringify(file)}, outside its directory`);
      continue;
    }
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, '');
  }
  await fs.removeVmDir(vm.id);
  v.push(...cloudInitProblems(vm, vmDir));
  return v;
}

/**
 * The cloud-init files the reconciler would build for an accepted VM (NICs and disks as its
 * earlier steps would leave them): an accepted spec must not be one whose reconcile throws.
 */
function cloudInitProblems(vm: MicroVM, vmDir: string): string[] {
  const nics: LaunchNic[] = vm.spec.interfaces.map((i, n) => ({
    deviceId: i.deviceId,
    type: i.type,
    hostDevice: `fltap${n.toString(16).padStart(7, '0')}`,
    mac: i.guestMac ?? '02:00:00:00:00:aa',
    ...(i.type === 'macvtap' ? { tapNode: macvtapNodePath(vmDir, i.deviceId) } : {}),
    ...(i.allowMetadata === true ? { allowMetadata: true } : {}),
  }));
  const disks: LaunchDisk[] = [
    ...(vm.spec.rootVolume !== undefined ? [{ volume: vm.spec.rootVolume, root: true }] : []),
    ...vm.spec.additionalVolumes.map((volume) => ({ volume, root: false })),
  ]
    .filter(({ volume }) => volume.source.containerImage !== undefined)
    .map(({ volume, root }) => ({ id: volume.id, path: volumePath(vmDir, volume.id), readOnly: volume.readOnly, root, format: 'raw' as const }));
  try {
    const files = cloudInitFiles(vm, nics, disks);
    return files.ok ? [] : [`the cloud-init files of an accepted VM cannot be built: ${files.error.message.slice(0, 300)}`];
  } catch (e) {
    return [`building the cloud-init files of an accepted VM throws: ${describe(e).slice(0, 500)}`];
  }
}

/** Checks that hold after every case; `sent` is shown with a failure. */
function commonChecks(env: FuzzEnv, out: Outcome, before: string, v: string[]): void {
  v.push(...out.problems);
  if (env.crashes.length > 0) v.push(...env.crashes.splice(0));
  if (out.message.length > MAX_MESSAGE_CHARS) v.push(`the message is ${out.message.length} characters`);
  if (storeSummary(env) !== before && out.code !== 0) v.push('a refused request changed the store');
  const tree = treeOutsideState(env.sandbox);
  for (const p of tree) if (!baseline.has(p)) v.push(`${p} appeared outside the state directory`);
  for (const name of readdirSync(env.sandbox.stateDir)) if (!stateBaseline.has(name) && name !== 'vm') v.push(`${name} appeared in the state directory`);
  for (const p of sentinelSightings(env.sandbox)) v.push(`${p} exists`);
}

/** The store, compared before and after a case: VMs with versions and states, the queue, the devices. */
function storeSummary(env: FuzzEnv): string {
  const repo = env.svc.repo;
  const vms = repo.list({}).map((vm) => `${vm.id.uid}:${vm.id.namespace}/${vm.id.name}:${vm.version}:${vm.status.state}:${vm.deletedAt ?? ''}`);
  return JSON.stringify([vms, repo.queue().map((q) => q.uid), repo.devices().map((d) => d.name)]);
}

export interface CaseResult {
  /** Every invariant the case broke (empty: all held). */
  readonly violations: string[];
  readonly accepted: boolean;
  /** The refusal's message ('' when accepted). */
  readonly message: string;
}

/** Runs one case and checks every invariant. */
export async function runCase(env: FuzzEnv, c: FuzzCase): Promise<CaseResult> {
  const before = storeSummary(env);
  const uidsBefore = new Set(env.svc.repo.list({}).map((vm) => vm.id.uid));
  const v: string[] = [];
  if (c.kind === 'lookup') {
    const out = await sendLookup(env, c);
    commonChecks(env, out, before, v);
    const after = storeSummary(env);
    if (after !== before && !(c.op === 'delete' && out.code === 0)) v.push(`a ${c.op} of ${JSON.stringify(c.value).slice(0, 80)} changed the store`);
    const allowed = c.transport === 'grpc' ? [0, 3, 5, 8] : [0, 3, 5, 8, 12];
    if (!allowed.includes(out.code)) v.push(`${c.op} answered code ${out.code}: ${out.message.slice(0, 300)}`);
    for (const vm of out.listed ?? []) {
      const ns = c.op === 'list' || c.op === 'stream' ? c.value : undefined;
      if (ns !== undefined && ns !== '' && vm.namespace !== ns) v.push(`list of namespace ${JSON.stringify(ns)} answered a VM of ${vm.namespace}`);
      if (c.name !== undefined && c.name !== '' && (c.op === 'list' || c.op === 'stream') && vm.name !== c.name)
        v.push(`list of name ${JSON.stringify(c.name)} answered ${vm.name}`);
    }
    return { violations: v, accepted: out.code === 0, message: out.message };
  }
  let out: Outcome & { sent?: string };
  if (c.kind === 'wire') {
    const res = await unary(env, 'CreateMicroVM', wireBytes(c, env.sandbox));
    let uid: string | undefined;
    const problems: string[] = [];
    if (res.answer !== undefined) {
      try {
        uid = fromBinary(CreateMicroVMResponseSchema, res.answer).microvm?.spec?.uid;
      } catch (e) {
        problems.push(`the answer does not decode: ${describe(e)}`);
      }
    }
    out = { code: res.code, message: res.details, problems, ...(uid !== undefined ? { uid } : {}) };
  } else out = await sendCreate(env, c);
  commonChecks(env, out, before, v);
  const transport = c.kind === 'create' ? c.transport : c.kind === 'wire' ? 'grpc' : 'http';
  if (out.code !== 0) {
    const tooLarge = c.kind === 'body' && Buffer.byteLength(c.body) > 4 * 1024 * 1024;
    if (tooLarge) {
      if (out.httpStatus !== 413) v.push(`a ${Buffer.byteLength(c.body)}-byte body answered ${out.httpStatus ?? out.code}, not 413`);
    } else if (c.kind === 'wire' && out.code === INTERNAL && out.message === 'Error deserializing request') {
      // Bytes that are not a CreateMicroVMRequest: grpc-js's answer (grpc-go's is Internal too).
    } else if (out.code !== INVALID_ARGUMENT)
      v.push(`refused with code ${out.code} (HTTP ${out.httpStatus ?? '-'}), not InvalidArgument: ${out.message.slice(0, 300)}`);
    else {
      const wrong = messageProblem(out.message, transport);
      if (wrong !== undefined) v.push(`${wrong}: ${out.message.slice(0, 300)}`);
    }
    if (c.kind !== 'body' && out.message.includes(ECHO_RUN)) v.push(`the message repeats more than 128 characters of a value: ${out.message.slice(0, 400)}`);
    return { violations: v, accepted: false, message: out.message };
  }
  // Accepted: exactly one new VM, the one answered, and everything in it passes the policy.
  const created = env.svc.repo.list({}).filter((vm) => !uidsBefore.has(vm.id.uid));
  if (created.length !== 1 || created[0]?.id.uid !== out.uid) v.push(`an accepted create stored ${created.length} VMs (answered uid ${String(out.uid)})`);
  for (const vm of created) {
    v.push(...policyViolations(vm, env.sandbox));
    v.push(...(await layOut(vm, env.sandbox)));
    if (!env.seedUids.includes(vm.id.uid)) env.svc.repo.remove(vm.id.uid);
  }
  const leftover = treeOutsideState(env.sandbox);
  for (const p of leftover) if (!baseline.has(p)) v.push(`${p} appeared outside the state directory`);
  const vmRoot = join(env.sandbox.stateDir, 'vm');
  if (existsSync(vmRoot) && readdirSync(vmRoot).length > 0) v.push(`the VM directories were not all removed: ${readdirSync(vmRoot).join(', ')}`);
  return { violations: v, accepted: true, message: '' };
}

async function sendLookup(env: FuzzEnv, c: LookupCase): Promise<Outcome> {
  if (c.transport === 'grpc') {
    if (c.op === 'stream') return grpcStream(env, c.value, c.name);
    const bytes =
      c.op === 'get'
        ? toBinary(GetMicroVMRequestSchema, create(GetMicroVMRequestSchema, { uid: c.value }))
        : c.op === 'delete'
          ? toBinary(DeleteMicroVMRequestSchema, create(DeleteMicroVMRequestSchema, { uid: c.value }))
          : toBinary(ListMicroVMsRequestSchema, create(ListMicroVMsRequestSchema, { namespace: c.value, ...(c.name !== undefined ? { name: c.name } : {}) }));
    const res = await unary(env, c.op === 'get' ? 'GetMicroVM' : c.op === 'delete' ? 'DeleteMicroVM' : 'ListMicroVMs', bytes);
    let listed: Array<{ namespace: string; name: string }> | undefined;
    if (res.answer !== undefined && c.op === 'list')
      listed = fromBinary(ListMicroVMsResponseSchema, res.answer).microvm.map((m) => ({ namespace: m.spec?.namespace ?? '', name: m.spec?.id ?? '' }));
    if (res.answer !== undefined && c.op === 'get') fromBinary(GetMicroVMResponseSchema, res.answer);
    return { code: res.code, message: res.details, problems: [], ...(listed !== undefined ? { listed } : {}) };
  }
  const segment = pathSegment(c.value, c.rawSegment);
  const query = (params: Record<string, string | undefined>): string => {
    const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
    return entries.length === 0 ? '' : `?${entries.map(([k, x]) => `${k}=${pathSegment(x, false)}`).join('&')}`;
  };
  let res: { status: number; text: string };
  if (c.op === 'get') res = await httpCall(env, 'GET', `/v1alpha1/microvm/${segment}${query({ name: c.name })}`);
  else if (c.op === 'delete') res = await httpCall(env, 'DELETE', `/v1alpha1/microvm/${segment}`);
  else if (c.op === 'list') res = await httpCall(env, 'GET', `/v1alpha1/microvms${query({ namespace: c.value, name: c.name })}`);
  else
    res = await httpCall(
      env,
      'POST',
      `${SERVICE}/ListMicroVMsStream`,
      bodyText({ namespace: c.value, ...(c.name !== undefined ? { name: c.name } : {}) }),
      true,
    );
  // Node's HTTP parser answers a request line over its 16 KiB header limit itself, before the
  // gateway sees it (as Go's net/http does past its own limit).
  if (res.status === 431 && res.text === '') return { code: 8, httpStatus: 431, message: '', problems: [] };
  const out = httpOutcome(res);
  let listed: Array<{ namespace: string; name: string }> | undefined;
  if (res.status === 200 && c.op === 'list') {
    const body = JSON.parse(res.text) as { microvm?: Array<{ spec?: { namespace?: string; id?: string } }> };
    listed = (body.microvm ?? []).map((m) => ({ namespace: m.spec?.namespace ?? '', name: m.spec?.id ?? '' }));
  }
  return { ...out, ...(listed !== undefined ? { listed } : {}) };
}

function grpcStream(env: FuzzEnv, namespace: string, name: string | undefined): Promise<Outcome> {
  return new Promise((resolvePromise) => {
    const bytes = Buffer.from(toBinary(ListMicroVMsRequestSchema, create(ListMicroVMsRequestSchema, { namespace, ...(name !== undefined ? { name } : {}) })));
    const stream = client(env).makeServerStreamRequest<Buffer, Buffer>(
      `${SERVICE}/ListMicroVMsStream`,
      (b) => b,
      (b) => b,
      bytes,
      new grpc.Metadata(),
      {
        deadline: Date.now() + CALL_TIMEOUT_MS,
      },
    );
    const listed: Array<{ namespace: string; name: string }> = [];
    let settled = false;
    const settle = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolvePromise(o);
    };
    stream.on('data', (b: Buffer) => {
      const m = fromBinary(ListMessageSchema, b).microvm;
      listed.push({ namespace: m?.spec?.namespace ?? '', name: m?.spec?.id ?? '' });
    });
    stream.on('error', (e: grpc.ServiceError) =>
      settle(e.code === grpc.status.CANCELLED ? { code: 0, message: '', problems: [], listed } : { code: e.code, message: e.details, problems: [] }),
    );
    // The snapshot of a handful of seeds arrives at once; the stream then stays open for changes.
    const timer = setTimeout(() => {
      stream.cancel();
      settle({ code: 0, message: '', problems: [], listed });
    }, 30);
  });
}

// ---------------------------------------------------------------------------------------------
// Properties: the arbitraries the test and the bench run, with their share of the cases

export interface FuzzProperty {
  readonly name: string;
  /** Share of the runs (FUZZ_RUNS is the largest property's). */
  readonly share: number;
  arbitrary(env: FuzzEnv): fc.Arbitrary<FuzzCase>;
  /** Unmutated bases must be accepted (a sanity check of the starting point). */
  readonly mustAccept?: boolean;
}

export const PROPERTIES: readonly FuzzProperty[] = [
  {
    name: 'valid CAPMVM-shaped bases are accepted (gRPC and HTTP)',
    share: 0.05,
    mustAccept: true,
    arbitrary: () => fc.oneof(baseCase('grpc'), baseCase('http')),
  },
  { name: 'gRPC CreateMicroVM with mutated specs', share: 1, arbitrary: (env) => createCase(env.sandbox, 'grpc') },
  { name: 'HTTP POST /v1alpha1/microvm with mutated JSON bodies', share: 1, arbitrary: (env) => createCase(env.sandbox, 'http') },
  { name: 'HTTP POST /v1alpha1/microvm with raw bodies', share: 0.15, arbitrary: () => bodyCase },
  {
    name: 'gRPC CreateMicroVM with hand-made wire bytes',
    share: 0.3,
    arbitrary: () => fc.oneof({ weight: 20, arbitrary: wireCase }, { weight: 1, arbitrary: wireCase.map((c) => ({ ...c, noSpec: true })) }),
  },
  {
    name: 'Get, Delete, List and ListMicroVMsStream with hostile uids and queries',
    share: 0.3,
    arbitrary: () => fc.oneof(lookupCase('grpc'), lookupCase('http')),
  },
];

/** Runs a property's case; for `mustAccept` a refusal is a violation too. */
export async function runPropertyCase(env: FuzzEnv, property: FuzzProperty, c: FuzzCase): Promise<string[]> {
  const result = await runCase(env, c);
  if (property.mustAccept === true && !result.accepted) return [...result.violations, `a valid base was refused: ${result.message.slice(0, 300)}`];
  return result.violations;
}

/** A case as a failure report shows it: short enough to read, enough to see what was sent. */
export function showCase(c: FuzzCase): string {
  return JSON.stringify(c, (_, x: unknown) =>
    typeof x === 'bigint'
      ? `${x}n`
      : typeof x === 'string' && x.length > 200
        ? `${x.slice(0, 60)}...(${x.length} chars)`
        : x instanceof Uint8Array
          ? [...x]
          : x,
  );
}
