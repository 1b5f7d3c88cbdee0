// Daemon configuration (COMPAT §6): defaults < config file < FLINTLOCKD_* env < flags.
// Keys are the original's flag names. Strict: an unknown key is an error naming it and where it
// came from; keys of the Go original that mean nothing here (containerd-*) are accepted with a
// warning so an existing config file still works.
import { existsSync, readFileSync } from 'node:fs';
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

const bool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' || v === '' ? false : v), z.boolean());
const int = (min: number, max: number): z.ZodType<number> =>
  z.preprocess((v) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v), z.number().int().min(min).max(max));
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

const schema = z
  .object({
    'grpc-endpoint': text.default('localhost:9090'),
    'enable-http': bool.default(false),
    'http-endpoint': text.default('localhost:8090'),
    'parent-iface': text.default(''),
    'bridge-name': text.default(''),
    'state-dir': text.default('/var/lib/flintlock'),
    'default-provider': z.enum(PROVIDERS).default('auto'),
    'firecracker-bin': text.default('firecracker'),
    'cloudhypervisor-bin': text.default('cloud-hypervisor-static'),
    'qemu-bin': text.default('qemu-system-x86_64'),
    'virtiofs-bin': text.default('/usr/libexec/virtiofsd'),
    insecure: bool.default(false),
    'basic-auth-token': text.default(''),
    'tls-cert': text.default(''),
    'tls-key': text.default(''),
    'tls-client-ca': text.default(''),
    'tls-client-validate': bool.default(false),
    'maximum-retry': int(0, 1000).default(10),
    'resync-period': duration.default(600_000),
    'delete-vm-timeout': duration.default(10_000),
    verbosity: int(0, 10).default(0),
    'log-format': z.enum(['text', 'json']).default('text'),
    'log-output': text.default('stderr'),
    'debug-endpoint': text.default(''),
    // flintlock-ts additions
    'insecure-registries': list.default([]),
    'registry-auth': registryAuth.default({}),
    'image-keep-time': duration.default(86_400_000),
    'image-max-unpacked-size': size.default(8 * 1024 ** 3),
    'virtiofs-allowed-roots': list.default([]),
    'reconcile-concurrency': int(1, 64).default(4),
    'retry-backoff-base': duration.default(5_000),
    'retry-backoff-max': duration.default(300_000),
    'minimum-memory-mb': int(1, 1 << 20).default(128),
    'maximum-memory-mb': int(1, 1 << 20).default(32768),
    'maximum-metadata-kb': int(1, MAX_METADATA_KB).default(DEFAULT_METADATA_KB),
    'vmm-uid-range': text.default(DEFAULT_VMM_UID_RANGE),
    'vmm-cgroup-root': text.default('/sys/fs/cgroup'),
    'vmm-cgroup-parent': text.default('flintlock'),
    'vmm-memory-overhead-mb': int(0, 1 << 20).default(256),
    'vmm-pids-max': int(16, 1 << 22).default(1024),
    'firecracker-jailer-bin': text.default(''),
    'watch-buffer-events': int(1, 1 << 24).default(DEFAULT_WATCH_BUFFER.events),
    'watch-buffer-size': size.default(DEFAULT_WATCH_BUFFER.bytes),
  })
  .strict();

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

/** `FLINTLOCKD_PARENT_IFACE`, and the original's `FLINTLOCKD_PARENT-IFACE`. */
function fromEnv(env: ConfigSources['env']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of [...CONFIG_KEYS, ...Object.keys(ALIASES)]) {
    const upper = key.toUpperCase();
    const value = env[`FLINTLOCKD_${upper.replaceAll('-', '_')}`] ?? env[`FLINTLOCKD_${upper}`];
    if (value !== undefined) out[key] = value;
  }
  return out;
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
    if (!(key in schema.shape)) throw new ConfigError(`unknown config key "${rawKey}" in ${origin}`);
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
    ignored,
  };
}

function uidRange(text: string): VmmIdRange | undefined {
  const range = parseVmmIdRange(text);
  if (range !== undefined && !isVmmIdRange(range)) throw new ConfigError(`invalid config value for "vmm-uid-range": ${range.error}`);
  return range;
}

/** Cross-key rules, with the original's messages where it has them (COMPAT §2.10, §3). */
function checkConfig(c: Config): void {
  if (c.parentIface === '' && c.bridgeName === '') throw new ConfigError('you must supply at least one of parent interface, bridge name');
  if (c.insecure && (c.tlsCert !== '' || c.tlsKey !== '')) throw new ConfigError('cannot specify tls certificate details when running insecurely');
  if (!c.insecure) {
    if (c.tlsCert === '') throw new ConfigError('certificate file path is required when running securely');
    if (c.tlsKey === '') throw new ConfigError('certificate key file path is required when running securely');
    if (c.tlsClientValidate && c.tlsClientCa === '') throw new ConfigError('client certificate key file path is required when running mTLS');
    for (const [subject, path] of [
      ['certificate file', c.tlsCert],
      ['key file', c.tlsKey],
      ['client CA file', c.tlsClientCa],
    ] as const) {
      if (path !== '' && !existsSync(path)) throw new ConfigError(`${subject} ${path} does not exist`);
    }
  }
  if (c.resyncPeriodMs <= 0) throw new ConfigError('invalid config value for "resync-period": must be greater than 0');
  if (c.minimumMemoryMb > c.maximumMemoryMb) throw new ConfigError('minimum-memory-mb must not be greater than maximum-memory-mb');
  if (c.vmmCgroupParent !== '' && !validCgroupParent(c.vmmCgroupParent))
    throw new ConfigError('invalid config value for "vmm-cgroup-parent": a relative cgroup path of plain names, such as flintlock');
  if (c.firecrackerJailerBin !== '' && c.vmmIdRange === undefined)
    throw new ConfigError('firecracker-jailer-bin needs vmm-uid-range (the jailer runs each VM as its own uid)');
  if (c.retryBackoffBaseMs <= 0 || c.retryBackoffMaxMs < c.retryBackoffBaseMs)
    throw new ConfigError('retry-backoff-base must be > 0 and not greater than retry-backoff-max');
}
