// The API fuzzer's cases: a valid CAPMVM-shaped spec in the proto3 JSON form both transports
// carry, the hostile values and the mutations applied to it, and the case arbitraries (create
// over gRPC and HTTP, raw HTTP bodies, hand-made protobuf bytes, lookups). The environment, the
// transports and the invariants are in api-fuzz.ts.
import { tmpdir } from 'node:os';
import type { JsonObject, JsonValue } from '@bufbuild/protobuf';
import fc from 'fast-check';

/** A directory name the escape attempts aim at; it must never appear anywhere we can see. */
export const SENTINEL = 'fl-fuzz-escape-sentinel';
/** Huge values are made of this, so an unbounded echo of one is easy to spot in a message. */
export const FILL = 'Zq';
/** A registry address where nothing listens (as in grpc-client.ts): no case ever pulls anything. */
const REGISTRY = '127.0.0.1:47';

/** Where a case's paths point: laid out by startFuzzEnv in the test's temp directory. */
export interface Sandbox {
  /** The test's temp directory; the store lives in `stateDir` inside it. */
  readonly root: string;
  readonly stateDir: string;
  /** The only virtiofs-allowed root. */
  readonly sharesRoot: string;
  /** A directory a virtiofs volume may share. */
  readonly shareDir: string;
  /** Beside the shares root: what `../` from a share reaches. */
  readonly outsideDir: string;
  /** A symlink inside the shares root that points outside it. */
  readonly escapeLink: string;
}

// ---------------------------------------------------------------------------------------------
// The valid starting point

export interface BaseChoices {
  readonly name: string;
  readonly namespace: string;
  readonly provider: '' | 'qemu' | 'firecracker' | 'cloudhypervisor' | undefined;
  readonly initrd: boolean;
  readonly rootVolume: boolean;
  readonly dataVolume: boolean;
  readonly share: boolean;
  readonly interfaces: number;
  readonly staticAddress: boolean;
  readonly kernelFilename: '' | 'boot/vmlinux' | '/boot/vmlinux' | undefined;
  readonly guestAgent: boolean;
  readonly snakeCase: boolean;
}

export const baseChoicesDefault: BaseChoices = {
  name: 'node1',
  namespace: 'capmvm-ns',
  provider: '',
  initrd: false,
  rootVolume: true,
  dataVolume: true,
  share: false,
  interfaces: 1,
  staticAddress: true,
  kernelFilename: '',
  guestAgent: false,
  snakeCase: false,
};

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/**
 * A valid spec in proto3 JSON (camelCase), shaped like CAPMVM's: base64 cloud-init metadata,
 * labels, a kernel command line, a root volume, guest MACs. Provider choices keep it valid:
 * Firecracker gets taps (its metadata NIC takes eth0), virtiofs and the guest agent only where
 * the provider has them.
 */
export function baseJson(c: BaseChoices, sandbox: Sandbox): JsonObject {
  const provider = c.provider === undefined || c.provider === '' ? 'qemu' : c.provider;
  const tapOnly = provider === 'firecracker';
  const interfaces: JsonValue[] = Array.from({ length: c.interfaces }, (_, i) => ({
    deviceId: `eth${i + 1}`,
    // Enum names in the snake_case variant, numbers otherwise: protojson takes both.
    type: tapOnly || i % 2 === 1 ? (c.snakeCase ? 'TAP' : 1) : c.snakeCase ? 'MACVTAP' : 0,
    guestMac: `02:00:00:00:0${i % 10}:0${(i + 1) % 10}`,
    ...(c.staticAddress ? { address: { address: `10.0.${i}.5/24`, gateway: `10.0.${i}.1`, nameservers: ['1.1.1.1', 'fd00::53'] } } : {}),
    ...(tapOnly || i % 2 === 1 ? { overrides: { bridgeName: 'br0' } } : {}),
  }));
  const additionalVolumes: JsonValue[] = [
    ...(c.dataVolume
      ? [{ id: 'data', isReadOnly: true, mountPoint: '/mnt/data', partitionId: 'p1', sizeInMb: 512, source: { containerSource: `${REGISTRY}/org/data:1` } }]
      : []),
    ...(c.share && provider === 'cloudhypervisor'
      ? [{ id: 'share', isReadOnly: false, mountPoint: '/mnt/share', source: { virtiofsSource: sandbox.shareDir } }]
      : []),
  ];
  const spec: JsonObject = {
    id: c.name,
    namespace: c.namespace,
    labels: { 'cluster-name': 'c1', 'example.com/role': 'worker' },
    vcpu: 2,
    memoryInMb: 512,
    kernel: {
      image: `${REGISTRY}/liquidmetal-dev/flintlock-kernel:5.10.77`,
      ...(c.kernelFilename !== undefined ? { filename: c.kernelFilename } : {}),
      cmdline: { console: 'ttyS0', 'net.ifnames': '0' },
      addNetworkConfig: true,
    },
    ...(c.initrd || !c.rootVolume ? { initrd: { image: `${REGISTRY}/org/initrd:1`, filename: 'boot/initrd' } } : {}),
    ...(c.rootVolume
      ? { rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: `${REGISTRY}/liquidmetal-dev/capmvm-kubernetes:1.23.5` } } }
      : {}),
    additionalVolumes,
    interfaces,
    metadata: {
      'meta-data': b64('local_hostname: node1\nvm_host: host1\n'),
      'user-data': b64('#cloud-config\nhostname: node1\n'),
      'vendor-data': b64('#cloud-config\nmounts: []\n'),
    },
    ...(c.provider !== undefined ? { provider: c.provider } : {}),
    allowGuestAgent: c.guestAgent && provider !== 'qemu',
  };
  return c.snakeCase ? snakeKeys(spec) : spec;
}

const MAP_FIELDS = new Set(['labels', 'metadata', 'cmdline']);

/** protojson accepts proto names too (`memory_in_mb`); map keys stay as they are. */
function snakeKeys(value: JsonValue, inMap = false): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value as JsonObject)) {
    const key = inMap ? k : k.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);
    out[key] = isObject(v) ? snakeKeys(v, MAP_FIELDS.has(k)) : Array.isArray(v) ? v.map((x) => (isObject(x) ? snakeKeys(x) : x)) : v;
  }
  return out;
}

const baseChoices: fc.Arbitrary<BaseChoices> = fc.record({
  name: fc.constantFrom('node1', 'capmvm-worker-0', 'a', 'A.b_c-1', 'x'.repeat(63)),
  namespace: fc.constantFrom('capmvm-ns', 'default', '', 'ns.with.dots'),
  provider: fc.constantFrom('', 'qemu', 'firecracker', 'cloudhypervisor', undefined),
  initrd: fc.boolean(),
  rootVolume: fc.boolean(),
  dataVolume: fc.boolean(),
  share: fc.boolean(),
  interfaces: fc.integer({ min: 1, max: 3 }),
  staticAddress: fc.boolean(),
  kernelFilename: fc.constantFrom('', 'boot/vmlinux', '/boot/vmlinux', undefined),
  guestAgent: fc.boolean(),
  snakeCase: fc.boolean(),
});

// ---------------------------------------------------------------------------------------------
// Hostile values

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((n) => String.fromCharCode(n));

const FRAGMENTS = [
  '',
  '.',
  '..',
  '../',
  '/..',
  '/',
  '//',
  '\\',
  '..\\..\\',
  '~',
  '\u0000',
  'a\u0000b',
  '\n',
  '\r\n',
  '\t',
  ' ',
  '\u007f',
  '\u001b[31m',
  '\u00a0',
  '\u2028',
  '\u202e', // right-to-left override
  '\u200f',
  '\u200b',
  '\ufeff',
  'e\u0301', // combining acute
  '\u0301',
  '\u{1F600}', // astral
  '\u{10FFFF}',
  '\ud83d', // lone high surrogate (JSON can carry it, UTF-8 cannot)
  '\udc00',
  '\ufffd',
  'İ',
  'ß',
  'مرحبا',
  '%2e%2e%2f',
  '%00',
  '$(touch x)',
  '`id`',
  ';',
  '|',
  '&&',
  '"',
  "'",
  '*',
  ':',
  '@',
  '#',
  '=',
  ',',
  '-rf',
  '--help',
  'eth0',
  'lo',
  'CON',
  '__proto__',
  'constructor',
  '/proc/self/environ',
  '/etc/passwd',
  '/dev/kvm',
  'A'.repeat(63),
  'a'.repeat(64),
  'b'.repeat(256),
  `../../${SENTINEL}`,
  `../../../../../../../../${SENTINEL}`,
  `/${SENTINEL}`,
  `${tmpdir()}/${SENTINEL}`,
  `a/../../${SENTINEL}`,
  `${SENTINEL}/../..`,
];
const fragment = fc.constantFrom(...FRAGMENTS);

/** 1 kB to 1 MB. */
const hugeString = fc.constantFrom(1_000, 10_000, 100_000, 1_000_000).map((n) => FILL.repeat(n / 2));

/** Values that may well be valid, so accepted paths are exercised too. */
const plausible = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/),
  fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/),
  fc.stringMatching(/^\/[a-z0-9/._-]{0,20}$/),
  fc.constantFrom('eth1', 'root', 'data', 'br0', 'boot/vmlinux', '/mnt/x', 'node1', 'qemu', 'cloudhypervisor', 'firecracker'),
);

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fragment },
  {
    weight: 4,
    arbitrary: fc
      .array(fc.oneof(fragment, plausible, fc.string({ unit: 'grapheme', maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 6 }), loneSurrogate), {
        minLength: 1,
        maxLength: 5,
      })
      .map((parts) => parts.join('')),
  },
  { weight: 3, arbitrary: plausible },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 80 }) },
  { weight: 1, arbitrary: hugeString },
);

const hexByte = fc.integer({ min: 0, max: 255 }).map((n) => n.toString(16).padStart(2, '0'));
export const macLike: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.array(hexByte, { minLength: 6, maxLength: 6 }), fc.constantFrom(':', '-', '.', '', ' ')).map(([b, s]) => b.join(s)),
  fc.array(hexByte, { minLength: 0, maxLength: 9 }).map((b) => b.join(':')),
  fc.constantFrom(
    '00:00:00:00:00:00',
    'ff:ff:ff:ff:ff:ff',
    '01:00:5e:00:00:01',
    '02:00:00:00:00:01',
    '02-AA-bb-CC-dd-EE',
    '02:00-00:00:00:01',
    '02:00:00:00:00:01\n',
    '02:00:00:00:00:0g',
    '2:0:0:0:0:1',
    '0200.0000.0001',
    FILL.repeat(50_000),
  ),
  hostileString,
);

/** Names for host network devices: the kernel takes 1-15 bytes, not '.' or '..', no '/', ':' or whitespace. */
const ifNameLike: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'br0',
    '.',
    '..',
    'br:0',
    'br/0',
    'br 0',
    'br\u0000',
    'br\n',
    'br\u007f',
    'é'.repeat(8),
    '\u{1F600}'.repeat(4),
    'b'.repeat(15),
    'b'.repeat(16),
    '-',
    '--',
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 16 }),
  hostileString,
);

const prefixLen = fc.oneof(fc.integer({ min: 0, max: 128 }), fc.constantFrom(-1, 129, 999, '', 'x', '24 ', ' 24', '024', '1e1', '0x18'));
export const cidrLike: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), prefixLen).map(([ip, p]) => `${ip}/${String(p)}`),
  fc.oneof(fc.ipV4(), fc.ipV6()),
  fc.constantFrom('10.0.0.5/24', 'fd00::10/64', 'fe80::1%eth0/64', '::ffff:10.0.0.1/120', '10.0.0.256/24', '10.0.0.5/24/8', '/24', '10.0.0.5/', ' 10.0.0.5/24'),
  hostileString,
);
const ipLike: fc.Arbitrary<string> = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('dns.google', '8.8.8.8/32', '1.1.1.1 ', '0.0.0.0', '::', '::1', 'fe80::1%lo'),
  hostileString,
);

/** YAML that attacks the parser: alias bombs, unresolved aliases, deep nesting, custom tags, huge scalars. */
const HOSTILE_YAML = [
  'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n',
  '<<: [*x]\n',
  'a: *nowhere\n',
  `a: ${'['.repeat(5000)}${']'.repeat(5000)}\n`,
  `a: ${'{a: '.repeat(2000)}1${'}'.repeat(2000)}\n`,
  'a: !!js/function "function () {}"\n',
  'a: !!binary "////"\n',
  '__proto__: {instance_id: x}\n',
  'instance_id: [1, 2]\n',
  '- a\n- b\n',
  'just text',
  '"unterminated',
  `a: "${FILL.repeat(100_000)}"\n`,
  'a: 1\na: 2\n',
  '? [a, b]\n: c\n',
  '%YAML 9.9\n---\na: 1\n',
  '---\na: 1\n---\nb: 2\n',
  '\u0000',
  'a: \ud800\n',
];
const hostileYaml = fc.oneof(fc.constantFrom(...HOSTILE_YAML), hostileString);

/** Paths a virtiofs volume could try to share. */
function sharePath(sandbox: Sandbox): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(
      sandbox.shareDir,
      `${sandbox.shareDir}/`,
      sandbox.sharesRoot,
      `${sandbox.shareDir}/..`,
      `${sandbox.shareDir}/../..`,
      `${sandbox.shareDir}/../../outside`,
      `${sandbox.sharesRoot}/../${SENTINEL}`,
      sandbox.escapeLink,
      `${sandbox.escapeLink}/`,
      sandbox.outsideDir,
      `${sandbox.shareDir}\u0000/etc`,
      '/',
      '/etc',
      '/proc/self',
      'data',
      '../data',
      '',
    ),
    hostileString.map((s) => `${sandbox.shareDir}/${s}`),
    hostileString,
  );
}

/** JSON values of every wrong type, and sizes and depths a parser might choke on. */
function deepArray(depth: number): JsonValue {
  let v: JsonValue = 'x';
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}
function deepObject(depth: number, key: string): JsonValue {
  let v: JsonValue = 'x';
  for (let i = 0; i < depth; i++) v = { [key]: v };
  return v;
}
/** A number or text the JSON body carries verbatim (JSON.stringify can't write 1e999 or 01). */
const RAW = (text: string): string => `\u0001RAW:${text}\u0001`;
const RAW_PATTERN = /"\\u0001RAW:(.*?)\\u0001"/g;

export const hostileJson: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constantFrom<JsonValue>(null, true, false, 0, -1, 1.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53, 1e308, -0, '', [], {}, [''], ['a', 'b'], { a: 'b' }),
  fc.constantFrom(
    '1',
    '-1',
    '1e3',
    '0x10',
    ' 1',
    'NaN',
    'Infinity',
    'TAP',
    'tap',
    'MACVTAP',
    '2147483648',
    RAW('1e999'),
    RAW('-1e999'),
    RAW('2147483648'),
    RAW('9007199254740993'),
    RAW('1.0'),
    RAW('1e2'),
    RAW('-0'),
    RAW('0.0000001'),
  ),
  fc.constantFrom(100, 1000).map((n) => deepArray(n)),
  fc.tuple(fc.constantFrom(100, 1000), fc.constantFrom('a', 'kernel', 'id', 'interfaces')).map(([n, k]) => deepObject(n, k)),
  fc.double(),
  fc.integer(),
  hostileString,
  fc.array(hostileString, { maxLength: 4 }),
  fc.dictionary(hostileString, hostileString, { maxKeys: 4 }),
);

// ---------------------------------------------------------------------------------------------
// Mutations of the spec (applied in order to the JSON form)

export type Mutation =
  | { readonly t: 'string'; readonly slot: number; readonly how: 'replace' | 'append' | 'prepend'; readonly value: string }
  | { readonly t: 'key'; readonly map: 'labels' | 'metadata' | 'cmdline'; readonly slot: number; readonly key: string; readonly value: string }
  | { readonly t: 'many'; readonly what: 'interfaces' | 'additionalVolumes' | 'labels' | 'metadata' | 'cmdline' | 'nameservers'; readonly count: number }
  | { readonly t: 'number'; readonly field: 'vcpu' | 'memoryInMb' | 'sizeInMb' | 'type'; readonly value: number }
  | { readonly t: 'mac'; readonly value: string }
  | { readonly t: 'bridge'; readonly value: string }
  | { readonly t: 'address'; readonly part: 'address' | 'gateway' | 'nameserver'; readonly value: string }
  | { readonly t: 'drop'; readonly slot: number }
  | { readonly t: 'metaData'; readonly key: 'meta-data' | 'user-data' | 'vendor-data' | 'network-config'; readonly yaml: string }
  | { readonly t: 'share'; readonly path: string }
  // HTTP only: these need JSON's freedom (wrong types, unknown keys, raw number text).
  | { readonly t: 'json'; readonly slot: number; readonly value: JsonValue }
  | { readonly t: 'unknownKey'; readonly slot: number; readonly key: string; readonly value: JsonValue };

const slot = fc.nat({ max: 1000 });
const many = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constantFrom(64, 65, 100, 300, 1000));
const int32 = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.constantFrom(0, 1, -1, 64, 65, 127, 128, 32768, 32769, 1048576, 1048577, 2 ** 31 - 1, -(2 ** 31), 2, 99),
);

function mutationArb(sandbox: Sandbox, transport: 'grpc' | 'http'): fc.Arbitrary<Mutation> {
  const common: fc.Arbitrary<Mutation>[] = [
    fc.record({
      t: fc.constant('string' as const),
      slot,
      how: fc.constantFrom('replace' as const, 'append' as const, 'prepend' as const),
      value: hostileString,
    }),
    fc.record({
      t: fc.constant('key' as const),
      map: fc.constantFrom('labels' as const, 'metadata' as const, 'cmdline' as const),
      slot,
      key: hostileString,
      value: hostileString,
    }),
    fc.record({
      t: fc.constant('many' as const),
      what: fc.constantFrom(
        'interfaces' as const,
        'additionalVolumes' as const,
        'labels' as const,
        'metadata' as const,
        'cmdline' as const,
        'nameservers' as const,
      ),
      count: many,
    }),
    fc.record({
      t: fc.constant('number' as const),
      field: fc.constantFrom('vcpu' as const, 'memoryInMb' as const, 'sizeInMb' as const, 'type' as const),
      value: int32,
    }),
    fc.record({ t: fc.constant('mac' as const), value: macLike }),
    fc.record({ t: fc.constant('bridge' as const), value: ifNameLike }),
    fc.record({
      t: fc.constant('address' as const),
      part: fc.constantFrom('address' as const, 'gateway' as const, 'nameserver' as const),
      value: fc.oneof(cidrLike, ipLike),
    }),
    fc.record({ t: fc.constant('drop' as const), slot }),
    fc.record({
      t: fc.constant('metaData' as const),
      key: fc.constantFrom('meta-data' as const, 'user-data' as const, 'vendor-data' as const, 'network-config' as const),
      // user-data and vendor-data are parsed (at reconcile) only when they are #cloud-config.
      yaml: fc.tuple(fc.boolean(), hostileYaml).map(([header, y]) => (header ? `#cloud-config\n${y}` : y)),
    }),
    fc.record({ t: fc.constant('share' as const), path: sharePath(sandbox) }),
  ];
  if (transport === 'grpc') return fc.oneof(...common);
  return fc.oneof(
    ...common,
    fc.record({ t: fc.constant('json' as const), slot, value: hostileJson }),
    fc.record({
      t: fc.constant('unknownKey' as const),
      slot,
      key: fc.oneof(
        fc.constantFrom(
          '__proto__',
          'constructor',
          'prototype',
          'toString',
          'uid',
          'createdAt',
          'status',
          '@type',
          '[ext]',
          'memory_in_mb',
          'memoryInMb',
          'device_id',
        ),
        hostileString,
      ),
      value: hostileJson,
    }),
  );
}

type Path = ReadonlyArray<string | number>;

export function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every path in the tree, root first; `leaves` keeps only strings. */
function paths(json: JsonValue, leavesOnly: boolean): Path[] {
  const out: Path[] = [];
  const walk = (v: JsonValue, p: Path): void => {
    if (!leavesOnly || typeof v === 'string') out.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (isObject(v)) for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
  };
  walk(json, []);
  return out;
}

function getAt(root: JsonValue, p: Path): JsonValue | undefined {
  let v: JsonValue | undefined = root;
  for (const k of p) {
    if (Array.isArray(v) && typeof k === 'number') v = v[k];
    else if (isObject(v) && typeof k === 'string') v = Object.hasOwn(v, k) ? v[k] : undefined;
    else return undefined;
  }
  return v;
}

/** Sets an own property even for `__proto__` (plain assignment would change the prototype). */
export function setOwn(obj: JsonObject | JsonValue[], key: string | number, value: JsonValue): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function setAt(root: { v: JsonValue }, p: Path, value: JsonValue): void {
  if (p.length === 0) {
    root.v = value;
    return;
  }
  const parent = getAt(root.v, p.slice(0, -1));
  const last = p[p.length - 1];
  if ((Array.isArray(parent) || isObject(parent)) && last !== undefined) setOwn(parent, last, value);
}

function deleteAt(root: JsonValue, p: Path): void {
  const parent = getAt(root, p.slice(0, -1));
  const last = p[p.length - 1];
  if (Array.isArray(parent) && typeof last === 'number') parent.splice(last, 1);
  else if (isObject(parent) && typeof last === 'string') delete parent[last];
}

const field = (spec: JsonObject, camel: string): string => (Object.hasOwn(spec, camel) ? camel : camel.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`));

function objectAt(spec: JsonObject, ...camel: string[]): JsonObject | undefined {
  let v: JsonValue | undefined = spec;
  for (const c of camel) {
    if (!isObject(v)) return undefined;
    const k = field(v, c);
    if (!isObject(v[k])) setOwn(v, k, {});
    v = v[k];
  }
  return isObject(v) ? v : undefined;
}

function listAt(spec: JsonObject, camel: string): JsonValue[] {
  const k = field(spec, camel);
  const v = spec[k];
  if (Array.isArray(v)) return v;
  const list: JsonValue[] = [];
  setOwn(spec, k, list);
  return list;
}

const firstInterface = (spec: JsonObject): JsonObject | undefined => {
  const list = listAt(spec, 'interfaces');
  if (list.length === 0) list.push({ deviceId: 'eth1', type: 'MACVTAP' });
  const first = list[0];
  return isObject(first) ? first : undefined;
};

/**
 * Applies mutations to a copy of `base`; returns the JSON value to send (maybe not an object).
 * For gRPC, enum fields keep their values (a string there would not convert to a message).
 */
export function applyMutations(base: JsonObject, mutations: readonly Mutation[], transport: 'grpc' | 'http'): JsonValue {
  const root = { v: structuredClone(base) as JsonValue };
  for (const m of mutations) {
    const spec = root.v;
    if (!isObject(spec)) {
      // An earlier 'json' mutation replaced the whole body: only more of those apply.
      if (m.t === 'json') setAt(root, [], m.value);
      continue;
    }
    switch (m.t) {
      case 'string': {
        const leaves = paths(spec, true).filter((p) => transport === 'http' || p[p.length - 1] !== 'type');
        const p = leaves[m.slot % Math.max(1, leaves.length)];
        if (p === undefined) break;
        const old = getAt(spec, p);
        const oldText = typeof old === 'string' ? old : '';
        setAt(root, p, m.how === 'replace' ? m.value : m.how === 'append' ? oldText + m.value : m.value + oldText);
        break;
      }
      case 'key': {
        const map = m.map === 'cmdline' ? objectAt(spec, 'kernel', 'cmdline') : objectAt(spec, m.map);
        if (map === undefined) break;
        const keys = Object.keys(map);
        const old = keys[m.slot % Math.max(1, keys.length)];
        if (old !== undefined) delete map[old];
        setOwn(map, m.key, m.value);
        break;
      }
      case 'many': {
        if (m.what === 'interfaces' || m.what === 'additionalVolumes') {
          const list = listAt(spec, m.what);
          for (let i = 0; i < m.count; i++)
            list.push(
              m.what === 'interfaces'
                ? {
                    deviceId: `n${i}`,
                    type: 'TAP',
                    guestMac: `02:00:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
                  }
                : { id: `v${i}`, isReadOnly: true, source: { containerSource: `${REGISTRY}/org/v:${i}` } },
            );
        } else if (m.what === 'nameservers') {
          const iface = firstInterface(spec);
          const address = iface !== undefined ? objectAt(iface, 'address') : undefined;
          if (address === undefined) break;
          if (typeof address[field(address, 'address')] !== 'string') setOwn(address, 'address', '10.9.0.5/24');
          setOwn(
            address,
            field(address, 'nameservers'),
            Array.from({ length: m.count }, (_, i) => `10.0.${i >> 8}.${i & 255}`),
          );
        } else {
          const map = m.what === 'cmdline' ? objectAt(spec, 'kernel', 'cmdline') : objectAt(spec, m.what);
          if (map === undefined) break;
          for (let i = 0; i < m.count; i++) setOwn(map, `k${i}`, m.what === 'metadata' ? b64(`v${i}`) : `v${i}`);
        }
        break;
      }
      case 'number': {
        if (m.field === 'vcpu' || m.field === 'memoryInMb') setOwn(spec, field(spec, m.field), m.value);
        else if (m.field === 'type') {
          const iface = firstInterface(spec);
          if (iface !== undefined) setOwn(iface, 'type', m.value);
        } else {
          const volume = objectAt(spec, 'rootVolume');
          if (volume !== undefined) setOwn(volume, field(volume, 'sizeInMb'), m.value);
        }
        break;
      }
      case 'bridge': {
        const iface = firstInterface(spec);
        if (iface !== undefined) setOwn(iface, 'overrides', { [field(iface, 'bridgeName') === 'bridge_name' ? 'bridge_name' : 'bridgeName']: m.value });
        break;
      }
      case 'mac': {
        const iface = firstInterface(spec);
        if (iface !== undefined) setOwn(iface, field(iface, 'guestMac'), m.value);
        break;
      }
      case 'address': {
        const iface = firstInterface(spec);
        const address = iface !== undefined ? objectAt(iface, 'address') : undefined;
        if (address === undefined) break;
        if (m.part === 'nameserver') setOwn(address, 'nameservers', [m.value]);
        else setOwn(address, m.part, m.value);
        break;
      }
      case 'drop': {
        const all = paths(spec, false).filter((p) => p.length > 0);
        const p = all[m.slot % Math.max(1, all.length)];
        if (p !== undefined) deleteAt(spec, p);
        break;
      }
      case 'metaData': {
        const metadata = objectAt(spec, 'metadata');
        if (metadata !== undefined) setOwn(metadata, m.key, b64(m.yaml));
        break;
      }
      case 'share': {
        // Cloud Hypervisor is the provider with virtiofs: without it the path would never be looked at.
        setOwn(spec, 'provider', 'cloudhypervisor');
        const list = listAt(spec, 'additionalVolumes');
        list.push({ id: 'share', isReadOnly: false, mountPoint: '/mnt/share', source: { virtiofsSource: m.path } });
        for (const iface of listAt(spec, 'interfaces')) if (isObject(iface) && iface['type'] === undefined) setOwn(iface, 'type', 'MACVTAP');
        break;
      }
      case 'json': {
        const all = paths(spec, false);
        const p = all[m.slot % Math.max(1, all.length)];
        if (p !== undefined) setAt(root, p, m.value);
        break;
      }
      case 'unknownKey': {
        const objects = paths(spec, false).filter((p) => isObject(getAt(spec, p)));
        const p = objects[m.slot % Math.max(1, objects.length)];
        const target = p !== undefined ? getAt(spec, p) : undefined;
        if (isObject(target)) setOwn(target, m.key, m.value);
        break;
      }
    }
  }
  return root.v;
}

/** The JSON text of a body, with RAW(...) placeholders written verbatim. */
export function bodyText(value: JsonValue): string {
  return JSON.stringify(value).replace(RAW_PATTERN, (_, raw: string) => raw);
}

// ---------------------------------------------------------------------------------------------
// Cases

export interface CreateCase {
  readonly kind: 'create';
  readonly transport: 'grpc' | 'http';
  readonly base: BaseChoices;
  readonly mutations: readonly Mutation[];
}

/** gRPC only: a valid request's bytes with hand-made fields appended, bytes flipped or cut. */
export interface WireCase {
  readonly kind: 'wire';
  readonly base: BaseChoices;
  readonly fields: ReadonlyArray<{ readonly path: 'spec' | 'interface' | 'volume' | 'kernel'; readonly no: number; readonly value: WireValue }>;
  readonly flips: ReadonlyArray<{ readonly at: number; readonly byte: number }>;
  readonly truncate: number | undefined;
  readonly noSpec: boolean;
}
export type WireValue =
  { readonly w: 'varint'; readonly v: bigint } | { readonly w: 'bytes'; readonly v: Uint8Array } | { readonly w: 'fixed32' | 'fixed64'; readonly v: number };

/** HTTP only: a body that is not a spec at all, or is too large. */
export interface BodyCase {
  readonly kind: 'body';
  readonly body: string;
}

export interface LookupCase {
  readonly kind: 'lookup';
  readonly transport: 'grpc' | 'http';
  readonly op: 'get' | 'delete' | 'list' | 'stream';
  readonly value: string;
  readonly name: string | undefined;
  /** HTTP: send `value` as the raw path segment (percent signs and all) instead of encoding it. */
  readonly rawSegment: boolean;
}

export type FuzzCase = CreateCase | WireCase | BodyCase | LookupCase;

export function createCase(sandbox: Sandbox, transport: 'grpc' | 'http'): fc.Arbitrary<CreateCase> {
  return fc.record({
    kind: fc.constant('create' as const),
    transport: fc.constant(transport),
    base: baseChoices,
    mutations: fc.array(mutationArb(sandbox, transport), { minLength: 1, maxLength: 4 }),
  });
}

/** Unmutated bases: all must be accepted (else the fuzzer would start from refused specs). */
export function baseCase(transport: 'grpc' | 'http'): fc.Arbitrary<CreateCase> {
  return fc.record({ kind: fc.constant('create' as const), transport: fc.constant(transport), base: baseChoices, mutations: fc.constant([]) });
}

const wireValue: fc.Arbitrary<WireValue> = fc.oneof(
  fc.record({
    w: fc.constant('varint' as const),
    v: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(2n ** 31n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n)),
  }),
  fc.record({
    w: fc.constant('bytes' as const),
    v: fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom(new Uint8Array([0xff, 0xfe]), new Uint8Array([0xc0, 0x80]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array([0x2e, 0x2e, 0x2f, 0x00])),
    ),
  }),
  fc.record({ w: fc.constantFrom('fixed32' as const, 'fixed64' as const), v: fc.integer({ min: 0, max: 2 ** 31 - 1 }) }),
);

export const wireCase: fc.Arbitrary<WireCase> = fc.record({
  kind: fc.constant('wire' as const),
  base: baseChoices,
  fields: fc.array(
    fc.record({
      path: fc.constantFrom('spec' as const, 'interface' as const, 'volume' as const, 'kernel' as const),
      no: fc.oneof(fc.integer({ min: 1, max: 17 }), fc.constantFrom(100, 536870911)),
      value: wireValue,
    }),
    { maxLength: 4 },
  ),
  flips: fc.array(fc.record({ at: fc.nat({ max: 4000 }), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 }),
  truncate: fc.option(fc.nat({ max: 4000 }), { nil: undefined }),
  noSpec: fc.constant(false),
});

export const bodyCase: fc.Arbitrary<BodyCase> = fc.record({
  kind: fc.constant('body' as const),
  body: fc.oneof(
    fc.constantFrom(
      '',
      ' ',
      '{',
      '[',
      '{"id":',
      '\ufeff{}',
      'null',
      '[]',
      '""',
      '1',
      'true',
      '{}',
      '{"id":"a","id":"b"}',
      '{"memoryInMb":1,"memory_in_mb":2}',
      '{"__proto__":{"id":"x"}}',
      '{"kernel":{"image":"a"},"kernel":null}',
      '{"id":"\\ud800"}',
      '{"id":"\\u0000"}',
      `{"labels":${'{"a":'.repeat(1000)}"x"${'}'.repeat(1000)}}`,
      `{"interfaces":${'['.repeat(1000)}${']'.repeat(1000)}}`,
      `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      `{"id":"${'a'.repeat(4 * 1024 * 1024)}"}`,
    ),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.string({ unit: 'grapheme-ascii', maxLength: 200 }),
  ),
});

const lookupValue = fc.oneof(
  hostileString,
  fc.constantFrom(
    '%',
    '%zz',
    '%2F',
    '%2e%2e',
    '..',
    '.',
    '%00',
    '%ff',
    '%c0%ae',
    "' OR 1=1 --",
    '"; DROP TABLE vms; --',
    '*',
    '%',
    '_',
    'fuzz-seeds',
    'seed-0',
    'capmvm-ns',
  ),
  fc.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/),
);

export const lookupCase = (transport: 'grpc' | 'http'): fc.Arbitrary<LookupCase> =>
  fc.record({
    kind: fc.constant('lookup' as const),
    transport: fc.constant(transport),
    op: fc.constantFrom('get' as const, 'delete' as const, 'list' as const, 'stream' as const),
    value: lookupValue,
    name: fc.option(lookupValue, { nil: undefined }),
    rawSegment: fc.boolean(),
  });
