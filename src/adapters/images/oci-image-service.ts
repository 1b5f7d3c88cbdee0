// ImageService on our own registry client, content store, unpacker and ext4 builder. Layout under
// `<state-dir>/images/`:
//
//   refs.json                   ref → manifest digest (last resolution), image → last use, blobs
//   blobs/sha256/<hex>          verified manifests, configs and layers (content-store.ts)
//   tmp/<hex>.partial           downloads in progress, resumable, never trusted
//   rootfs/<manifest-hex>/      unpacked filesystems; `.tmp-*` siblings are unfinished (unpack.ts)
//   ext4/<hex>-<size|auto>.img  filesystem images for volumes; `*.partial` are unfinished (ext4.ts)
//   files/<hex>-<hash>-<name>   copies of single files (kernels, initrds) for VMMs; `*.partial` unfinished
//
// Who may read what (ADR 0009): VMMs run as uids of their own and open the ext4 images (read-only
// volumes, qcow2 backing files) and the file copies by path, so `images/`, `ext4/` and `files/`
// are searchable but not listable (0711) and those files world-readable (0644): reading one takes
// knowing its image's digest. Everything else stays the daemon's (0700, refs.json 0600): the blobs
// are private images' content, refs.json names every digest, and the unpacked filesystems hold
// the images' setuid binaries, which nobody on the host may reach.
//
// Every trusted name appears by rename after its content is complete, so after a crash the
// cache holds finished entries plus leftovers that are deleted (or, for blobs, re-verified).
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';

import { isImageRefError, parseImageRef, type ImageRef } from '../../core/image-ref.js';
import type { Clock, ImageProgress, ImageService, LocalImage, Logger, PullOptions } from '../../core/ports.js';
import { SharedWork } from './shared-work.js';
import { Timings } from './timings.js';
import { ContentStore, DiskFullError, fsyncFile, type ContentStoreOptions } from './content-store.js';
import { buildExt4 } from './ext4.js';
import {
  RegistryClient,
  RegistryError,
  splitDigest,
  type Descriptor,
  type Platform,
  type RegistryCredential,
  type ResolvedManifest,
} from './registry-client.js';
import { formatSize } from '../../config/size.js';
import { layerCompression, removeTempDirs, UnpackLimitError, unpackImage, type LayerSource } from './unpack.js';
import { isDiskFull } from '../../core/result.js';
import { regularFileInRoot } from '../fs/root-path.js';

/** Directories VMMs pass through to files they know the names of, without listing them. */
const SEARCH_ONLY = 0o711;
const PRIVATE_DIR = 0o700;
/** Files VMMs open by path (read-only: nobody but the daemon writes the cache). */
const VMM_READABLE = 0o644;

export interface OciImageServiceOptions {
  readonly stateDir: string;
  /** Registry hosts reached over plain HTTP (loopback hosts always are). */
  readonly insecureRegistries?: readonly string[];
  /** Per registry host: username/password (token realm or Basic) or a ready bearer token. */
  readonly credentials?: Readonly<Record<string, RegistryCredential>>;
  /** Garbage collection spares unreferenced images used within this long (default 24 h). */
  readonly keepMs?: number;
  readonly log: Logger;
  /** Platform picked from image indexes (default linux and the host's architecture). */
  readonly platform?: Platform;
  readonly clock?: Clock;
  /** Layers downloaded at once per image (default 3). */
  readonly concurrentDownloads?: number;
  /** Label of built ext4 filesystems (default `rootfs`). */
  readonly ext4Label?: string;
  /** Transport tuning (timeouts, retries); tests shorten them. */
  readonly store?: ContentStoreOptions;
  /**
   * A tag resolved this recently is trusted without asking the registry again (default 0: always
   * ask). One VM's kernel and initrd usually come from one image, and a burst of creates would
   * otherwise resolve the same tag once per step.
   */
  readonly tagTtlMs?: number;
  readonly requestTimeoutMs?: number;
  /**
   * Decompressed bytes one image may unpack to (config `image-max-unpacked-size`, default 8 GiB):
   * layers are verified by digest, but a small verified layer can still inflate without end.
   */
  readonly maxUnpackedBytes?: number;
  /** Told of bytes received and of every image fetched and unpacked (metrics). */
  readonly observer?: ImagePullObserver;
  /**
   * Unpack each layer while it downloads, following its partial file (default false). Off by
   * default: measured on a shared 2-core host it was slower, not faster (docs/benchmarks.md,
   * "images in one pass"): the unpack's synchronous file writes hold the event loop the
   * downloads need, so the streamed layer's download and its unpack wait on each other.
   */
  readonly streamLayers?: boolean;
  /** Told where each fetch-and-unpack's and ext4 build's milliseconds went, by phase (bench/image-pull.ts). */
  readonly onTimings?: (what: 'pull' | 'ext4', ref: string, phases: Readonly<Record<string, number>>) => void;
}

/** How a fetch-and-unpack of an image ended; `aborted`: nobody waited for it any more. */
export type ImagePullOutcome = 'pulled' | 'failed' | 'aborted';

export interface ImagePullObserver {
  received(bytes: number): void;
  /** An image was fetched and unpacked (or failed to be): not counted for images already cached. */
  pulled(outcome: ImagePullOutcome, seconds: number): void;
}

/** Bytes the cache holds in its flat areas (an unpacked filesystem is a tree, too costly to walk per scrape). */
export interface ImageCacheSize {
  readonly images: number;
  readonly blobsBytes: number;
  readonly ext4Bytes: number;
  readonly filesBytes: number;
}

interface RefEntry {
  readonly digest: string;
  readonly resolvedAt: number;
}

interface ImageEntry {
  lastUsed: number;
  /** Manifest, index, config and layer digests: what GC may delete along with the image. */
  blobs: string[];
}

interface IndexFile {
  version: 1;
  refs: Record<string, RefEntry>;
  images: Record<string, ImageEntry>;
}

type ProgressListener = (progress: ImageProgress) => void;

interface PullInFlight {
  readonly work: SharedWork<LocalImage>;
  readonly listeners: Set<ProgressListener>;
}

const DEFAULT_KEEP_MS = 24 * 60 * 60 * 1000;
const PROGRESS_LOG_INTERVAL_MS = 500;
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_UNPACKED_BYTES = 8 * 1024 ** 3;

function canonical(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

function shortDigest(digest: string): string {
  return digest.slice(0, digest.indexOf(':') + 13);
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

async function mtimeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mtimeMs;
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

/** Total size of the files that still exist (a file removed meanwhile counts as nothing). */
async function sumSizes(paths: readonly string[]): Promise<number> {
  const sizes = await Promise.all(
    paths.map((p) =>
      stat(p).then(
        (s) => s.size,
        () => 0,
      ),
    ),
  );
  return sizes.reduce((a, b) => a + b, 0);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    if (isMissing(e)) return false;
    throw e;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
}

/** Runs at most `limit` of the tasks at a time, in order of submission. */
function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

function diffIds(config: Buffer, layers: number): (string | undefined)[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config.toString('utf8'));
  } catch {
    throw new Error('the image config is not JSON');
  }
  const rootfs = (parsed as { rootfs?: { diff_ids?: unknown } } | null)?.rootfs;
  const ids = Array.isArray(rootfs?.diff_ids) ? rootfs.diff_ids : undefined;
  if (ids === undefined) return new Array<undefined>(layers).fill(undefined);
  if (ids.length !== layers) throw new Error(`the image config lists ${ids.length} diff_ids for ${layers} layers`);
  return ids.map((id) => (typeof id === 'string' ? id : undefined));
}

export class OciImageService implements ImageService {
  private readonly root: string;
  private readonly rootfsDir: string;
  private readonly ext4Dir: string;
  private readonly filesDir: string;
  private readonly indexPath: string;
  private readonly client: RegistryClient;
  private readonly store: ContentStore;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly keepMs: number;
  private readonly concurrentDownloads: number;
  private readonly ext4Label: string;
  private readonly maxUnpackedBytes: number;
  private readonly tagTtlMs: number;
  private readonly observer: ImagePullObserver | undefined;
  private readonly onTimings: OciImageServiceOptions['onTimings'];
  private readonly streamLayers: boolean;

  private readonly pulls = new Map<string, PullInFlight>();
  /** Fetch-and-unpack per manifest digest, with the blobs it uses (GC spares them). */
  private readonly builds = new Map<string, { work: SharedWork<void>; blobs: ReadonlySet<string>; watchers: Set<ProgressListener> }>();
  private readonly ext4Builds = new Map<string, Promise<string>>();
  private readonly fileCopies = new Map<string, Promise<string>>();
  private ready: Promise<IndexFile> | undefined;
  private saving: Promise<void> = Promise.resolve();

  constructor(options: OciImageServiceOptions) {
    this.root = join(options.stateDir, 'images');
    this.tagTtlMs = options.tagTtlMs ?? 0;
    this.rootfsDir = join(this.root, 'rootfs');
    this.ext4Dir = join(this.root, 'ext4');
    this.filesDir = join(this.root, 'files');
    this.indexPath = join(this.root, 'refs.json');
    this.client = new RegistryClient({
      ...(options.insecureRegistries !== undefined ? { insecureRegistries: options.insecureRegistries } : {}),
      ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
      ...(options.platform !== undefined ? { platform: options.platform } : {}),
      ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    });
    this.observer = options.observer;
    this.onTimings = options.onTimings;
    this.streamLayers = options.streamLayers ?? false;
    this.store = new ContentStore(this.root, {
      ...options.store,
      ...(options.observer !== undefined ? { onReceived: (bytes: number) => options.observer?.received(bytes) } : {}),
    });
    this.log = options.log;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.keepMs = options.keepMs ?? DEFAULT_KEEP_MS;
    this.concurrentDownloads = Math.max(1, options.concurrentDownloads ?? 3);
    this.ext4Label = options.ext4Label ?? 'rootfs';
    this.maxUnpackedBytes = options.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_BYTES;
  }

  pull(ref: string, options: PullOptions = {}): Promise<LocalImage> {
    const { onProgress, signal } = options;
    const parsed = parseImageRef(ref);
    if (isImageRefError(parsed)) return Promise.reject(new Error(`invalid image reference "${ref}": it ${parsed.error}`));
    const key = canonical(parsed);

    let inflight = this.pulls.get(key);
    if (inflight === undefined || inflight.work.abandoned) {
      const listeners = new Set<ProgressListener>();
      const work: SharedWork<LocalImage> = new SharedWork((shared) =>
        this.doPull(ref, parsed, key, listeners, shared).finally(() => {
          if (this.pulls.get(key)?.work === work) this.pulls.delete(key);
        }),
      );
      inflight = { work, listeners };
      this.pulls.set(key, inflight);
    }
    const { work, listeners } = inflight;
    if (onProgress !== undefined) listeners.add(onProgress);
    const promise = work.wait(signal);
    return promise.then(
      (image) => {
        if (onProgress !== undefined) listeners.delete(onProgress);
        return { ...image, ref };
      },
      (e: unknown) => {
        if (onProgress !== undefined) listeners.delete(onProgress);
        const message = e instanceof Error ? e.message : String(e);
        const wrapped = new Error(`pulling ${ref}: ${message}`, { cause: e });
        // Callers tell a full disk by its code (the reconciler says so; the API answers RESOURCE_EXHAUSTED).
        throw isDiskFull(e) ? Object.assign(wrapped, { code: 'ENOSPC' }) : wrapped;
      },
    );
  }

  async ext4(image: LocalImage, sizeMb?: number): Promise<string> {
    if (sizeMb !== undefined && sizeMb !== 0 && (!Number.isSafeInteger(sizeMb) || sizeMb < 0)) {
      throw new Error(`size_in_mb must be a positive whole number, not ${sizeMb}`);
    }
    const size = sizeMb !== undefined && sizeMb > 0 ? sizeMb : undefined;
    await this.init();
    const { hex } = splitDigest(image.digest);
    const target = join(this.ext4Dir, `${hex}-${size ?? 'auto'}.img`);
    let build = this.ext4Builds.get(target);
    if (build === undefined) {
      build = (async () => {
        if (!(await isDirectory(image.rootfs))) throw new Error(`image ${image.ref} (${image.digest}) is not in the cache; pull it first`);
        await mkdir(this.ext4Dir, { recursive: true });
        const started = this.clock.now();
        const existed = (await mtimeOf(target)) !== undefined;
        const timings = new Timings();
        const path = await buildExt4({ rootfs: image.rootfs, target, label: this.ext4Label, timings, ...(size !== undefined ? { sizeMb: size } : {}) });
        if (!existed) this.onTimings?.('ext4', image.ref, { ...timings.entries(), total: timings.elapsed() });
        // Every time, not only when built: a crash may have come between the rename and this.
        await chmod(path, VMM_READABLE);
        if (!existed) this.log.info({ image: image.ref, digest: image.digest, path, ms: this.clock.now() - started }, `built ext4 image for ${image.ref}`);
        return path;
      })().finally(() => this.ext4Builds.delete(target));
      this.ext4Builds.set(target, build);
    }
    let path: string;
    try {
      path = await build;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`building the ext4 volume of ${image.ref}: ${message}`, { cause: e });
    }
    await this.touch(image.digest, []);
    return path;
  }

  async vmmFile(image: LocalImage, path: string): Promise<string> {
    // The one resolver inside an image root (root-path.ts, as the steps' fileInRoot): symlinks
    // stay inside the image, and only a regular file is copied. Callers hand over a path they
    // resolved already; resolving again costs a few lstats and keys the copy on the real path.
    const found = regularFileInRoot(image.rootfs, path);
    if (!found.ok) throw new Error(`not copying a file out of image ${image.ref} (${image.digest}): ${found.reason}`);
    const rel = relative(image.rootfs, found.hostPath);
    await this.init();
    const { hex } = splitDigest(image.digest);
    const hash = createHash('sha256').update(rel).digest('hex').slice(0, 12);
    const target = join(this.filesDir, `${hex}-${hash}-${basename(rel).replace(/[^A-Za-z0-9._-]/g, '_')}`);
    let copy = this.fileCopies.get(target);
    if (copy === undefined) {
      copy = (async () => {
        if ((await mtimeOf(target)) === undefined) {
          // Beside the target, fsynced, then renamed: a file under the final name is always
          // complete. COPYFILE_FICLONE shares the blocks where the filesystem can (else copies).
          const partial = `${target}.partial`;
          try {
            await copyFile(found.hostPath, partial, fsConstants.COPYFILE_FICLONE);
            await fsyncFile(partial);
          } catch (e) {
            // A full disk is told by its code (the reconciler and the API say so); the partial goes.
            await rm(partial, { force: true });
            if (isDiskFull(e)) throw new DiskFullError(`disk full (ENOSPC) copying ${rel} out of image ${image.ref} into ${this.filesDir}`, e);
            throw e;
          }
          await chmod(partial, VMM_READABLE);
          await rename(partial, target);
        }
        return target;
      })().finally(() => this.fileCopies.delete(target));
      this.fileCopies.set(target, copy);
    }
    const result = await copy;
    await this.touch(image.digest, []);
    return result;
  }

  /** What the cache holds now: images known to the index, bytes of blobs, ext4 images and file copies. */
  async cacheSize(): Promise<ImageCacheSize> {
    const index = await this.init();
    const [blobsBytes, ext4Bytes, filesBytes] = await Promise.all([
      this.store.list().then((blobs) => sumSizes(blobs.map((b) => b.path))),
      listDir(this.ext4Dir).then((names) => sumSizes(names.map((n) => join(this.ext4Dir, n)))),
      listDir(this.filesDir).then((names) => sumSizes(names.map((n) => join(this.filesDir, n)))),
    ]);
    return { images: Object.keys(index.images).length, blobsBytes, ext4Bytes, filesBytes };
  }

  async collectGarbage(referenced: ReadonlySet<string>): Promise<string[]> {
    const index = await this.init();
    const now = this.clock.now();
    const cutoff = now - this.keepMs;
    /** Manifest digests of the images removed (what the port returns). */
    const images: string[] = [];
    /** Every path deleted, for the log. */
    const removed: string[] = [];
    const busy = new Set<string>(this.builds.keys());
    const busyBlobs = new Set<string>(this.store.inflightDigests());
    for (const build of this.builds.values()) for (const b of build.blobs) busyBlobs.add(b);
    const building = new Set([
      ...[...this.ext4Builds.keys()].map((p) => p.slice(this.ext4Dir.length + 1, this.ext4Dir.length + 65)),
      ...[...this.fileCopies.keys()].map((p) => p.slice(this.filesDir.length + 1, this.filesDir.length + 65)),
    ]);

    const ext4Files = await listDir(this.ext4Dir);
    const copies = await listDir(this.filesDir);
    const candidates = new Set<string>(Object.keys(index.images));
    for (const name of await listDir(this.rootfsDir)) if (!name.startsWith('.')) candidates.add(`sha256:${name}`);
    for (const name of [...ext4Files, ...copies]) if (/^[a-f0-9]{64}-/.test(name)) candidates.add(`sha256:${name.slice(0, 64)}`);

    const removedBlobs = new Set<string>();
    for (const digest of candidates) {
      if (referenced.has(digest) || busy.has(digest)) continue;
      let hex: string;
      try {
        hex = splitDigest(digest).hex;
      } catch {
        continue;
      }
      if (building.has(hex)) continue;
      const rootfs = join(this.rootfsDir, hex);
      const files = [
        ...ext4Files.filter((n) => n.startsWith(`${hex}-`)).map((n) => join(this.ext4Dir, n)),
        ...copies.filter((n) => n.startsWith(`${hex}-`)).map((n) => join(this.filesDir, n)),
      ];
      // Without an index entry (index lost), the newest of the entry's files stands for its last use.
      let lastUsed = index.images[digest]?.lastUsed;
      if (lastUsed === undefined) {
        const times = await Promise.all([rootfs, ...files].map(mtimeOf));
        lastUsed = Math.max(0, ...times.filter((t): t is number => t !== undefined));
      }
      if (lastUsed > cutoff) continue;

      if (await isDirectory(rootfs)) {
        await rm(rootfs, { recursive: true, force: true });
        removed.push(rootfs);
      }
      for (const file of files) {
        await rm(file, { force: true });
        removed.push(file);
      }
      for (const b of index.images[digest]?.blobs ?? []) removedBlobs.add(b);
      removedBlobs.add(digest);
      images.push(digest);
      delete index.images[digest];
      for (const [ref, entry] of Object.entries(index.refs)) if (entry.digest === digest) delete index.refs[ref];
    }

    const kept = new Set<string>(busyBlobs);
    for (const image of Object.values(index.images)) for (const b of image.blobs) kept.add(b);
    for (const entry of Object.values(index.refs)) kept.add(entry.digest);
    for (const blob of await this.store.list()) {
      if (kept.has(blob.digest)) continue;
      // Blobs of a removed image go with it; others (failed pulls, old indexes) once old enough.
      if (removedBlobs.has(blob.digest) || blob.mtimeMs < cutoff) {
        await this.store.remove(blob.digest);
        removed.push(blob.path);
      }
    }
    removed.push(...(await this.store.removeStaleTemp(cutoff)));
    await this.save(index);
    if (removed.length > 0) this.log.debug({ images, paths: removed }, `image garbage collection removed ${removed.length} paths`);
    return images;
  }

  // -------------------------------------------------------------------------------------------

  /** First use: directories, leftovers of a crash removed, the index loaded. */
  private init(): Promise<IndexFile> {
    this.ready ??= (async () => {
      // Modes set every time: a cache made before VMMs had their own uids had the umask's.
      for (const [dir, mode] of [
        [this.root, SEARCH_ONLY],
        [this.rootfsDir, PRIVATE_DIR],
        [join(this.root, 'blobs'), PRIVATE_DIR],
        [join(this.root, 'tmp'), PRIVATE_DIR],
        [this.ext4Dir, SEARCH_ONLY],
        [this.filesDir, SEARCH_ONLY],
      ] as const) {
        await mkdir(dir, { recursive: true, mode });
        await chmod(dir, mode);
      }
      const stale = await removeTempDirs(this.rootfsDir);
      for (const dir of [this.ext4Dir, this.filesDir]) {
        for (const name of await listDir(dir)) {
          if (!name.endsWith('.partial')) continue;
          await rm(join(dir, name), { force: true });
          stale.push(join(dir, name));
        }
      }
      if (stale.length > 0) this.log.info({ removed: stale }, 'removed unfinished image cache entries');
      return this.loadIndex();
    })();
    return this.ready;
  }

  private async loadIndex(): Promise<IndexFile> {
    let text: string;
    try {
      text = await readFile(this.indexPath, 'utf8');
    } catch (e) {
      if (isMissing(e)) return { version: 1, refs: {}, images: {} };
      throw e;
    }
    try {
      const parsed = JSON.parse(text) as Partial<IndexFile>;
      return { version: 1, refs: parsed.refs ?? {}, images: parsed.images ?? {} };
    } catch (e) {
      // Written by rename, so this takes a foreign hand; the cache itself stays usable.
      this.log.warn({ path: this.indexPath, err: (e as Error).message }, 'image index unreadable; starting a new one');
      return { version: 1, refs: {}, images: {} };
    }
  }

  /** Writes the index atomically (temp + fsync + rename), one write at a time. */
  private save(index: IndexFile): Promise<void> {
    const write = async (): Promise<void> => {
      const tmp = `${this.indexPath}.tmp-${randomBytes(4).toString('hex')}`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(index, null, 1)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.indexPath);
    };
    this.saving = this.saving.then(write, write);
    return this.saving;
  }

  private async touch(digest: string, blobs: readonly string[], ref?: { key: string }): Promise<void> {
    const index = await this.init();
    const now = this.clock.now();
    const entry = (index.images[digest] ??= { lastUsed: now, blobs: [] });
    entry.lastUsed = now;
    for (const b of blobs) if (!entry.blobs.includes(b)) entry.blobs.push(b);
    if (ref !== undefined) index.refs[ref.key] = { digest, resolvedAt: now };
    await this.save(index);
  }

  private async doPull(ref: string, parsed: ImageRef, key: string, listeners: Set<ProgressListener>, signal: AbortSignal): Promise<LocalImage> {
    const index = await this.init();
    const cached = index.refs[key];
    const cachedRootfs = cached !== undefined ? join(this.rootfsDir, splitDigest(cached.digest).hex) : undefined;

    // A digest names fixed content: once unpacked, there is nothing to ask the registry. (An
    // index digest is known through refs.json; a manifest digest names its rootfs directly.)
    if (parsed.digest !== undefined) {
      const known = cached?.digest ?? parsed.digest;
      const rootfs = join(this.rootfsDir, splitDigest(known).hex);
      if (await isDirectory(rootfs)) {
        await this.touch(known, [], { key });
        return { ref, digest: known, rootfs };
      }
    }

    if (cached !== undefined && cachedRootfs !== undefined && this.clock.now() - cached.resolvedAt < this.tagTtlMs && (await isDirectory(cachedRootfs))) {
      return { ref, digest: cached.digest, rootfs: cachedRootfs };
    }

    let resolved: ResolvedManifest;
    try {
      resolved = await this.client.resolve(parsed, signal);
    } catch (e) {
      if (e instanceof RegistryError && e.unavailable && cached !== undefined && cachedRootfs !== undefined && (await isDirectory(cachedRootfs))) {
        this.log.warn(
          { image: ref, digest: cached.digest, err: e.message },
          `pulling ${ref}: registry unavailable (${e.message}); using the cached ${shortDigest(cached.digest)} resolved at ${new Date(cached.resolvedAt).toISOString()}`,
        );
        await this.touch(cached.digest, []);
        return { ref, digest: cached.digest, rootfs: cachedRootfs };
      }
      throw e;
    }

    const digest = resolved.digest;
    const rootfs = join(this.rootfsDir, splitDigest(digest).hex);
    const blobs = [
      digest,
      ...(resolved.index !== undefined ? [resolved.index.digest] : []),
      resolved.manifest.config.digest,
      ...resolved.manifest.layers.map((l) => l.digest),
    ];
    if (!(await isDirectory(rootfs))) {
      // Pulls of other references to the same content share the work and see its progress.
      let build = this.builds.get(digest);
      if (build === undefined || build.work.abandoned) {
        const watchers = new Set<ProgressListener>();
        const work: SharedWork<void> = new SharedWork((shared) =>
          this.build(
            ref,
            parsed,
            resolved,
            (p) => {
              for (const w of watchers) w(p);
            },
            shared,
          ).finally(() => {
            if (this.builds.get(digest)?.work === work) this.builds.delete(digest);
          }),
        );
        build = { work, blobs: new Set(blobs), watchers };
        this.builds.set(digest, build);
      }
      const watch = (p: ImageProgress): void => this.progress(ref, listeners, p);
      build.watchers.add(watch);
      try {
        await build.work.wait(signal);
      } finally {
        build.watchers.delete(watch);
      }
    }
    await this.touch(digest, blobs, { key });
    return { ref, digest, rootfs };
  }

  private readonly lastLogged = new Map<string, number>();

  private progress(ref: string, listeners: Set<ProgressListener>, p: ImageProgress): void {
    for (const l of listeners) l({ ...p, ref });
    const key = `${ref}|${p.layer}`;
    const now = Date.now();
    const last = this.lastLogged.get(key);
    const done = p.bytes >= p.total;
    if (done || last === undefined || now - last >= PROGRESS_LOG_INTERVAL_MS) {
      this.lastLogged.set(key, now);
      this.log.info({ image: ref, layer: p.layer, bytes: p.bytes, total: p.total }, `pulling ${ref}: layer ${shortDigest(p.layer)} ${p.bytes}/${p.total}`);
    }
    if (done) this.lastLogged.delete(key);
  }

  private async build(ref: string, parsed: ImageRef, resolved: ResolvedManifest, report: (p: ImageProgress) => void, signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const timings = new Timings();
    try {
      await this.fetchAndUnpack(ref, parsed, resolved, report, signal, timings);
      this.observer?.pulled('pulled', (Date.now() - started) / 1000);
      this.onTimings?.('pull', ref, { ...timings.entries(), total: timings.elapsed() });
    } catch (e) {
      this.observer?.pulled(signal.aborted ? 'aborted' : 'failed', (Date.now() - started) / 1000);
      throw e;
    }
  }

  private async fetchAndUnpack(
    ref: string,
    parsed: ImageRef,
    resolved: ResolvedManifest,
    report: (p: ImageProgress) => void,
    signal: AbortSignal,
    timings: Timings,
  ): Promise<void> {
    const { manifest } = resolved;
    const started = this.clock.now();
    // Refuse what we cannot unpack before downloading anything.
    for (const layer of manifest.layers) layerCompression(layer.mediaType, layer.digest);
    const t0 = performance.now();
    if (resolved.index !== undefined) await this.store.put(resolved.index.digest, resolved.index.raw);
    await this.store.put(resolved.digest, resolved.raw);

    const opener = (desc: Descriptor) => (start: number, signal: AbortSignal) => this.client.blob(parsed, desc.digest, start, signal);
    if (manifest.config.size > MAX_CONFIG_BYTES) throw new Error(`the image config is ${manifest.config.size} bytes, more than ${MAX_CONFIG_BYTES}`);
    const configPath = await this.store.fetch(manifest.config, opener(manifest.config), undefined, signal);
    const ids = diffIds(await readFile(configPath), manifest.layers.length);
    timings.add('manifest and config stored', performance.now() - t0);

    const limit = limiter(this.concurrentDownloads);
    // The whole image's progress too, so a client can show one bar for it (status.pull_progress).
    const imageTotal = manifest.layers.reduce((n, l) => n + l.size, 0);
    const received = new Map<string, number>();
    let imageBytes = 0;
    const downloads = manifest.layers.map((layer, i) =>
      limit(() =>
        timings.time(`download: layer ${i}`, () =>
          this.store.fetch(
            layer,
            opener(layer),
            (bytes, total) => {
              imageBytes += bytes - (received.get(layer.digest) ?? 0);
              received.set(layer.digest, bytes);
              report({ ref, layer: layer.digest, bytes, total, imageBytes, imageTotal });
            },
            signal,
            timings,
          ),
        ),
      ),
    );
    // Rejections are read in order below; this keeps an early one from counting as unhandled.
    for (const d of downloads) d.catch(() => undefined);

    const layers: LayerSource[] = manifest.layers.map((layer, i) => ({
      digest: layer.digest,
      mediaType: layer.mediaType,
      path: downloads[i] as Promise<string>,
      ...(this.streamLayers ? { stream: (unpacking: AbortSignal) => this.store.follow(layer, unpacking) } : {}),
      ...(ids[i] !== undefined ? { diffId: ids[i] } : {}),
    }));
    try {
      await unpackImage(this.rootfsDir, splitDigest(resolved.digest).hex, layers, {
        warn: (message) => this.log.warn({ image: ref }, `pulling ${ref}: ${message}`),
        maxBytes: this.maxUnpackedBytes,
        timings,
        signal,
      });
    } catch (e) {
      if (!(e instanceof UnpackLimitError)) throw e;
      throw new Error(`${e.message}, the limit per image; raise image-max-unpacked-size (now ${formatSize(e.limit)}) to pull it`, { cause: e });
    } finally {
      // Downloads still running finish into the cache (useful next time) before we report.
      await Promise.allSettled(downloads);
    }
    const bytes = manifest.layers.reduce((n, l) => n + l.size, 0);
    this.log.info(
      { image: ref, digest: resolved.digest, layers: manifest.layers.length, bytes, ms: this.clock.now() - started },
      `pulled ${ref} (${shortDigest(resolved.digest)})`,
    );
  }
}
