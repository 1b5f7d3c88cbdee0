// An in-process, read-only OCI registry on node:http (127.0.0.1, random port) serving images the
// tests build in memory, plus the misbehaviours the client must survive: bearer-token and Basic
// auth, wrong bytes under a digest, unknown repositories, slow blobs, a connection cut half-way,
// and a server that ignores Range.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Header } from 'tar';

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** A file's content, or a special entry. Keys are paths inside the layer, in archive order. */
export type LayerEntry =
  | string
  | Buffer
  | { readonly dir: true; readonly mode?: number; readonly uid?: number; readonly gid?: number }
  | { readonly symlink: string }
  | { readonly link: string }
  | { readonly device: 'char' | 'block'; readonly major: number; readonly minor: number; readonly mode?: number }
  | { readonly fifo: true; readonly mode?: number }
  | { readonly content: string | Buffer; readonly mode?: number; readonly uid?: number; readonly gid?: number };

export interface LayerOptions {
  /** Default gzip. */
  readonly compression?: 'gzip' | 'none';
}

const MTIME = new Date('2024-01-02T03:04:05Z');

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function block(header: Header): Buffer {
  if (header.encode()) throw new Error(`test layer entry ${header.path} needs a pax header; keep test paths short`);
  return header.block as Buffer;
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

/** An uncompressed tar of the entries (written header by header, so the order is exactly the given one). */
export function buildTar(files: Readonly<Record<string, LayerEntry>>): Buffer {
  const parts: Buffer[] = [];
  for (const [path, entry] of Object.entries(files)) {
    const base = { path, mtime: MTIME, uid: 0, gid: 0, uname: 'root', gname: 'root' };
    if (typeof entry === 'string' || Buffer.isBuffer(entry)) {
      const data = Buffer.from(entry);
      parts.push(block(new Header({ ...base, type: 'File', mode: 0o644, size: data.length })), pad(data));
    } else if ('dir' in entry) {
      parts.push(block(new Header({ ...base, type: 'Directory', mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0, size: 0 })));
    } else if ('symlink' in entry) {
      parts.push(block(new Header({ ...base, type: 'SymbolicLink', mode: 0o777, linkpath: entry.symlink, size: 0 })));
    } else if ('link' in entry) {
      parts.push(block(new Header({ ...base, type: 'Link', mode: 0o644, linkpath: entry.link, size: 0 })));
    } else if ('device' in entry) {
      const type = entry.device === 'char' ? 'CharacterDevice' : 'BlockDevice';
      parts.push(block(new Header({ ...base, type, mode: entry.mode ?? 0o660, devmaj: entry.major, devmin: entry.minor, size: 0 })));
    } else if ('fifo' in entry) {
      parts.push(block(new Header({ ...base, type: 'FIFO', mode: entry.mode ?? 0o644, size: 0 })));
    } else {
      const data = Buffer.from(entry.content);
      parts.push(
        block(new Header({ ...base, type: 'File', mode: entry.mode ?? 0o644, uid: entry.uid ?? 0, gid: entry.gid ?? 0, size: data.length })),
        pad(data),
      );
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A layer blob: a gzip (default) or plain tar of the entries. */
export function buildLayer(files: Readonly<Record<string, LayerEntry>>, options: LayerOptions = {}): Buffer {
  const tar = buildTar(files);
  return options.compression === 'none' ? tar : gzipSync(tar);
}

export interface LayerBlob {
  readonly data: Buffer;
  readonly mediaType: string;
  /** Uncompressed digest for the config; computed when absent (gzip or plain tar). */
  readonly diffId?: string;
}

export interface BuiltImage {
  readonly kind: 'image';
  readonly mediaType: string;
  readonly manifest: Record<string, unknown>;
  readonly bytes: Buffer;
  readonly digest: string;
  readonly configDigest: string;
  readonly layerDigests: readonly string[];
  readonly blobs: ReadonlyMap<string, Buffer>;
}

export interface BuiltIndex {
  readonly kind: 'index';
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly digest: string;
  readonly images: readonly BuiltImage[];
  readonly blobs: ReadonlyMap<string, Buffer>;
}

export interface ImageOptions {
  readonly architecture?: string;
  readonly os?: string;
  /** Docker v2 media types instead of OCI. */
  readonly docker?: boolean;
  /** Leave rootfs.diff_ids out of the config. */
  readonly noDiffIds?: boolean;
}

/** Manifest, config and blobs for the layers (bottom first). */
export function buildImage(layers: readonly (Buffer | LayerBlob)[], options: ImageOptions = {}): BuiltImage {
  const docker = options.docker === true;
  const blobs = new Map<string, Buffer>();
  const descs = layers.map((l) => {
    const layer: LayerBlob = Buffer.isBuffer(l) ? { data: l, mediaType: docker ? MT.dockerLayer : MT.ociLayerGzip } : l;
    const digest = sha256(layer.data);
    blobs.set(digest, layer.data);
    let diffId = layer.diffId;
    if (diffId === undefined) {
      const gz = layer.data[0] === 0x1f && layer.data[1] === 0x8b;
      diffId = sha256(gz ? gunzipSync(layer.data) : layer.data);
    }
    return { desc: { mediaType: layer.mediaType, digest, size: layer.data.length }, diffId };
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: options.architecture ?? 'amd64',
      os: options.os ?? 'linux',
      config: {},
      rootfs: { type: 'layers', ...(options.noDiffIds === true ? {} : { diff_ids: descs.map((d) => d.diffId) }) },
    }),
  );
  const configDigest = sha256(config);
  blobs.set(configDigest, config);
  const mediaType = docker ? MT.dockerManifest : MT.ociManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? MT.dockerConfig : MT.ociConfig, digest: configDigest, size: config.length },
    layers: descs.map((d) => d.desc),
  };
  const bytes = Buffer.from(JSON.stringify(manifest, null, 2));
  return { kind: 'image', mediaType, manifest, bytes, digest: sha256(bytes), configDigest, layerDigests: descs.map((d) => d.desc.digest), blobs };
}

/** A multi-platform index; `extra` entries (e.g. attestations) point at manifests not served. */
export function buildIndex(
  entries: readonly { readonly image: BuiltImage; readonly platform: { os: string; architecture: string; variant?: string } }[],
  options: { readonly docker?: boolean } = {},
): BuiltIndex {
  const mediaType = options.docker === true ? MT.dockerList : MT.ociIndex;
  const index = {
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({ mediaType: e.image.mediaType, digest: e.image.digest, size: e.image.bytes.length, platform: e.platform })),
  };
  const bytes = Buffer.from(JSON.stringify(index, null, 2));
  const blobs = new Map<string, Buffer>();
  for (const e of entries) for (const [d, b] of e.image.blobs) blobs.set(d, b);
  return { kind: 'index', mediaType, bytes, digest: sha256(bytes), images: entries.map((e) => e.image), blobs };
}

export interface RegistryOptions {
  /** `bearer`: token realm at /token; `basic`: Basic on every request. Default none. */
  readonly auth?: 'none' | 'bearer' | 'basic';
  /** Accounts (username → password): required at the token realm (bearer) or on requests (basic). */
  readonly users?: Readonly<Record<string, string>>;
  /** Bearer tokens accepted without the realm (pre-issued). */
  readonly staticTokens?: readonly string[];
  /** Answer every blob request with 200 and the whole blob. */
  readonly ignoreRange?: boolean;
}

export interface BlobBehaviour {
  /** Serve these bytes-flipped content under the digest. */
  corrupt?: boolean;
  /** Send the body in this many chunks with a pause between them. */
  slow?: { readonly chunks: number; readonly delayMs: number };
  /** Drop the connection after half the body, on the next request only. */
  cutOnce?: boolean;
  /** Send half the body and then nothing (connection kept open), on the next request only. */
  stallOnce?: boolean;
}

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly range?: string;
  readonly authorization?: string;
  status?: number;
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}

export class TestRegistry {
  readonly requests: RequestRecord[] = [];
  readonly tokenRequests: { scope: string | null; service: string | null; authorization?: string }[] = [];
  private readonly repos = new Map<string, { manifests: Map<string, { bytes: Buffer; mediaType: string; digest: string }>; blobs: Map<string, Buffer> }>();
  private readonly behaviours = new Map<string, BlobBehaviour>();
  private readonly issued = new Set<string>();
  private tokenCounter = 0;

  private constructor(
    private readonly server: Server,
    readonly host: string,
    private readonly options: RegistryOptions,
  ) {}

  static async start(options: RegistryOptions = {}): Promise<TestRegistry> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const registry = new TestRegistry(server, `127.0.0.1:${port}`, options);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      registry.handle(req, res).catch((e: unknown) => {
        res.destroy(e instanceof Error ? e : new Error(String(e)));
      });
    });
    return registry;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Serves the image (or index and its images) as `repo:tag` and by digest. */
  push(repo: string, tag: string, content: BuiltImage | BuiltIndex): void {
    let r = this.repos.get(repo);
    if (r === undefined) {
      r = { manifests: new Map(), blobs: new Map() };
      this.repos.set(repo, r);
    }
    const entry = { bytes: content.bytes, mediaType: content.mediaType, digest: content.digest };
    r.manifests.set(tag, entry);
    r.manifests.set(content.digest, entry);
    if (content.kind === 'index')
      for (const img of content.images) r.manifests.set(img.digest, { bytes: img.bytes, mediaType: img.mediaType, digest: img.digest });
    for (const [d, b] of content.blobs) r.blobs.set(d, b);
  }

  setBlobBehaviour(digest: string, behaviour: BlobBehaviour): void {
    this.behaviours.set(digest, behaviour);
  }

  /** GET requests for a blob, in order. */
  blobGets(digest: string): RequestRecord[] {
    return this.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`));
  }

  manifestGets(): RequestRecord[] {
    return this.requests.filter((r) => r.path.includes('/manifests/'));
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization ?? '';
    const mode = this.options.auth ?? 'none';
    if (auth.startsWith('Bearer ')) {
      const token = auth.slice('Bearer '.length);
      if (this.issued.has(token) || (this.options.staticTokens ?? []).includes(token)) return true;
    }
    if (mode === 'none') return true;
    if (mode === 'basic') return this.basicOk(auth);
    return false;
  }

  private basicOk(auth: string): boolean {
    if (!auth.startsWith('Basic ')) return false;
    const [user, ...rest] = Buffer.from(auth.slice('Basic '.length), 'base64').toString('utf8').split(':');
    const users = this.options.users ?? {};
    return user !== undefined && Object.hasOwn(users, user) && users[user] === rest.join(':');
  }

  private challenge(res: ServerResponse, repo: string | undefined): void {
    const scope = repo !== undefined ? `,scope="repository:${repo}:pull"` : '';
    res.setHeader(
      'www-authenticate',
      this.options.auth === 'basic' ? 'Basic realm="test-registry"' : `Bearer realm="http://${this.host}/token",service="test-registry"${scope}`,
    );
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(errorBody('UNAUTHORIZED', 'authentication required'));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${this.host}`);
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      ...(req.headers.range !== undefined ? { range: req.headers.range } : {}),
      ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}),
    };
    this.requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));

    if (url.pathname === '/token') {
      const auth = req.headers.authorization;
      this.tokenRequests.push({
        scope: url.searchParams.get('scope'),
        service: url.searchParams.get('service'),
        ...(auth !== undefined ? { authorization: auth } : {}),
      });
      if (this.options.users !== undefined && !this.basicOk(auth ?? '')) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(errorBody('UNAUTHORIZED', 'incorrect username or password'));
        return;
      }
      const token = `tok-${++this.tokenCounter}`;
      this.issued.add(token);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }

    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      if (!this.authorized(req)) return this.challenge(res, undefined);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }

    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (m === null) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(errorBody('NOT_FOUND', 'not found'));
      return;
    }
    const [, repo = '', kind, reference = ''] = m;
    if (!this.authorized(req)) return this.challenge(res, repo);
    const r = this.repos.get(repo);
    if (r === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(errorBody('NAME_UNKNOWN', 'repository name not known to registry'));
      return;
    }
    if (kind === 'manifests') {
      const manifest = r.manifests.get(reference);
      if (manifest === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(errorBody('MANIFEST_UNKNOWN', 'manifest unknown'));
        return;
      }
      res.writeHead(200, { 'content-type': manifest.mediaType, 'docker-content-digest': manifest.digest, 'content-length': manifest.bytes.length });
      res.end(req.method === 'HEAD' ? undefined : manifest.bytes);
      return;
    }
    const blob = r.blobs.get(reference);
    if (blob === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(errorBody('BLOB_UNKNOWN', 'blob unknown to registry'));
      return;
    }
    await this.serveBlob(req, res, reference, blob);
  }

  private async serveBlob(req: IncomingMessage, res: ServerResponse, digest: string, original: Buffer): Promise<void> {
    const behaviour = this.behaviours.get(digest) ?? {};
    const data = behaviour.corrupt === true ? Buffer.from(original.map((b, i) => (i === original.length >> 1 ? b ^ 0xff : b))) : original;
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'docker-content-digest': digest };
    let status = 200;
    if (range !== null && this.options.ignoreRange !== true) {
      start = Number(range[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        res.end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    headers['content-length'] = body.length;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }

    if (behaviour.cutOnce === true) {
      behaviour.cutOnce = false;
      const half = body.subarray(0, body.length >> 1);
      await new Promise<void>((resolve) => res.write(half, () => resolve()));
      await delay(30);
      res.socket?.destroy();
      return;
    }
    if (behaviour.stallOnce === true) {
      behaviour.stallOnce = false;
      res.write(body.subarray(0, body.length >> 1));
      await new Promise<void>((resolve) => res.on('close', resolve));
      return;
    }
    if (behaviour.slow !== undefined) {
      const size = Math.ceil(body.length / behaviour.slow.chunks);
      for (let off = 0; off < body.length; off += size) {
        if (res.destroyed) return;
        res.write(body.subarray(off, off + size));
        await delay(behaviour.slow.delayMs);
      }
      res.end();
      return;
    }
    res.end(body);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface LogRecord {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  readonly obj: object;
  readonly msg: string;
}

/** A Logger (src/core/ports.ts) that keeps what it is told, for assertions. */
export class RecordingLogger {
  readonly records: LogRecord[];
  constructor(records: LogRecord[] = []) {
    this.records = records;
  }
  trace(obj: object, msg: string): void {
    this.records.push({ level: 'trace', obj, msg });
  }
  debug(obj: object, msg: string): void {
    this.records.push({ level: 'debug', obj, msg });
  }
  info(obj: object, msg: string): void {
    this.records.push({ level: 'info', obj, msg });
  }
  warn(obj: object, msg: string): void {
    this.records.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg: string): void {
    this.records.push({ level: 'error', obj, msg });
  }
  child(): RecordingLogger {
    return new RecordingLogger(this.records);
  }
  messages(level?: LogRecord['level']): string[] {
    return this.records.filter((r) => level === undefined || r.level === level).map((r) => r.msg);
  }
}
