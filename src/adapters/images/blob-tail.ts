// A download's bytes, readable while they arrive. The content store writes each blob to its
// `.partial` file (kept: resumes and the cache need it) and says here how many bytes of it are in
// the file; the unpacker follows the file up to that mark and waits for more, so a layer is
// gunzipped and unpacked while it downloads, and a layer whose download ran ahead (while the one
// below it was being applied) is read back from the page cache, never held in memory.
//
// The bytes are not verified until the download's digest matched: the stream ends (its last
// `next()` resolves done) only after that, so whoever reads it to the end read the blob; until
// then, nothing built from it may be trusted, and nothing is trusted before the fetch resolved
// (the blob fsynced and renamed). A download that throws its
// bytes away (a corrupt partial: it starts again from byte 0) ends its followers with
// TailRestartedError; one that fails ends them with its error (disk full, digest mismatch, abort).
import { open, type FileHandle } from 'node:fs/promises';

/** What was read is not the blob's start any more: the download threw it away and started over. */
export class TailRestartedError extends Error {
  constructor(digest: string) {
    super(`the download of ${digest} started again from byte 0: what was read of it is void`);
    this.name = 'TailRestartedError';
  }
}

const CHUNK = 256 * 1024;

export class BlobTail {
  /** Bytes at the start of the partial file that are written (in order from 0). */
  private writtenBytes = 0;
  private generationNo = 0;
  private finished = false;
  /** The digest matched: the bytes are the blob's (durable and renamed once `finished`). */
  private matched = false;
  private failed: Error | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly digest: string,
    readonly size: number,
    readonly partial: string,
    /** Where the file is once verified (renamed there: an open descriptor still reads it). */
    readonly blob: string,
  ) {}

  /** A tail of a blob already verified in the cache. */
  static complete(digest: string, size: number, blob: string): BlobTail {
    const tail = new BlobTail(digest, size, blob, blob);
    tail.finish();
    return tail;
  }

  get ended(): boolean {
    return this.finished || this.failed !== undefined;
  }

  /** The partial holds `bytes` (from a crash, an earlier attempt, or just written). */
  have(bytes: number): void {
    if (bytes <= this.writtenBytes) return;
    this.writtenBytes = bytes;
    this.wake();
  }

  /** The partial was thrown away; the download starts again from 0. */
  restart(): void {
    this.generationNo += 1;
    this.writtenBytes = 0;
    this.wake();
  }

  /** The digest matched (the file is fsynced and renamed next): followers may end. */
  verified(): void {
    this.matched = true;
    this.wake();
  }

  /** Verified, durable and renamed to `blob`. */
  finish(): void {
    this.finished = true;
    this.writtenBytes = this.size;
    this.wake();
  }

  fail(e: Error): void {
    this.failed ??= e;
    this.wake();
  }

  /** The blob's bytes from 0 to its size, as they are written. */
  async *read(signal?: AbortSignal): AsyncGenerator<Buffer> {
    const generation = this.generationNo;
    let fh: FileHandle | undefined;
    let pos = 0;
    try {
      while (pos < this.size) {
        signal?.throwIfAborted();
        if (this.failed !== undefined) throw this.failed;
        if (this.generationNo !== generation) throw new TailRestartedError(this.digest);
        // Read in chunks of CHUNK (or what is left), not per network packet: each read is a
        // thread-pool round trip, and small writes cost the gunzip and tar parser per call too.
        if (this.writtenBytes - pos < Math.min(CHUNK, this.size - pos) && !this.finished && !this.matched) {
          await this.changed(signal);
          continue;
        }
        if (pos >= this.writtenBytes) {
          await this.changed(signal);
          continue;
        }
        if (fh === undefined) {
          const path = this.finished ? this.blob : this.partial;
          try {
            fh = await open(path, 'r');
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
            // Renamed (verified) or removed (restart, failure) meanwhile: the state says which.
            if (!this.finished && !this.ended && this.generationNo === generation) await this.changed(signal);
            continue;
          }
        }
        const want = Math.min(CHUNK, this.writtenBytes - pos);
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await fh.read(buf, 0, want, pos);
        if (this.generationNo !== generation) throw new TailRestartedError(this.digest);
        if (bytesRead === 0) throw new Error(`${this.partial} is shorter than the ${this.writtenBytes} bytes written to it`);
        pos += bytesRead;
        yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
      }
      // The last bytes are in: the stream ends only once they are verified, so whoever reads it
      // to its end has read the blob's bytes (or gets the failure, or the restart, instead).
      // Not once they are durable: the fetch resolves then, and that is for the caller to await.
      while (!this.finished && !this.matched) {
        signal?.throwIfAborted();
        if (this.failed !== undefined) throw this.failed;
        if (this.generationNo !== generation) throw new TailRestartedError(this.digest);
        await this.changed(signal);
      }
    } finally {
      await fh?.close();
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves at the next change of state, or when `signal` aborts (the caller checks which). */
  private changed(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
