// Layers → one root filesystem directory, `rootfs/<manifest-hex>`, built in a temp directory and
// renamed into place, so the name exists only once every layer is fully applied.
//
// Why not node-tar's Unpack: with `preservePaths: false` it rewrites absolute symlink targets
// (`/etc/localtime -> /usr/share/zoneinfo/UTC` becomes a relative, broken link), drops symlinks
// whose target has `..` reaching above their directory, and refuses entries under an in-image
// symlink; with `preservePaths: true` an entry can escape through a symlink. A root filesystem
// needs symlinks stored verbatim and paths resolved inside the root (what containerd does), so
// node-tar parses (headers, pax, long names) and this file applies the entries one at a time:
//   - every parent path is resolved inside the root, following in-image symlinks but clamped
//     at the root, so nothing is ever written outside it;
//   - entry paths with `..` are refused; absolute entry paths are taken relative to the root;
//   - OCI whiteouts: `.wh.<name>` removes `<name>` from lower layers and `.wh..wh..opq` clears
//     a directory's lower contents; what the same layer wrote is kept whatever the entry order;
//   - the tree lives on the host, written by root: device nodes are never created (a node for
//     the host's disk would be a way in for anyone who can read the cache) and setuid/setgid
//     bits are cleared, each counted and reported once per layer;
//   - the decompressed bytes of all layers together are bounded, so a gzip bomb fails the pull
//     instead of filling the disk.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  createReadStream,
  createWriteStream,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';

import { formatSize } from '../../config/size.js';
import { lookupInRoot } from '../fs/root-path.js';
import { isDiskFull } from '../../core/result.js';
import type { Timings } from './timings.js';

const execFileAsync = promisify(execFile);

export type LayerCompression = 'gzip' | 'none';

export interface LayerSource {
  readonly digest: string;
  readonly mediaType: string;
  /** The verified blob on disk (a promise while it downloads: unpacking starts with the first layer). */
  readonly path: string | Promise<string>;
  /**
   * The blob's bytes as they arrive (content-store.ts `follow`), unpacked while `path` is still
   * downloading; unverified until `path` resolves, which the unpack waits for before it goes on.
   * Without it, the layer is read from `path` once that resolves.
   */
  readonly stream?: (signal: AbortSignal) => AsyncIterable<Buffer>;
  /** The config's `rootfs.diff_ids` entry: digest of the uncompressed tar, checked while unpacking. */
  readonly diffId?: string;
}

export interface UnpackOptions {
  /** Entries skipped or changed (device nodes, setuid/setgid bits, unknown types). */
  readonly warn?: (message: string) => void;
  /** Decompressed bytes (tar stream) of all layers together; beyond them the unpack fails. */
  readonly maxBytes?: number;
  /** Told where the time goes (waiting for downloads, applying each layer, the final syncfs). */
  readonly timings?: Timings;
  /** Stops the unpack (a delete, a shutdown): the temp tree is removed. */
  readonly signal?: AbortSignal;
}

/** The image is larger unpacked than `UnpackOptions.maxBytes`. */
export class UnpackLimitError extends Error {
  constructor(
    message: string,
    readonly limit: number,
  ) {
    super(message);
  }
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

function zstdError(digest: string): Error {
  return new Error(`zstd-compressed layers are not supported yet (layer ${digest})`);
}

/** What a layer media type says about compression; refuses what we cannot unpack, before any download. */
export function layerCompression(mediaType: string, digest: string): LayerCompression {
  const type = mediaType.toLowerCase();
  if (type.endsWith('+zstd') || type.endsWith('.zstd')) throw zstdError(digest);
  if (type.endsWith('+gzip') || type.endsWith('.tar.gzip') || type.endsWith('.tar.gz')) return 'gzip';
  if (type.endsWith('.tar') || type.endsWith('.v1.tar')) return 'none';
  throw new Error(`unsupported layer media type ${mediaType} (layer ${digest})`);
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

// Entries are applied with synchronous fs calls, except for large file bodies. Measured on a
// 20,000-file layer: ~10 thread-pool round trips per entry made the async version 20x slower
// than GNU tar (11 s against 0.5 s); each of these syscalls takes microseconds, so the event
// loop is never held for long, and entries must be applied one at a time anyway.
function lstatOrUndefined(path: string): Stats | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}

/** The entry path as clean relative components; undefined when it climbs with `..`. */
export function cleanEntryPath(p: string): string | undefined {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function splitRel(rel: string): { dir: string; base: string } {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? { dir: '', base: rel } : { dir: rel.slice(0, slash), base: rel.slice(slash + 1) };
}

/**
 * The real path (relative to root) of directory `rel`, following symlinks as the guest would see
 * them (root-path.ts). Creates missing components when `create`; returns undefined for a missing
 * one otherwise.
 */
function resolveDirectory(root: string, rel: string, create: boolean): string | undefined {
  const found = lookupInRoot(root, rel, create);
  if (found.kind === 'loop') throw new Error(`too many levels of symbolic links resolving ${rel}`);
  if (found.kind === 'found' && found.stats.isDirectory()) return found.rel;
  if (!create) return undefined;
  throw new Error(`${found.rel} is not a directory`);
}

/** What one layer wrote (real paths relative to the root), so its own whiteouts leave them be. */
interface LayerState {
  readonly written: Set<string>;
  readonly ancestors: Set<string>;
  readonly dirTimes: { path: string; atime: Date; mtime: Date }[];
  /** Parent directories already resolved (entry dir → real dir); dropped when the tree's shape changes. */
  readonly dirs: Map<string, string>;
  /** Stops the file write in progress, whose entry data may never come once the layer failed. */
  abortWrite?: (e: Error) => void;
  /** Device node entries not created, and entries whose setuid/setgid bits were cleared. */
  readonly skippedDevices: Set<string>;
  readonly clearedSetid: string[];
}

function markWritten(state: LayerState, rel: string): void {
  state.written.add(rel);
  for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) state.ancestors.add(rel.slice(0, i));
}

function parentOf(root: string, dir: string, state: LayerState): string {
  const cached = state.dirs.get(dir);
  if (cached !== undefined) return cached;
  const real = resolveDirectory(root, dir, true) as string;
  state.dirs.set(dir, real);
  return real;
}

/** Removes `rel` as lower layers left it: what this layer wrote there (and below) stays. */
function prune(root: string, rel: string, state: LayerState): void {
  const abs = join(root, rel);
  if (state.written.has(rel) || state.ancestors.has(rel)) {
    if (lstatOrUndefined(abs)?.isDirectory() === true) pruneChildren(root, rel, state);
    return;
  }
  rmSync(abs, { recursive: true, force: true });
}

function pruneChildren(root: string, rel: string, state: LayerState): void {
  for (const name of readdirSync(join(root, rel))) prune(root, joinRel(rel, name), state);
}

/** Makes room for a new entry: anything at the path goes, except a directory a directory replaces. */
function clear(abs: string, keepDirectory: boolean, state: LayerState): Stats | undefined {
  const st = lstatOrUndefined(abs);
  if (st === undefined) return undefined;
  if (st.isDirectory()) {
    if (keepDirectory) return st;
    rmSync(abs, { recursive: true, force: true });
    state.dirs.clear();
    return undefined;
  }
  unlinkSync(abs);
  if (st.isSymbolicLink()) state.dirs.clear();
  return undefined;
}

const SETID = 0o6000;

/** The entry's permission bits without setuid/setgid (the sticky bit stays: /tmp needs it). */
function mode(entry: ReadEntry, fallback: number, state: LayerState, rel: string): number {
  const bits = (entry.mode ?? fallback) & 0o7777;
  if ((bits & SETID) !== 0) state.clearedSetid.push(rel === '' ? '/' : rel);
  return bits & ~SETID;
}

function setOwner(abs: string, entry: ReadEntry, symbolic: boolean): void {
  const uid = entry.uid ?? 0;
  const gid = entry.gid ?? 0;
  try {
    if (symbolic) lchownSync(abs, uid, gid);
    else chownSync(abs, uid, gid);
  } catch (e) {
    // Not root (tests, rootless): files stay ours, as any unprivileged unpacker leaves them.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
  }
}

/** Bodies up to this size are collected in memory and written with one call. */
const SMALL_FILE = 1024 * 1024;

async function writeFileEntry(abs: string, entry: ReadEntry, state: LayerState): Promise<void> {
  if (entry.size <= SMALL_FILE) {
    const chunks: Buffer[] = [];
    const data = await new Promise<Buffer>((resolve, reject) => {
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => resolve(Buffer.concat(chunks)));
      entry.on('error', reject);
      state.abortWrite = reject;
    }).finally(() => (state.abortWrite = undefined));
    writeFileSync(abs, data, { flag: 'wx', mode: 0o600 });
    return;
  }
  const ws = createWriteStream(abs, { flags: 'wx', mode: 0o600 });
  const done = new Promise<void>((resolve, reject) => {
    ws.on('close', resolve);
    ws.on('error', reject);
    entry.on('error', reject);
  });
  state.abortWrite = (e) => {
    entry.unpipe(ws);
    ws.destroy(e);
  };
  entry.pipe(ws);
  try {
    await done;
  } finally {
    state.abortWrite = undefined;
  }
}

async function makeFifo(abs: string, fileMode: number, entry: ReadEntry, warn: (m: string) => void): Promise<boolean> {
  // Node has no mkfifo(3) binding; coreutils' mkfifo is always there on Debian.
  try {
    await execFileAsync('mkfifo', ['-m', fileMode.toString(8), abs]);
    return true;
  } catch (e) {
    warn(`skipped ${entry.type} ${entry.path}: ${(e as Error).message.trim()}`);
    return false;
  }
}

async function applyEntry(root: string, layer: LayerSource, entry: ReadEntry, state: LayerState, warn: (m: string) => void): Promise<void> {
  const rel = cleanEntryPath(entry.path);
  if (rel === undefined) throw new Error(`layer ${layer.digest}: entry "${entry.path}" leaves the root filesystem`);
  const { dir, base } = splitRel(rel);

  if (base.startsWith(WHITEOUT)) {
    entry.resume();
    const realDir = resolveDirectory(root, dir, false);
    if (realDir === undefined) return;
    if (base === OPAQUE) {
      if (lstatOrUndefined(join(root, realDir))?.isDirectory() === true) pruneChildren(root, realDir, state);
    } else if (!base.startsWith(`${WHITEOUT}${WHITEOUT}`)) {
      // `.wh..wh.*` other than the opaque marker is AUFS bookkeeping, not a whiteout.
      prune(root, joinRel(realDir, base.slice(WHITEOUT.length)), state);
    }
    state.dirs.clear();
    return;
  }

  if (rel === '') {
    // The archive's own root: only its metadata applies.
    entry.resume();
    if (entry.type === 'Directory') {
      setOwner(root, entry, false);
      chmodSync(root, mode(entry, 0o755, state, rel));
    }
    return;
  }

  const realRel = joinRel(parentOf(root, dir, state), base);
  const abs = join(root, realRel);

  switch (entry.type) {
    case 'Directory':
    case 'GNUDumpDir': {
      entry.resume();
      if (clear(abs, true, state) === undefined) mkdirSync(abs, { mode: 0o700 });
      setOwner(abs, entry, false);
      chmodSync(abs, mode(entry, 0o755, state, realRel));
      if (entry.mtime !== undefined) state.dirTimes.push({ path: abs, atime: entry.atime ?? entry.mtime, mtime: entry.mtime });
      break;
    }
    case 'File':
    case 'OldFile':
    case 'ContiguousFile': {
      clear(abs, false, state);
      await writeFileEntry(abs, entry, state);
      // The file was created 0600 and gets its mode last, once its content and owner are final.
      setOwner(abs, entry, false);
      chmodSync(abs, mode(entry, 0o644, state, realRel));
      if (entry.mtime !== undefined) utimesSync(abs, entry.atime ?? entry.mtime, entry.mtime);
      break;
    }
    case 'SymbolicLink': {
      entry.resume();
      clear(abs, false, state);
      // Stored verbatim: the target is the guest's business and is never followed here.
      symlinkSync(entry.linkpath ?? '', abs);
      state.dirs.clear();
      setOwner(abs, entry, true);
      if (entry.mtime !== undefined) lutimesSync(abs, entry.atime ?? entry.mtime, entry.mtime);
      break;
    }
    case 'Link': {
      entry.resume();
      const targetRel = cleanEntryPath(entry.linkpath ?? '');
      if (targetRel === undefined || targetRel === '') throw new Error(`layer ${layer.digest}: hard link ${rel} points outside the root (${entry.linkpath})`);
      const target = splitRel(targetRel);
      const targetDir = resolveDirectory(root, target.dir, false);
      const targetAbs = targetDir === undefined ? undefined : join(root, targetDir, target.base);
      if (targetDir !== undefined && state.skippedDevices.has(joinRel(targetDir, target.base))) {
        // Another name of a device node this layer did not make.
        clear(abs, false, state);
        state.skippedDevices.add(realRel);
        return;
      }
      if (targetAbs === undefined || lstatOrUndefined(targetAbs) === undefined) {
        throw new Error(`layer ${layer.digest}: hard link ${rel} points to ${targetRel}, which does not exist`);
      }
      if (targetAbs === abs) break;
      clear(abs, false, state);
      linkSync(targetAbs, abs);
      break;
    }
    case 'CharacterDevice':
    case 'BlockDevice': {
      // Never made: what lower layers had at the path goes, as if the node were there.
      entry.resume();
      clear(abs, false, state);
      state.skippedDevices.add(realRel);
      return;
    }
    case 'FIFO': {
      entry.resume();
      clear(abs, false, state);
      const fifoMode = mode(entry, 0o644, state, realRel);
      if (!(await makeFifo(abs, fifoMode, entry, warn))) return;
      setOwner(abs, entry, false);
      chmodSync(abs, fifoMode);
      break;
    }
    default:
      entry.resume();
      warn(`skipped ${entry.path}: unsupported tar entry type ${entry.type}`);
      return;
  }
  markWritten(state, realRel);
}

/** The first bytes of `source` (its magic number) and the whole of it, those bytes included. */
async function peek(source: AsyncIterable<Buffer>, bytes: number): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let n = 0;
  let done = false;
  while (n < bytes) {
    const next = await it.next();
    if (next.done === true) {
      done = true;
      break;
    }
    seen.push(next.value);
    n += next.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* seen;
    if (done) return;
    for (;;) {
      const next = await it.next();
      if (next.done === true) return;
      yield next.value;
    }
  }
  const rest = all();
  // Ending early (a failed layer) must close the source too (its file, its follower).
  const close = rest.return.bind(rest);
  rest.return = async (value) => {
    await it.return?.();
    return close(value);
  };
  return { head: Buffer.concat(seen).subarray(0, bytes), all: rest };
}

/** Decompressed bytes the layers of one image may still produce. */
interface ByteBudget {
  used: number;
  readonly limit: number;
}

/** "3 device nodes (dev/null, dev/zero, dev/sda)", naming the first few. */
function counted(one: string, many: string, paths: readonly string[]): string {
  const shown = paths.slice(0, 5).join(', ');
  return `${paths.length} ${paths.length === 1 ? one : many} (${shown}${paths.length > 5 ? `, and ${paths.length - 5} more` : ''})`;
}

/** One line per layer for what it asked for and did not get, rather than one per entry. */
function reportChanges(layer: LayerSource, state: LayerState, warn: (m: string) => void): void {
  if (state.skippedDevices.size > 0) {
    warn(`layer ${layer.digest}: skipped ${counted('device node', 'device nodes', [...state.skippedDevices])}: layers never create device nodes on the host`);
  }
  if (state.clearedSetid.length > 0) {
    warn(`layer ${layer.digest}: cleared the setuid/setgid bits of ${counted('entry', 'entries', state.clearedSetid)}: unpacked images never keep them`);
  }
}

/** Applies one layer's tar (`raw`: the blob's bytes, compressed or not) on top of `root`. */
async function applyLayer(root: string, layer: LayerSource, raw: AsyncIterable<Buffer>, warn: (m: string) => void, budget: ByteBudget): Promise<void> {
  layerCompression(layer.mediaType, layer.digest);
  // Trust the bytes over the media type (as containerd does): some tools label gzip as plain tar.
  const { head, all } = await peek(raw, 4);
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) throw zstdError(layer.digest);
  const gzip = head.subarray(0, 2).equals(GZIP_MAGIC);

  const state: LayerState = { written: new Set(), ancestors: new Set(), dirTimes: [], dirs: new Map(), skippedDevices: new Set(), clearedSetid: [] };
  const diffHash = createHash('sha256');
  const parser = new Parser();
  let failure: unknown;
  let wake: (() => void) | undefined;
  let onFailure: () => void = () => undefined;
  const failed = new Promise<void>((resolve) => (onFailure = resolve));
  const fail = (e: unknown): void => {
    failure ??= e;
    onFailure();
    wake?.();
    state.abortWrite?.(e instanceof Error ? e : new Error('layer failed'));
  };
  // Docker's classic empty layer is 1024 zero bytes: no entries, which node-tar calls "not a tar".
  let onlyZeros = true;

  // Entries are applied strictly in order; the parser hands out the next one only after the
  // current one's data has been consumed, and buffers (with backpressure) meanwhile.
  let chain: Promise<void> = Promise.resolve();
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failure !== undefined) {
        entry.resume();
        return;
      }
      try {
        await applyEntry(root, layer, entry, state, warn);
      } catch (e) {
        entry.resume();
        fail(e);
      }
    });
  });
  parser.on('error', fail);
  parser.on('warn', (code: string, message: string) => {
    if (code === 'TAR_BAD_ARCHIVE' && onlyZeros) return;
    fail(new Error(`${code}: ${message}`));
  });
  parser.on('drain', () => wake?.());
  const ended = new Promise<void>((resolve) => parser.on('end', resolve));

  // The source's own failure (the download's: disk full, digest, abort) is passed on as it is.
  let sourceError: unknown;
  const guarded = async function* (): AsyncGenerator<Buffer> {
    try {
      yield* all;
    } catch (e) {
      sourceError = e;
      throw e;
    }
  };
  const file = Readable.from(guarded(), { objectMode: false });
  const source: Readable = gzip ? file.pipe(createGunzip({ chunkSize: 64 * 1024 })) : file;
  if (gzip) file.on('error', (e) => source.destroy(e));
  try {
    for await (const chunk of source) {
      if (failure !== undefined) break;
      const buf = chunk as Buffer;
      // Counted before the parser sees the bytes: nothing past the limit is ever written.
      budget.used += buf.length;
      if (budget.used > budget.limit) {
        fail(new UnpackLimitError(`layer ${layer.digest}: the image unpacks to more than ${formatSize(budget.limit)}`, budget.limit));
        break;
      }
      diffHash.update(buf);
      if (onlyZeros && buf.some((b) => b !== 0)) onlyZeros = false;
      if (!parser.write(buf)) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    }
  } catch (e) {
    fail(sourceError ?? new Error(`layer ${layer.digest}: ${gzip ? 'gunzip' : 'read'} failed: ${(e as Error).message}`));
  } finally {
    file.destroy();
    source.destroy();
  }
  if (failure === undefined) {
    parser.end();
    await Promise.race([ended, failed]);
  }
  await chain;
  if (failure !== undefined) {
    const err = failure instanceof Error ? failure : new Error(JSON.stringify(failure));
    if (!err.message.startsWith(`layer ${layer.digest}`)) err.message = `layer ${layer.digest}: ${err.message}`;
    throw err;
  }
  const diffId = `sha256:${diffHash.digest('hex')}`;
  if (layer.diffId !== undefined && layer.diffId.startsWith('sha256:') && layer.diffId !== diffId) {
    throw new Error(`layer ${layer.digest}: uncompressed content ${diffId} does not match the config's diff_id ${layer.diffId}`);
  }
  // Last, so the entries written under a directory don't bump its time again.
  for (const d of state.dirTimes.reverse()) utimesSync(d.path, d.atime, d.mtime);
  reportChanges(layer, state, warn);
}

/** Removes leftovers from an interrupted unpack: a temp directory is never trusted or reused. */
export async function removeTempDirs(rootfsParent: string, prefix = '.tmp-'): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(rootfsParent);
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    const path = join(rootfsParent, name);
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

async function syncFilesystem(path: string): Promise<void> {
  // syncfs(2) through coreutils: one call flushes every file just written (Node has no syncfs).
  await execFileAsync('sync', ['-f', path]);
}

/** What was unpacked of a layer as it downloaded is void: unpack the image again from the verified files. */
class FromFilesAgain extends Error {}

function fileSource(path: string): AsyncIterable<Buffer> {
  return createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>;
}

/**
 * Applies the layers bottom first. A layer with a stream is unpacked as it downloads (`streamed`)
 * and its download must then verify before the next layer goes on top; the others are read from
 * their verified files.
 */
async function applyLayers(root: string, layers: readonly LayerSource[], warn: (m: string) => void, options: UnpackOptions, streamed: boolean): Promise<void> {
  const budget: ByteBudget = { used: 0, limit: options.maxBytes ?? Number.POSITIVE_INFINITY };
  const t = options.timings;
  const signal = options.signal ?? new AbortController().signal;
  /** Blobs unpacked as they downloaded, verified but perhaps not yet durable. */
  const durable: Promise<string>[] = [];
  for (const [i, layer] of layers.entries()) {
    signal.throwIfAborted();
    const t0 = performance.now();
    if (streamed && layer.stream !== undefined) {
      // The download's failure ends the stream with it, also when it failed before the stream began.
      const verified = Promise.resolve(layer.path);
      const failed = new AbortController();
      verified.catch((e: unknown) => failed.abort(e));
      try {
        await applyLayer(root, layer, layer.stream(AbortSignal.any([signal, failed.signal])), warn, budget);
      } catch (e) {
        // Unverified bytes that fail to unpack may simply be the wrong bytes: a digest mismatch
        // (or a full disk, an abort) is the failure to report, and the download ends soon anyway.
        await verified;
        // Verified after all: what was read may still have been a corrupt partial the download
        // threw away and fetched again. The verified file gives the answer (the unpack starts
        // over from the files; an image that fails this way fails again there, for good).
        if (e instanceof UnpackLimitError || isDiskFull(e) || signal.aborted) throw e;
        throw new FromFilesAgain(`layer ${layer.digest} could not be unpacked as it downloaded (${(e as Error).message})`);
      }
      // The stream ended: the digest matched. The next layer goes on top while the blob is
      // fsynced and renamed; the tree is renamed into place only after every blob is durable.
      durable.push(verified);
      t?.add(`unpack: layer ${i} (as it downloads)`, performance.now() - t0);
    } else {
      const path = await layer.path;
      const t1 = performance.now();
      await applyLayer(root, layer, fileSource(path), warn, budget);
      t?.add('unpack: waiting for downloads', t1 - t0);
      t?.add(`unpack: layer ${i}`, performance.now() - t1);
    }
  }
  const t0 = performance.now();
  await Promise.all(durable);
  t?.add('unpack: waiting for blobs to be durable', performance.now() - t0);
}

/**
 * Unpacks the layers, bottom first, into `<rootfsParent>/<hex>` and returns that path. Existing
 * content under the name is trusted (it only ever appears by rename of a finished unpack).
 */
export async function unpackImage(rootfsParent: string, hex: string, layers: readonly LayerSource[], options: UnpackOptions = {}): Promise<string> {
  const target = join(rootfsParent, hex);
  if (lstatOrUndefined(target)?.isDirectory() === true) return target;
  for (const layer of layers) layerCompression(layer.mediaType, layer.digest);
  await mkdir(rootfsParent, { recursive: true });
  await removeTempDirs(rootfsParent, `.tmp-${hex}-`);

  const tmp = join(rootfsParent, `.tmp-${hex}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { mode: 0o755 });
  const warn = options.warn ?? (() => undefined);
  const t = options.timings;
  try {
    try {
      await applyLayers(tmp, layers, warn, options, true);
    } catch (e) {
      if (!(e instanceof FromFilesAgain)) throw e;
      // A layer's download threw away a corrupt partial after we had unpacked some of it: its
      // bytes were not the layer's. Start over from the verified blobs (rare: after a crash).
      warn(`${e.message}; unpacking every layer again from the verified blobs`);
      await rm(tmp, { recursive: true, force: true });
      await mkdir(tmp, { mode: 0o755 });
      await applyLayers(tmp, layers, warn, options, false);
    }
    // One syncfs for the whole tree (and the blobs, on the same filesystem): nothing under the
    // final name before all of it is durable.
    await (t?.time('unpack: syncfs', () => syncFilesystem(tmp)) ?? syncFilesystem(tmp));
    try {
      await rename(tmp, target);
    } catch (e) {
      // Someone else finished the same image first; theirs is as good as ours.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      await rm(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return target;
}
