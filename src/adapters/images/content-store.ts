// The content-addressed blob cache under `<state-dir>/images/`:
//
//   blobs/<alg>/<hex>     verified blobs; a file here was hashed before it got this name
//   tmp/<hex>.partial     a download in progress (or interrupted): resumable, never trusted
//
// A blob only reaches `blobs/` by rename after its digest matched, and the file is fsynced
// first, so after a crash a name in `blobs/` always means complete, verified content. A partial
// is re-hashed from disk before a download resumes after it, so a partial with garbage in it
// costs one failed verification and a restart from byte 0, never a corrupt blob.
//
// While a blob downloads, `follow` reads it as it arrives (blob-tail.ts): the unpacker starts on
// a layer with its first bytes. What it reads is unverified until `fetch` resolves.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';

import { isDiskFull } from '../../core/result.js';
import { SharedWork } from './shared-work.js';
import type { Timings } from './timings.js';
import { BlobTail } from './blob-tail.js';
import { DigestMismatchError, RegistryError, digestOf, splitDigest, type BlobResponse } from './registry-client.js';

export interface BlobDescriptor {
  readonly digest: string;
  readonly size: number;
}

/** Opens the blob's bytes from `start`; the answer may still start at 0 (server ignored Range). */
export type BlobOpener = (start: number, signal: AbortSignal) => Promise<BlobResponse>;

export type BlobProgress = (bytes: number, total: number) => void;

export interface ContentStoreOptions {
  /** Abort (and resume) a download that received nothing for this long (default 60 s). */
  readonly idleTimeoutMs?: number;
  /** Tries per blob for transport failures, each resuming where the last stopped (default 4). */
  readonly maxAttempts?: number;
  /** Pause between attempts, multiplied by the attempt number (default 250 ms). */
  readonly retryDelayMs?: number;
  /** Told of every chunk received from a registry (metrics: bytes pulled). */
  readonly onReceived?: (bytes: number) => void;
}

export interface StoredBlob {
  readonly digest: string;
  readonly path: string;
  readonly mtimeMs: number;
}

interface InFlight {
  readonly work: SharedWork<string>;
  readonly listeners: Set<BlobProgress>;
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

/** Makes written data durable before the rename that makes it trusted. */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function endStream(ws: WriteStream): Promise<void> {
  if (ws.closed) return;
  const closed = once(ws, 'close');
  ws.end();
  await closed;
}

/** A transport failure part-way through a body: worth resuming. */
class InterruptedError extends RegistryError {
  constructor(message: string) {
    super(message, undefined, true);
  }
}

/** A write that failed for want of space; `code` stays ENOSPC so every layer can tell. */
export class DiskFullError extends Error {
  readonly code = 'ENOSPC';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'DiskFullError';
  }
}

export class ContentStore {
  private readonly inflight = new Map<string, InFlight>();
  /** The bytes of downloads in progress (or about to start: a follower came first), by digest. */
  private readonly tails = new Map<string, BlobTail>();
  private readonly idleTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  private readonly onReceived: (bytes: number) => void;

  constructor(
    /** `<state-dir>/images` */
    readonly root: string,
    options: ContentStoreOptions = {},
  ) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 4);
    this.retryDelayMs = options.retryDelayMs ?? 250;
    this.onReceived = options.onReceived ?? (() => undefined);
  }

  blobPath(digest: string): string {
    const { algorithm, hex } = splitDigest(digest);
    return join(this.root, 'blobs', algorithm, hex);
  }

  partialPath(digest: string): string {
    return join(this.root, 'tmp', `${splitDigest(digest).hex}.partial`);
  }

  async has(digest: string): Promise<boolean> {
    return (await sizeOf(this.blobPath(digest))) !== undefined;
  }

  async read(digest: string): Promise<Buffer> {
    return readFile(this.blobPath(digest));
  }

  /** Stores bytes already in memory (manifests), verified and atomically. */
  async put(digest: string, bytes: Buffer): Promise<string> {
    const { algorithm, hex } = splitDigest(digest);
    const actual = digestOf(bytes, algorithm);
    if (actual !== digest) throw new DigestMismatchError(`blob ${digest}`, digest, actual);
    const target = this.blobPath(digest);
    if (await this.has(digest)) return target;
    await mkdir(join(this.root, 'tmp'), { recursive: true });
    await mkdir(join(this.root, 'blobs', algorithm), { recursive: true });
    const tmp = join(this.root, 'tmp', `${hex}.put-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
    return target;
  }

  /**
   * The blob's bytes from byte 0 as they arrive, from its partial file while it downloads (or
   * will: a download started later is followed too), or from the cache. Unverified: trust what is
   * made of them only once `fetch` resolved. Ends with the download's error if it fails, and with
   * TailRestartedError if it throws away what it had and starts again from 0.
   */
  async *follow(desc: BlobDescriptor, signal?: AbortSignal): AsyncGenerator<Buffer> {
    let tail = this.tails.get(desc.digest);
    if (tail === undefined || tail.ended) {
      const verified = await this.has(desc.digest);
      tail = this.tails.get(desc.digest);
      if (verified && (tail === undefined || tail.ended)) {
        tail = BlobTail.complete(desc.digest, desc.size, this.blobPath(desc.digest));
      } else if (tail === undefined || tail.ended) {
        tail = this.newTail(desc);
      }
    }
    yield* tail.read(signal);
  }

  private newTail(desc: BlobDescriptor): BlobTail {
    const tail = new BlobTail(desc.digest, desc.size, this.partialPath(desc.digest), this.blobPath(desc.digest));
    this.tails.set(desc.digest, tail);
    return tail;
  }

  /** Digests of blobs being downloaded right now (garbage collection must leave them alone). */
  inflightDigests(): ReadonlySet<string> {
    return new Set(this.inflight.keys());
  }

  /**
   * The path of the verified blob, downloading it if needed. Concurrent calls for one digest share
   * a single download (each caller still gets progress). A caller whose signal aborts stops waiting
   * at once; the download stops when no caller waits any more, keeping what arrived (the next
   * fetch resumes after it).
   */
  fetch(desc: BlobDescriptor, openBlob: BlobOpener, onProgress?: BlobProgress, signal?: AbortSignal, timings?: Timings): Promise<string> {
    let running = this.inflight.get(desc.digest);
    if (running === undefined || running.work.abandoned) {
      const listeners = new Set<BlobProgress>();
      const report: BlobProgress = (bytes, total) => {
        for (const l of listeners) l(bytes, total);
      };
      const work: SharedWork<string> = new SharedWork((shared) =>
        this.tracked(desc, openBlob, report, shared, timings).finally(() => {
          if (this.inflight.get(desc.digest)?.work === work) this.inflight.delete(desc.digest);
        }),
      );
      running = { work, listeners };
      this.inflight.set(desc.digest, running);
    }
    const { work, listeners } = running;
    if (onProgress === undefined) return work.wait(signal);
    listeners.add(onProgress);
    return work.wait(signal).finally(() => listeners.delete(onProgress));
  }

  /** The download, its tail told how it ended. */
  private async tracked(desc: BlobDescriptor, openBlob: BlobOpener, report: BlobProgress, signal: AbortSignal, timings?: Timings): Promise<string> {
    const existing = this.tails.get(desc.digest);
    const tail = existing !== undefined && !existing.ended ? existing : this.newTail(desc);
    try {
      const path = await this.download(desc, openBlob, report, signal, tail, timings);
      tail.finish();
      return path;
    } catch (e) {
      tail.fail(e instanceof Error ? e : new Error(String(e)));
      throw e;
    } finally {
      if (this.tails.get(desc.digest) === tail) this.tails.delete(desc.digest);
    }
  }

  private async download(
    desc: BlobDescriptor,
    openBlob: BlobOpener,
    report: BlobProgress,
    signal: AbortSignal,
    tail: BlobTail,
    timings?: Timings,
  ): Promise<string> {
    const { algorithm } = splitDigest(desc.digest);
    const target = this.blobPath(desc.digest);
    if ((await sizeOf(target)) !== undefined) {
      report(desc.size, desc.size);
      return target;
    }
    await mkdir(join(this.root, 'tmp'), { recursive: true });
    await mkdir(join(this.root, 'blobs', algorithm), { recursive: true });
    const partial = this.partialPath(desc.digest);

    let restartedAfterMismatch = false;
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      let offset = (await sizeOf(partial)) ?? 0;
      if (offset > desc.size) {
        await unlink(partial);
        offset = 0;
      }
      let result: { digest: string; resumedFrom: number };
      try {
        tail.have(offset);
        result = await this.attempt(desc, partial, offset, openBlob, report, signal, tail);
      } catch (e) {
        if (signal.aborted) throw signal.reason as Error; // nobody waits: keep the partial, no retry
        if (isDiskFull(e)) {
          // Nothing can resume into a full disk, and the partial is what filled it: give the space
          // back (so the failure can be recorded) and say what happened.
          await rm(partial, { force: true });
          throw new DiskFullError(
            `disk full (ENOSPC) while downloading ${desc.digest} (${desc.size} bytes) into ${this.root}: free space there; the partial download was removed`,
            e,
          );
        }
        if (e instanceof RegistryError && e.unavailable && attempt < this.maxAttempts) {
          await new Promise((r) => setTimeout(r, this.retryDelayMs * attempt));
          continue;
        }
        throw e;
      }
      if (result.digest === desc.digest) {
        tail.verified();
        await (timings?.time('blob fsync', () => fsyncFile(partial)) ?? fsyncFile(partial));
        await rename(partial, target);
        return target;
      }
      await rm(partial, { force: true });
      // Bytes kept from an earlier attempt (or a crash) may be what is wrong: try once from zero.
      if (result.resumedFrom > 0 && !restartedAfterMismatch) {
        restartedAfterMismatch = true;
        tail.restart();
        continue;
      }
      throw new DigestMismatchError(`blob ${desc.digest}`, desc.digest, result.digest);
    }
  }

  private async attempt(
    desc: BlobDescriptor,
    partial: string,
    offset: number,
    openBlob: BlobOpener,
    report: BlobProgress,
    signal: AbortSignal,
    tail: BlobTail,
  ): Promise<{ digest: string; resumedFrom: number }> {
    const { algorithm } = splitDigest(desc.digest);
    const hash: Hash = createHash(algorithm);
    if (offset > 0) {
      for await (const chunk of createReadStream(partial, { end: offset - 1 })) hash.update(chunk as Buffer);
    }
    if (offset === desc.size) {
      if (offset === 0) await (await open(partial, 'w')).close();
      report(desc.size, desc.size);
      return { digest: `${algorithm}:${hash.digest('hex')}`, resumedFrom: offset };
    }

    const controller = new AbortController();
    const stop = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    try {
      return await this.transfer(desc, partial, offset, openBlob, report, controller, hash, tail);
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  private async transfer(
    desc: BlobDescriptor,
    partial: string,
    offset: number,
    openBlob: BlobOpener,
    report: BlobProgress,
    controller: AbortController,
    hash: Hash,
    tail: BlobTail,
  ): Promise<{ digest: string; resumedFrom: number }> {
    const { algorithm } = splitDigest(desc.digest);
    const res = await openBlob(offset, controller.signal);
    let have = offset;
    // The server ignored the Range (or answered another one): what it sends before `offset` is
    // in the partial already. Skipped rather than written again, so the file only ever grows
    // while it is followed (blob-tail.ts); a partial that differs from it fails the digest, and
    // the download starts over from 0.
    let skip = offset > 0 && (res.status !== 206 || res.start !== offset) ? offset - (res.status === 206 ? res.start : 0) : 0;
    if (skip < 0) {
      res.body.destroy();
      throw new InterruptedError(`the registry answered bytes from ${res.start} for a request from ${offset} for ${desc.digest}`);
    }
    const resumedFrom = offset;
    const ws = createWriteStream(partial, { flags: have === 0 ? 'w' : 'a' });
    let wsError: Error | undefined;
    ws.on('error', (e) => (wsError = e));
    let idle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(new Error(`no data for ${this.idleTimeoutMs} ms`)), this.idleTimeoutMs);
    };
    let oversize = false;
    try {
      arm();
      try {
        for await (const chunk of res.body) {
          let buf = chunk as Buffer;
          this.onReceived(buf.length);
          if (skip > 0) {
            const n = Math.min(skip, buf.length);
            skip -= n;
            buf = buf.subarray(n);
            if (buf.length === 0) continue;
          }
          have += buf.length;
          if (have > desc.size) {
            oversize = true;
            break;
          }
          hash.update(buf);
          if (wsError !== undefined) throw wsError;
          const end = have;
          // Followers read up to what is in the file: counted once the write is done.
          if (!ws.write(buf, (e) => (e === null || e === undefined ? tail.have(end) : undefined))) await once(ws, 'drain');
          arm();
          report(have, desc.size);
        }
      } catch (e) {
        if (wsError !== undefined) throw wsError;
        const reason = controller.signal.aborted ? (controller.signal.reason as Error).message : (e as Error).message;
        throw new InterruptedError(`download of ${desc.digest} interrupted after ${have} of ${desc.size} bytes: ${reason}`);
      }
      if (!oversize && have < desc.size) throw new InterruptedError(`download of ${desc.digest} ended after ${have} of ${desc.size} bytes`);
    } finally {
      clearTimeout(idle);
      res.body.destroy();
      // Keep what arrived: the next attempt re-hashes it and resumes after it.
      await endStream(ws);
    }
    if (wsError !== undefined) throw wsError;
    if (oversize) {
      // Not worth resuming: the registry serves something else under this digest.
      await rm(partial, { force: true });
      throw new Error(`blob ${desc.digest} is larger than the ${desc.size} bytes its descriptor says`);
    }
    return { digest: `${algorithm}:${hash.digest('hex')}`, resumedFrom };
  }

  /** Every verified blob with its mtime (garbage collection). */
  async list(): Promise<StoredBlob[]> {
    const out: StoredBlob[] = [];
    for (const algorithm of ['sha256', 'sha512']) {
      const dir = join(this.root, 'blobs', algorithm);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (isMissing(e)) continue;
        throw e;
      }
      for (const hex of names) {
        const path = join(dir, hex);
        try {
          out.push({ digest: `${algorithm}:${hex}`, path, mtimeMs: (await stat(path)).mtimeMs });
        } catch (e) {
          if (!isMissing(e)) throw e;
        }
      }
    }
    return out;
  }

  async remove(digest: string): Promise<void> {
    await rm(this.blobPath(digest), { force: true });
  }

  /** Removes temp files older than `before` (epoch ms) that no download is using; returns their paths. */
  async removeStaleTemp(before: number): Promise<string[]> {
    const dir = join(this.root, 'tmp');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
    const busy = new Set([...this.inflight.keys()].map((d) => splitDigest(d).hex));
    const removed: string[] = [];
    for (const name of names) {
      if (busy.has(name.split('.')[0] ?? '')) continue;
      const path = join(dir, name);
      try {
        if ((await stat(path)).mtimeMs >= before) continue;
      } catch (e) {
        if (isMissing(e)) continue;
        throw e;
      }
      await rm(path, { force: true, recursive: true });
      removed.push(path);
    }
    return removed;
  }
}
