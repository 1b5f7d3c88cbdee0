// Daemon configuration (COMPAT §6): defaults < config file < FLINTLOCKD_* env < flags.
// Keys are the original's flag names. Strict: an unknown key is an error naming it and where it
// came from; keys of the Go original that mean nothing here (containerd-*) are accepted with a
// warning so an existing config file still works.
import { readFileSync } from 'node:fs';
import { tlsPathProblems } from './paths.js';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { DEFAULT_METADATA_KB, DEFAULT_WATCH_BUFFER, MAX_METADATA_KB } from '../core/limits.js';
import { parseSize } from './size.js';
import { isVmmIdRange, parseVmmIdRange, validCgroupParent, type VmmIdRange } from '../core/sandbox.js';

/**
 * VMM uids and gids (ADR 0009): 0x70000000 onwards, 65536 of them. In systemd's "unused" span
 * (above its container ranges, below its foreign-uid range), so no system or container user
 * collides with them.
 */
export const DEFAULT_VMM_UID_RANGE = '1879048192:65536';

export const DEFAULT_CONFIG_FILE = '/etc/opt/flintlockd/config.yaml';

const PROVIDERS = ['firecracker', 'cloudhypervisor', 'qemu', 'auto'] as const;
export type DefaultProvider = (typeof PROVIDERS)[number];

/** Accepted for compatibility with the Go original's config files; they have no effect here. */
export const IGNORED_KEYS: Readonly<Record<string, string>> = {
  'containerd-socket': 'images are pulled without containerd',
  'containerd-kernel-ss': 'images are pulled without containerd',
  'containerd-ns': 'images are pulled without containerd',
  'firecracker-detach': 'VMMs always run detached',
  'cloudhypervisor-detach': 'VMMs always run detached',
  'disable-reconcile': 'the reconciler always runs',
  'disable-api': 'the API always runs',
};

// YAML 1.1's booleans too (`insecure: yes`): the yaml library reads YAML 1.2, where `yes` is text,
// and config files written for YAML 1.1 tools are common.
const TRUE = new Set(['true', 'yes', 'y', 'on', '1']);
const FALSE = new Set(['false', 'no', 'n', 'off', '0', '']);
const bool = z.union([z.boolean(), z.string(), z.number()]).transform((v, ctx) => {
  if (typeof v === 'boolean') return v;
  const word = String(v).trim().toLowerCase();
  if (TRUE.has(word)) return true;
  if (FALSE.has(word)) return false;
  ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a boolean: use true or false (yes/no, on/off and 1/0 are accepted too)` });
  return z.NEVER;
});
const int = (min: number, max: number): z.ZodType<number, number | string> =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a whole number from ${min} to ${max}` });
    return z.NEVER;
  });
// A bare number is refused: the original (viper) would read `10` as 10 ns, a user likely means 10 s.
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? undefined : parseDuration(v.trim());
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration with a unit, such as 30s, 10m or 1h` });
    return z.NEVER;
  }
  return ms;
});
/** "8GiB", "512M"; a bare number (YAML or text) is MiB. */
const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseSize(String(v));
  if (bytes === undefined || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a size such as 8GiB, 512MiB or 2048 (MiB)` });
    return z.NEVER;
  }
  return bytes;
});
const text = z.preprocess((v) => (typeof v === 'number' ? String(v) : v), z.string());
/** A YAML list, or a comma-separated string from env or flags. */
const list = z.preprocess(
  (v) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== '')
      : v,
  z.array(z.string()),
);
const credential = z.union([z.object({ username: z.string(), password: z.string() }).strict(), z.object({ token: z.string() }).strict()]);
/** A YAML mapping host -> credential, or the same as JSON text from env or flags. */
const registryAuth = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  },
  z.record(z.string(), credential),
);

/** One config key: its type, its default as an operator would write it, and what it means. */
interface KeySpec<T extends z.ZodType> {
  readonly type: T;
  readonly default: z.input<T>;
  readonly help: string;
}
const key = <T extends z.ZodType>(type: T, defaultValue: z.input<T>, help: string): KeySpec<T> => ({ type, default: defaultValue, help });

/**
 * Every key the daemon reads: the one table behind parsing, `run --help` and the example config
 * (packaging/config.example.yaml). Defaults are written as in a config file and parsed like one.
 */
export const CONFIG_KEY_SPECS = {
  'grpc-endpoint': key(text, 'localhost:9090', 'Address of the gRPC API: host:port, or unix:/path for a unix socket.'),
  'enable-http': key(bool, false, "Serve the HTTP/JSON gateway as well (HTTPS with the gRPC port's TLS, mTLS and token rules; plain HTTP only with insecure)."),
  'http-endpoint': key(text, 'localhost:8090', 'Address of the HTTP/JSON gateway (host:port), when enable-http is set.'),
  'parent-iface': key(
    text,
    '',
    'Host interface that macvtap guest NICs (type MACVTAP, the API default) are made on. This or bridge-name (or both) is required.',
  ),
  'bridge-name': key(
    text,
    '',
    "Bridge that tap guest NICs (type TAP) are attached to; a NIC's overrides.bridge_name wins. This or parent-iface (or both) is required.",
  ),
  'state-dir': key(text, '/var/lib/flintlock', 'Directory of the state: the database, VM directories and the image cache. Created when missing.'),
  'default-provider': key(
    z.enum(PROVIDERS),
    'auto',
    'VMM for VMs that name none: firecracker, cloudhypervisor, qemu, or auto (Firecracker if it and /dev/kvm are usable, else Cloud Hypervisor likewise, else QEMU).',
  ),
  'firecracker-bin': key(text, 'firecracker', 'Firecracker binary (a name on PATH or a path).'),
  'cloudhypervisor-bin': key(text, 'cloud-hypervisor-static', 'Cloud Hypervisor binary (a name on PATH or a path).'),
  'qemu-bin': key(text, 'qemu-system-x86_64', 'QEMU binary (a name on PATH or a path).'),
  'virtiofs-bin': key(text, '/usr/libexec/virtiofsd', 'virtiofsd binary, for virtiofs volumes.'),
  insecure: key(bool, false, 'Serve the API in plaintext (h2c). Otherwise tls-cert and tls-key are required. Only on a trusted network.'),
  'basic-auth-token': key(text, '', 'When set, every API call needs "authorization: Basic base64(token)" (or "Bearer token").'),
  'tls-cert': key(text, '', "The server certificate's PEM file (TLS 1.3)."),
  'tls-key': key(text, '', "The PEM file of the server certificate's private key."),
  'tls-client-ca': key(text, '', "The PEM file of the CA that signs the clients' certificates (needed with tls-client-validate)."),
  'tls-client-validate': key(bool, false, 'Require a client certificate signed by tls-client-ca (mTLS).'),
  'maximum-retry': key(int(0, 1000), 10, 'Failed reconciles of a VM before it is FAILED.'),
  'resync-period': key(duration, '10m', 'How often every VM is reconciled even when nothing changed.'),
  'delete-vm-timeout': key(duration, '10s', 'How long a VMM gets to stop gracefully before it is killed (alias deleteMicroVM-timeout).'),
  verbosity: key(int(0, 10), 0, 'Log detail: 0-1 info, 2-8 debug, 9 and up trace.'),
  'log-format': key(z.enum(['text', 'json']), 'text', 'Log lines as text, or as JSON (level names, ISO-8601 times).'),
  'log-output': key(text, 'stderr', 'Where logs go: stderr, stdout or a file path (appended to; reopened on SIGHUP, for logrotate).'),
  'debug-endpoint': key(text, '', 'When set (host:port), serves /metrics (Prometheus) and /healthz, unauthenticated.'),
  'insecure-registries': key(list, [], 'Registry hosts reached over plain HTTP (loopback always is); a list, or comma-separated.'),
  'registry-auth': key(registryAuth, {}, 'Registry credentials per host: {username, password} or {token} (JSON text in env and flags).'),
  'image-keep-time': key(duration, '24h', 'How long cached images no VM uses are kept.'),
  'image-max-unpacked-size': key(size, '8GiB', 'Most bytes one image may unpack to (all layers, decompressed); larger pulls fail. A bare number is MiB.'),
  'virtiofs-allowed-roots': key(list, [], 'Host directories under which virtiofs shares may be; empty: no virtiofs volumes.'),
  'reconcile-concurrency': key(int(1, 64), 4, 'VMs reconciled at once.'),
  'retry-backoff-base': key(duration, '5s', 'First wait before retrying a failed reconcile; doubles each time.'),
  'retry-backoff-max': key(duration, '5m', 'Longest wait between retries of a failed reconcile.'),
  'minimum-memory-mb': key(int(1, 1 << 20), 128, 'Smallest memory_in_mb a VM may ask for.'),
  'maximum-memory-mb': key(int(1, 1 << 20), 32768, 'Largest memory_in_mb a VM may ask for.'),
  'maximum-metadata-kb': key(int(1, MAX_METADATA_KB), DEFAULT_METADATA_KB, `Most KiB of metadata keys plus values per VM (at most ${MAX_METADATA_KB}).`),
  'vmm-uid-range': key(text, DEFAULT_VMM_UID_RANGE, "START:COUNT: each VM's VMM runs as uid = gid = START + i, one per VM; empty: as the daemon's user."),
  'vmm-cgroup-root': key(text, '/sys/fs/cgroup', 'Where the cgroup hierarchy is mounted (v2 or v1, detected).'),
  'vmm-cgroup-parent': key(text, 'flintlock', 'Each VMM runs in the cgroup <root>/<parent>/<vm uid>; empty: VMMs get no cgroup (no limits).'),
  'vmm-memory-overhead-mb': key(int(0, 1 << 20), 256, "MiB a VMM's cgroup may use beyond the VM's memory_in_mb."),
  'vmm-pids-max': key(int(16, 1 << 22), 1024, "Processes plus threads a VMM's cgroup may hold."),
  'firecracker-jailer-bin': key(text, '', "Firecracker's jailer binary; empty: not used (needs vmm-uid-range)."),
  'watch-buffer-events': key(
    int(1, 1 << 24),
    DEFAULT_WATCH_BUFFER.events,
    'Events that may wait for one WatchMicroVMs client before it is cut off (RESOURCE_EXHAUSTED; it may resume).',
  ),
  'watch-buffer-size': key(size, '8MiB', 'Encoded bytes that may wait for one WatchMicroVMs client before it is cut off.'),
  'network-config-dhcp6': key(
    bool,
    true,
    'Generated network-config asks for DHCPv6 (dhcp6: true) on DHCP NICs, as the original does. Set false for ifupdown guests on networks without a DHCPv6 server: they wait 5 minutes for it at boot (ADR 0012).',
  ),
};

type KeySpecs = typeof CONFIG_KEY_SPECS;
type Shape = { [K in keyof KeySpecs]: z.ZodPrefault<KeySpecs[K]['type']> };
// prefault: a default goes through its key's parsing, as if the operator had written it.
const shape = Object.fromEntries(
  Object.entries(CONFIG_KEY_SPECS).map(([name, spec]: [string, KeySpec<z.ZodType>]) => [name, z.prefault(spec.type, spec.default)]),
) as unknown as Shape;
const schema = z.object(shape).strict();

export type RawConfig = z.input<typeof schema>;
type Parsed = z.output<typeof schema>;

export interface Config {
  readonly grpcEndpoint: string;
  readonly enableHttp: boolean;
  readonly httpEndpoint: string;
  readonly parentIface: string;
  readonly bridgeName: string;
  readonly stateDir: string;
  readonly defaultProvider: DefaultProvider;
  readonly firecrackerBin: string;
  readonly cloudHypervisorBin: string;
  readonly qemuBin: string;
  readonly virtiofsBin: string;
  readonly insecure: boolean;
  readonly basicAuthToken: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly tlsClientCa: string;
  readonly tlsClientValidate: boolean;
  readonly maximumRetry: number;
  readonly resyncPeriodMs: number;
  readonly deleteVmTimeoutMs: number;
  readonly verbosity: number;
  readonly logFormat: 'text' | 'json';
  readonly logOutput: string;
  readonly debugEndpoint: string;
  readonly insecureRegistries: readonly string[];
  readonly registryAuth: Readonly<Record<string, { readonly username: string; readonly password: string } | { readonly token: string }>>;
  readonly imageKeepTimeMs: number;
  /** Bytes one image may unpack to (`image-max-unpacked-size`). */
  readonly imageMaxUnpackedBytes: number;
  readonly virtiofsAllowedRoots: readonly string[];
  readonly reconcileConcurrency: number;
  readonly retryBackoffBaseMs: number;
  readonly retryBackoffMaxMs: number;
  readonly minimumMemoryMb: number;
  readonly maximumMemoryMb: number;
  readonly maximumMetadataKb: number;
  /** Undefined: VMMs keep the daemon's uid (`vmm-uid-range` empty). */
  readonly vmmIdRange: VmmIdRange | undefined;
  readonly vmmCgroupRoot: string;
  /** Empty: VMMs get no cgroup. */
  readonly vmmCgroupParent: string;
  readonly vmmMemoryOverheadMb: number;
  readonly vmmPidsMax: number;
  /** Empty: Firecracker runs without its jailer. */
  readonly firecrackerJailerBin: string;
  /** Events that may wait for one watch client before it is cut off (`watch-buffer-events`). */
  readonly watchBufferEvents: number;
  /** Encoded bytes that may wait for one watch client before it is cut off (`watch-buffer-size`). */
  readonly watchBufferBytes: number;
  /** `network-config-dhcp6`: DHCP NICs in generated network-config ask for DHCPv6 too (ADR 0012). */
  readonly networkConfigDhcp6: boolean;
  /** Keys given that have no effect here, with why (for start-up warnings). */
  readonly ignored: ReadonlyArray<{ key: string; why: string }>;
}

/** Every key the daemon takes (for flags and env). */
export const CONFIG_KEYS: readonly string[] = [...Object.keys(schema.shape), ...Object.keys(IGNORED_KEYS)];
/** The original's spelling of delete-vm-timeout. */
const ALIASES: Readonly<Record<string, string>> = { 'deleteMicroVM-timeout': 'delete-vm-timeout' };

export class ConfigError extends Error {}

export interface ConfigSources {
  /** Path of the YAML file; undefined: the default path when it exists. */
  readonly file?: string;
  /** The file read when `file` is undefined and it exists; DEFAULT_CONFIG_FILE unless a test says otherwise. */
  readonly defaultFile?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Values given as flags, keyed by config key. */
  readonly flags: Readonly<Record<string, unknown>>;
}

function readFile(path: string, required: boolean): Record<string, unknown> {
  let content: string;
  try {
    content = readFileSync(path, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  const doc = parseDocument(content);
  if (doc.errors.length > 0) throw new ConfigError(`config file ${path} is not valid YAML: ${doc.errors[0]?.message ?? ''}`);
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${path} must be a YAML mapping of key: value`);
  return value as Record<string, unknown>;
}

const ENV_PREFIX = 'FLINTLOCKD_';

/**
 * `FLINTLOCKD_PARENT_IFACE`, and the original's `FLINTLOCKD_PARENT-IFACE`. Held to the file's
 * rules: a FLINTLOCKD_ variable that names no key is an error, not a setting silently lost.
 */
function fromEnv(env: ConfigSources['env']): Record<string, unknown> {
  const byVariable = new Map<string, string>();
  for (const key of [...CONFIG_KEYS, ...Object.keys(ALIASES)]) {
    const upper = key.toUpperCase();
    byVariable.set(`${ENV_PREFIX}${upper.replaceAll('-', '_')}`, key);
    byVariable.set(`${ENV_PREFIX}${upper}`, key);
  }
  const out: Record<string, unknown> = {};
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith(ENV_PREFIX) || value === undefined) continue;
    const key = byVariable.get(variable);
    if (key === undefined) {
      const guess = closest(variable.slice(ENV_PREFIX.length).toLowerCase().replaceAll('_', '-'), CONFIG_KEYS);
      throw new ConfigError(
        `unknown environment variable ${variable}: ${ENV_PREFIX}* variables set config keys (${ENV_PREFIX}STATE_DIR sets state-dir)${guess !== undefined ? `; did you mean ${envName(guess)}?` : ''}`,
      );
    }
    // The underscore spelling wins over the original's hyphen spelling when both are set.
    if (!(key in out) || variable === envName(key)) out[key] = value;
  }
  return out;
}

/** The environment variable of a config key. */
export const envName = (key: string): string => `${ENV_PREFIX}${key.toUpperCase().replaceAll('-', '_')}`;

/** The key nearest to `word` (a likely misspelling: at most a third of it differs), if any. */
function closest(word: string, keys: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const key of keys) {
    const distance = editDistance(word, key);
    if (distance <= Math.max(1, Math.floor(key.length / 3)) && (best === undefined || distance < best.distance)) best = { key, distance };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function normalizeKeys(values: Record<string, unknown>, origin: string, ignored: Array<{ key: string; why: string }>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(values)) {
    const key = ALIASES[rawKey] ?? rawKey;
    const why = IGNORED_KEYS[key];
    if (why !== undefined) {
      ignored.push({ key, why });
      continue;
    }
    if (!(key in schema.shape)) {
      const guess = closest(rawKey, CONFIG_KEYS);
      throw new ConfigError(`unknown config key "${rawKey}" in ${origin}${guess !== undefined ? `; did you mean "${guess}"?` : ''}`);
    }
    out[key] = value;
  }
  return out;
}

export function loadConfig(sources: ConfigSources): Config {
  const ignored: Array<{ key: string; why: string }> = [];
  const file = sources.file ?? sources.defaultFile ?? DEFAULT_CONFIG_FILE;
  const merged = {
    ...normalizeKeys(readFile(file, sources.file !== undefined), `config file ${file}`, ignored),
    ...normalizeKeys(fromEnv(sources.env), 'the environment', ignored),
    ...normalizeKeys(Object.fromEntries(Object.entries(sources.flags).filter(([, v]) => v !== undefined)), 'the flags', ignored),
  };
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid config value for "${String(issue?.path[0] ?? '')}": ${issue?.message ?? 'invalid'}`);
  }
  const config = toConfig(parsed.data, ignored);
  checkConfig(config);
  return config;
}

function toConfig(p: Parsed, ignored: Config['ignored']): Config {
  return {
    grpcEndpoint: p['grpc-endpoint'],
    enableHttp: p['enable-http'],
    httpEndpoint: p['http-endpoint'],
    parentIface: p['parent-iface'],
    bridgeName: p['bridge-name'],
    stateDir: p['state-dir'],
    defaultProvider: p['default-provider'],
    firecrackerBin: p['firecracker-bin'],
    cloudHypervisorBin: p['cloudhypervisor-bin'],
    qemuBin: p['qemu-bin'],
    virtiofsBin: p['virtiofs-bin'],
    insecure: p.insecure,
    basicAuthToken: p['basic-auth-token'],
    tlsCert: p['tls-cert'],
    tlsKey: p['tls-key'],
    tlsClientCa: p['tls-client-ca'],
    tlsClientValidate: p['tls-client-validate'],
    maximumRetry: p['maximum-retry'],
    resyncPeriodMs: p['resync-period'],
    deleteVmTimeoutMs: p['delete-vm-timeout'],
    verbosity: p.verbosity,
    logFormat: p['log-format'],
    logOutput: p['log-output'],
    debugEndpoint: p['debug-endpoint'],
    insecureRegistries: p['insecure-registries'],
    registryAuth: p['registry-auth'],
    imageKeepTimeMs: p['image-keep-time'],
    imageMaxUnpackedBytes: p['image-max-unpacked-size'],
    virtiofsAllowedRoots: p['virtiofs-allowed-roots'],
    reconcileConcurrency: p['reconcile-concurrency'],
    retryBackoffBaseMs: p['retry-backoff-base'],
    retryBackoffMaxMs: p['retry-backoff-max'],
    minimumMemoryMb: p['minimum-memory-mb'],
    maximumMemoryMb: p['maximum-memory-mb'],
    maximumMetadataKb: p['maximum-metadata-kb'],
    vmmIdRange: uidRange(p['vmm-uid-range']),
    vmmCgroupRoot: p['vmm-cgroup-root'],
    vmmCgroupParent: p['vmm-cgroup-parent'].trim(),
    vmmMemoryOverheadMb: p['vmm-memory-overhead-mb'],
    vmmPidsMax: p['vmm-pids-max'],
    firecrackerJailerBin: p['firecracker-jailer-bin'],
    watchBufferEvents: p['watch-buffer-events'],
    watchBufferBytes: p['watch-buffer-size'],
    networkConfigDhcp6: p['network-config-dhcp6'],
    ignored,
  };
}

function uidRange(text: string): VmmIdRange | undefined {
  const range = parseVmmIdRange(text);
  if (range !== undefined && !isVmmIdRange(range)) throw new ConfigError(`invalid config value for "vmm-uid-range": ${range.error}`);
  return range;
}

const TLS_SETUP =
  'set tls-cert and tls-key to the PEM files of the server certificate and its key (or set insecure: true to serve plaintext, on a trusted network only)';

/** Cross-key rules, with the original's messages where it has them (COMPAT §2.10, §3). */
function checkConfig(c: Config): void {
  if (c.parentIface === '' && c.bridgeName === '')
    throw new ConfigError(
      'you must supply at least one of parent interface, bridge name: set parent-iface (macvtap NICs on that host interface) or bridge-name (tap NICs on that bridge), or both, in the config file, as --parent-iface/--bridge-name or as FLINTLOCKD_PARENT_IFACE/FLINTLOCKD_BRIDGE_NAME',
    );
  if (c.insecure && (c.tlsCert !== '' || c.tlsKey !== ''))
    throw new ConfigError('cannot specify tls certificate details when running insecurely: unset tls-cert and tls-key, or unset insecure to serve TLS');
  if (!c.insecure) {
    if (c.tlsCert === '') throw new ConfigError(`certificate file path is required when running securely: ${TLS_SETUP}`);
    if (c.tlsKey === '') throw new ConfigError(`certificate key file path is required when running securely: ${TLS_SETUP}`);
    if (c.tlsClientValidate && c.tlsClientCa === '')
      throw new ConfigError(
        "tls-client-validate (mTLS) needs tls-client-ca: set tls-client-ca to the PEM file of the CA that signs the clients' certificates, or unset tls-client-validate",
      );
  }
  const problems = tlsPathProblems(c);
  if (problems.length > 0) throw new ConfigError(problems.join('; '));
  if (c.resyncPeriodMs <= 0) throw new ConfigError('invalid config value for "resync-period": must be greater than 0');
  if (c.minimumMemoryMb > c.maximumMemoryMb) throw new ConfigError('minimum-memory-mb must not be greater than maximum-memory-mb');
  if (c.vmmCgroupParent !== '' && !validCgroupParent(c.vmmCgroupParent))
    throw new ConfigError('invalid config value for "vmm-cgroup-parent": a relative cgroup path of plain names, such as flintlock');
  if (c.firecrackerJailerBin !== '' && c.vmmIdRange === undefined)
    throw new ConfigError('firecracker-jailer-bin needs vmm-uid-range (the jailer runs each VM as its own uid)');
  if (c.retryBackoffBaseMs <= 0 || c.retryBackoffMaxMs < c.retryBackoffBaseMs)
    throw new ConfigError('retry-backoff-base must be > 0 and not greater than retry-backoff-max');
}
