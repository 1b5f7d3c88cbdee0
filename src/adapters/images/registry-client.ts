// A small OCI distribution-spec client on Node's global fetch: manifests (OCI and Docker v2,
// images and indexes), blobs with Range, anonymous bearer tokens and configured credentials.
//
// Why hand-rolled: no maintained npm client does platform selection and streaming blobs, and the
// protocol surface we need is a few requests (see /work/shared/reference/ts-stack.md §6).
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

import { DOCKER_HUB, type ImageRef } from '../../core/image-ref.js';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest].join(', ');

/** Manifests are small; a huge one is a misbehaving registry, not an image (the spec suggests 4 MiB). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Docker Hub's API host: `docker.io` is only the name people write. */
const DOCKER_HUB_API = 'registry-1.docker.io';

/** Per-host credentials from the `registry-auth` configuration. */
export type RegistryCredential = { readonly username: string; readonly password: string } | { readonly token: string };

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: Platform;
  readonly urls?: readonly string[];
}

export interface ImageManifest {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

export interface ResolvedManifest {
  /** Digest of the platform manifest (computed from its bytes and checked against the registry's). */
  readonly digest: string;
  readonly mediaType: string;
  readonly manifest: ImageManifest;
  /** The manifest's bytes exactly as served (what the digest is over). */
  readonly raw: Buffer;
  /** The image index the manifest was picked from, when the reference named an index. */
  readonly index?: { readonly digest: string; readonly raw: Buffer };
}

export interface BlobResponse {
  /** 200 (whole blob) or 206 (the requested range). */
  readonly status: number;
  /** First byte offset the body starts at (from Content-Range on a 206, 0 otherwise). */
  readonly start: number;
  readonly body: Readable;
}

export interface RegistryClientOptions {
  /** Hosts (`host` or `host:port`) reached over plain HTTP. Loopback hosts always are. */
  readonly insecureRegistries?: readonly string[];
  /** Keyed by registry host as written in references (`docker.io`, `ghcr.io`, `127.0.0.1:5000`). */
  readonly credentials?: Readonly<Record<string, RegistryCredential>>;
  /** The platform picked from an image index (default linux and the host's architecture). */
  readonly platform?: Platform;
  /** How long to wait for response headers (default 30 s); bodies are the caller's to time. */
  readonly requestTimeoutMs?: number;
}

/**
 * A failed registry exchange. `status` is the HTTP status when there was a response; `unavailable`
 * marks failures where a cached answer is a reasonable fallback (no connection, 5xx, 429).
 */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly unavailable: boolean,
  ) {
    super(message);
  }
}

/** A blob or manifest whose bytes do not hash to the digest that names them. */
export class DigestMismatchError extends Error {
  override readonly name = 'DigestMismatchError';
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`digest mismatch for ${what}: expected ${expected}, got ${actual}`);
  }
}

/** Node's `process.arch` in OCI platform terms. */
export function hostArchitecture(arch: string = process.arch): string {
  switch (arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    default:
      // arm64, arm, s390x, riscv64, ppc64 (little-endian on Linux: ppc64le) keep their names.
      return arch === 'ppc64' ? 'ppc64le' : arch;
  }
}

export function defaultPlatform(): Platform {
  return { os: 'linux', architecture: hostArchitecture() };
}

const SUPPORTED_DIGEST = /^(sha256|sha512):([a-f0-9]+)$/;

/** Hash algorithm and hex of a digest we can verify, or an error naming it. */
export function splitDigest(digest: string): { algorithm: 'sha256' | 'sha512'; hex: string } {
  const m = SUPPORTED_DIGEST.exec(digest);
  const algorithm = m?.[1];
  const hex = m?.[2];
  if ((algorithm !== 'sha256' && algorithm !== 'sha512') || hex === undefined || hex.length !== (algorithm === 'sha256' ? 64 : 128)) {
    throw new Error(`unsupported or malformed digest "${digest}" (sha256 and sha512 are supported)`);
  }
  return { algorithm, hex };
}

export function digestOf(bytes: Buffer, algorithm: 'sha256' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}

export function isLoopbackHost(host: string): boolean {
  const name = hostname(host).toLowerCase();
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 4) return name.startsWith('127.');
  if (isIP(name) === 6) return name === '::1' || name === '0:0:0:0:0:0:0:1';
  return false;
}

/** Strips a scheme and path from a configured host, so `https://ghcr.io/` and `ghcr.io` are one key. */
function normaliseHostKey(key: string): string {
  const host = key
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
  return host === 'index.docker.io' || host === DOCKER_HUB_API ? DOCKER_HUB : host;
}

/** The base URL of a registry's API: HTTPS unless the host is loopback or listed as insecure. */
export function registryBaseUrl(registry: string, insecureRegistries: readonly string[] = []): string {
  const apiHost = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  const insecure = insecureRegistries.map(normaliseHostKey);
  const key = registry.toLowerCase();
  const plain = isLoopbackHost(registry) || insecure.includes(key) || insecure.includes(hostname(key));
  return `${plain ? 'http' : 'https'}://${apiHost}`;
}

/** `key="value"` pairs of a `WWW-Authenticate` challenge (values may hold commas when quoted). */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space >= 0 ? header.slice(0, space) : header).toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (const m of header.slice(space + 1).matchAll(re)) {
    const key = m[1];
    if (key !== undefined) params[key.toLowerCase()] = m[2] ?? m[3] ?? '';
  }
  return { scheme, params };
}

/** The registry's own words: `errors[].message` of the distribution-spec error body. */
async function registryMessage(res: Response): Promise<string> {
  let text: string;
  try {
    text = await res.text();
  } catch {
    return res.statusText || 'request failed';
  }
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[]; details?: string };
    const messages = (body.errors ?? []).map((e) => e.message ?? e.code).filter((m): m is string => typeof m === 'string' && m !== '');
    if (messages.length > 0) return messages.join('; ');
    if (typeof body.details === 'string' && body.details !== '') return body.details;
  } catch {
    // Not JSON: a proxy's HTML page or plain text.
  }
  const plain = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (plain !== '' && plain.length <= 200) return plain;
  return res.statusText || 'request failed';
}

async function statusError(res: Response): Promise<RegistryError> {
  const message = await registryMessage(res);
  return new RegistryError(`${message} (${res.status})`, res.status, res.status >= 500 || res.status === 429);
}

function connectionError(url: string, e: unknown): RegistryError {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return new RegistryError(`no answer from ${new URL(url).host} (timed out)`, undefined, true);
  const cause = err.cause?.code ?? err.cause?.message ?? err.message;
  return new RegistryError(`cannot reach ${new URL(url).host}: ${cause}`, undefined, true);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseDescriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v) || typeof v.digest !== 'string' || typeof v.size !== 'number' || typeof v.mediaType !== 'string') {
    throw new Error(`${what} is not a valid descriptor (needs mediaType, digest and size)`);
  }
  splitDigest(v.digest);
  if (!Number.isSafeInteger(v.size) || v.size < 0) throw new Error(`${what} has an invalid size ${String(v.size)}`);
  const platform = v.platform;
  return {
    mediaType: v.mediaType,
    digest: v.digest,
    size: v.size,
    ...(isObject(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string'
      ? {
          platform: {
            os: platform.os,
            architecture: platform.architecture,
            ...(typeof platform.variant === 'string' ? { variant: platform.variant } : {}),
          },
        }
      : {}),
    ...(Array.isArray(v.urls) ? { urls: v.urls.filter((u): u is string => typeof u === 'string') } : {}),
  };
}

function kindOf(mediaType: string, body: Record<string, unknown>): 'index' | 'manifest' | 'schema1' | 'unknown' {
  if (mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList) return 'index';
  if (mediaType === MEDIA_TYPES.ociManifest || mediaType === MEDIA_TYPES.dockerManifest) return 'manifest';
  if (mediaType === MEDIA_TYPES.dockerSchema1 || mediaType === MEDIA_TYPES.dockerSchema1Signed || body.schemaVersion === 1) return 'schema1';
  // OCI allows omitting mediaType; registries then often send application/json.
  if (Array.isArray(body.manifests)) return 'index';
  if (Array.isArray(body.layers)) return 'manifest';
  return 'unknown';
}

function platformName(p: Platform | undefined): string {
  if (p === undefined) return 'unknown';
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}

/** The index entry for a platform: exact variant first, then any variant of the architecture. */
export function pickPlatform(manifests: readonly Descriptor[], want: Platform): Descriptor {
  const candidates = manifests.filter((m) => m.platform?.os === want.os && m.platform.architecture === want.architecture);
  const exact = candidates.find((m) => want.variant === undefined || m.platform?.variant === want.variant);
  // arm64 images are usually tagged v8 or untagged; prefer those when no variant was asked for.
  const preferred = want.variant === undefined ? (candidates.find((m) => m.platform?.variant === undefined || m.platform.variant === 'v8') ?? exact) : exact;
  const found = preferred ?? candidates[0];
  if (found === undefined) {
    const available = manifests
      .map((m) => platformName(m.platform))
      .filter((p) => p !== 'unknown/unknown')
      .join(', ');
    throw new Error(`the image index has no manifest for ${platformName(want)} (it has: ${available || 'none'})`);
  }
  return found;
}

interface CachedToken {
  readonly header: string;
  readonly expiresAt: number;
}

export class RegistryClient {
  private readonly insecure: readonly string[];
  private readonly credentials = new Map<string, RegistryCredential>();
  private readonly platform: Platform;
  private readonly timeoutMs: number;
  /** Authorization header per (host, scope); Basic per host once a registry asked for it. */
  private readonly tokens = new Map<string, CachedToken>();

  constructor(options: RegistryClientOptions = {}) {
    this.insecure = options.insecureRegistries ?? [];
    for (const [host, cred] of Object.entries(options.credentials ?? {})) this.credentials.set(normaliseHostKey(host), cred);
    this.platform = options.platform ?? defaultPlatform();
    this.timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /**
   * Fetches the manifest a reference names, following an index to this host's platform. When the
   * reference has a digest, the bytes must hash to it (an index digest is allowed: the platform
   * manifest is then checked against the index's descriptor).
   */
  async resolve(ref: ImageRef, signal?: AbortSignal): Promise<ResolvedManifest> {
    const first = await this.manifest(ref, ref.digest ?? ref.tag ?? 'latest', ref.digest, signal);
    if (first.kind === 'manifest') return { digest: first.digest, mediaType: first.mediaType, manifest: parseManifest(first.body), raw: first.raw };
    if (first.kind !== 'index') throw new Error(`unsupported manifest type ${first.mediaType || '(none)'}`);

    let index = first;
    // An index may point at another index (rare: nested multi-platform sets); follow a few levels.
    for (let depth = 0; depth < 3; depth++) {
      const entries = index.body.manifests;
      if (!Array.isArray(entries)) throw new Error('the image index has no manifests list');
      const descriptors = entries.map((e, i) => parseDescriptor(e, `index entry ${i}`));
      const pick = pickPlatform(descriptors, this.platform);
      const next = await this.manifest(ref, pick.digest, pick.digest, signal);
      if (next.kind === 'manifest') {
        return {
          digest: next.digest,
          mediaType: next.mediaType,
          manifest: parseManifest(next.body),
          raw: next.raw,
          index: { digest: first.digest, raw: first.raw },
        };
      }
      if (next.kind !== 'index') throw new Error(`unsupported manifest type ${next.mediaType || '(none)'} for ${platformName(pick.platform)}`);
      index = next;
    }
    throw new Error('image indexes nested too deeply');
  }

  /** Streams a blob from `start` (a Range request when > 0; the server may still answer 200). */
  async blob(ref: ImageRef, digest: string, start: number, signal?: AbortSignal): Promise<BlobResponse> {
    const headers: Record<string, string> = {};
    if (start > 0) headers.range = `bytes=${start}-`;
    const res = await this.request(ref, `/v2/${ref.repository}/blobs/${digest}`, headers, signal);
    if (res.status !== 200 && res.status !== 206) throw await statusError(res);
    if (res.body === null) throw new RegistryError(`empty response for blob ${digest}`, res.status, true);
    let at = 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      at = m?.[1] !== undefined ? Number(m[1]) : start;
    }
    return { status: res.status, start: at, body: Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) };
  }

  private async manifest(
    ref: ImageRef,
    reference: string,
    expectedDigest: string | undefined,
    signal?: AbortSignal,
  ): Promise<{ kind: ReturnType<typeof kindOf>; mediaType: string; digest: string; raw: Buffer; body: Record<string, unknown> }> {
    // Manifests are small: bound the whole exchange, body included.
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await this.request(
      ref,
      `/v2/${ref.repository}/manifests/${reference}`,
      { accept: MANIFEST_ACCEPT },
      signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout,
    );
    if (res.status !== 200) throw await statusError(res);
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_MANIFEST_BYTES) throw new Error(`manifest ${reference} is ${length} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`);
    let raw: Buffer;
    try {
      raw = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      throw connectionError(res.url, e);
    }
    if (raw.length > MAX_MANIFEST_BYTES) throw new Error(`manifest ${reference} is more than ${MAX_MANIFEST_BYTES} bytes`);

    const announced = res.headers.get('docker-content-digest') ?? undefined;
    const algorithm = expectedDigest !== undefined ? splitDigest(expectedDigest).algorithm : announced?.startsWith('sha512:') ? 'sha512' : 'sha256';
    const digest = digestOf(raw, algorithm);
    if (expectedDigest !== undefined && digest !== expectedDigest) throw new DigestMismatchError(`manifest ${reference}`, expectedDigest, digest);
    // Only comparable when the registry hashed with the same algorithm.
    if (announced !== undefined && announced.split(':')[0] === algorithm && announced !== digest) {
      throw new DigestMismatchError(`manifest ${reference} (Docker-Content-Digest)`, announced, digest);
    }

    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new Error(`manifest ${reference} is not JSON`);
    }
    if (!isObject(body)) throw new Error(`manifest ${reference} is not a JSON object`);
    const headerType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    const mediaType = typeof body.mediaType === 'string' ? body.mediaType : headerType;
    const kind = kindOf(mediaType, body);
    if (kind === 'schema1') throw new Error('Docker schema 1 manifests are not supported (push the image again with a current client)');
    return { kind, mediaType: mediaType !== '' ? mediaType : kind === 'index' ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest, digest, raw, body };
  }

  private credentialFor(registry: string): RegistryCredential | undefined {
    return this.credentials.get(normaliseHostKey(registry));
  }

  /** One request with auth: the cached header first; on 401 answer the challenge and retry once. */
  private async request(ref: ImageRef, path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const url = `${registryBaseUrl(ref.registry, this.insecure)}${path}`;
    const scope = `repository:${ref.repository}:pull`;
    const cred = this.credentialFor(ref.registry);
    let auth = cred !== undefined && 'token' in cred ? `Bearer ${cred.token}` : this.cachedAuth(ref.registry, scope);

    let res = await this.send(url, { ...headers, ...(auth !== undefined ? { authorization: auth } : {}) }, signal);
    if (res.status !== 401 || (cred !== undefined && 'token' in cred)) return res;

    const challenge = res.headers.get('www-authenticate');
    if (challenge === null) return res;
    await res.body?.cancel();
    auth = await this.answer(ref.registry, scope, parseChallenge(challenge));
    res = await this.send(url, { ...headers, authorization: auth }, signal);
    return res;
  }

  private cachedAuth(registry: string, scope: string): string | undefined {
    const basic = this.tokens.get(`${registry}|basic`);
    if (basic !== undefined) return basic.header;
    const cached = this.tokens.get(`${registry}|${scope}`);
    if (cached !== undefined && cached.expiresAt > Date.now()) return cached.header;
    return undefined;
  }

  /** The Authorization header answering a challenge; throws when we have nothing to offer. */
  private async answer(registry: string, scope: string, challenge: { scheme: string; params: Record<string, string> }): Promise<string> {
    const cred = this.credentialFor(registry);
    const basic = cred !== undefined && 'username' in cred ? `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}` : undefined;
    if (challenge.scheme === 'basic') {
      if (basic === undefined) throw new RegistryError(`the registry wants a username and password and none is configured for ${registry} (401)`, 401, false);
      this.tokens.set(`${registry}|basic`, { header: basic, expiresAt: Number.POSITIVE_INFINITY });
      return basic;
    }
    if (challenge.scheme !== 'bearer') throw new RegistryError(`unsupported authentication scheme "${challenge.scheme}" (401)`, 401, false);
    const realm = challenge.params.realm;
    if (realm === undefined || realm === '') throw new RegistryError('the registry sent a bearer challenge without a realm (401)', 401, false);

    const tokenUrl = new URL(realm);
    if (challenge.params.service !== undefined) tokenUrl.searchParams.set('service', challenge.params.service);
    const wanted = challenge.params.scope ?? scope;
    for (const s of wanted.split(' ')) if (s !== '') tokenUrl.searchParams.append('scope', s);

    const res = await this.send(tokenUrl.toString(), basic !== undefined ? { authorization: basic } : {}, AbortSignal.timeout(this.timeoutMs));
    if (res.status !== 200) {
      const err = await statusError(res);
      throw new RegistryError(`getting a token from ${tokenUrl.host}: ${err.message}`, err.status, err.unavailable);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = (await res.json()) as typeof body;
    } catch (e) {
      throw new RegistryError(`the token service at ${tokenUrl.host} sent an unreadable answer: ${(e as Error).message}`, res.status, true);
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    if (token === undefined || token === '') throw new RegistryError(`the token service at ${tokenUrl.host} returned no token`, res.status, false);
    // Spec default lifetime is 60 s; renew a little early so a long pull doesn't use a dead token.
    const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    const header = `Bearer ${token}`;
    this.tokens.set(`${registry}|${scope}`, { header, expiresAt: Date.now() + Math.max(lifetime - 10, 5) * 1000 });
    return header;
  }

  private async send(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    // Time out the wait for headers only: a large blob may legitimately stream for minutes.
    const headerTimeout = new AbortController();
    const timer = setTimeout(() => headerTimeout.abort(new DOMException('timed out', 'TimeoutError')), this.timeoutMs);
    try {
      return await fetch(url, {
        headers: { 'user-agent': 'flintlock-ts', ...headers },
        signal: signal !== undefined ? AbortSignal.any([signal, headerTimeout.signal]) : headerTimeout.signal,
      });
    } catch (e) {
      // The caller's own abort (not a timeout) is the caller's error, passed through unchanged.
      if (signal?.aborted === true && (signal.reason as Error | undefined)?.name !== 'TimeoutError') throw signal.reason;
      throw connectionError(url, e);
    } finally {
      clearTimeout(timer);
    }
  }
}

function parseManifest(body: Record<string, unknown>): ImageManifest {
  if (body.schemaVersion !== 2) throw new Error(`unsupported manifest schemaVersion ${String(body.schemaVersion)}`);
  if (!Array.isArray(body.layers)) throw new Error('the manifest has no layers list');
  return {
    schemaVersion: 2,
    ...(typeof body.mediaType === 'string' ? { mediaType: body.mediaType } : {}),
    config: parseDescriptor(body.config, 'the manifest config'),
    layers: body.layers.map((l, i) => parseDescriptor(l, `layer ${i}`)),
  };
}
