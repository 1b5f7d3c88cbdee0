// Reads a grpc-js server stream message by message, with timeouts, so a test that expects a
// stream to end (or an event to come) fails instead of hanging.
import type * as grpc from '@grpc/grpc-js';

export interface StreamReader<T> {
  /** The next message; rejects when the stream ends first or nothing comes in time. */
  next(timeoutMs?: number): Promise<T>;
  /** Resolves with the messages not yet read once the stream ends (error undefined when OK). */
  end(timeoutMs?: number): Promise<{ rest: T[]; error: grpc.ServiceError | undefined }>;
  /** Messages received so far that next() has not returned. */
  pending(): readonly T[];
}

export function readStream<T>(stream: grpc.ClientReadableStream<T>): StreamReader<T> {
  const buffered: T[] = [];
  let finished: { error: grpc.ServiceError | undefined } | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  stream.on('data', (m: T) => {
    buffered.push(m);
    notify();
  });
  stream.on('error', (error: grpc.ServiceError) => {
    finished = { error };
    notify();
  });
  stream.on('end', () => {
    finished ??= { error: undefined };
    notify();
  });

  const waitChange = (deadline: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), Math.max(0, deadline - Date.now()));
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  return {
    async next(timeoutMs = 5000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const item = buffered.shift();
        if (item !== undefined) return item;
        if (finished !== undefined) throw new Error(`stream ended (${finished.error?.message ?? 'OK'}) before the next message`);
        await waitChange(deadline, 'the next message');
      }
    },
    async end(timeoutMs = 5000): Promise<{ rest: T[]; error: grpc.ServiceError | undefined }> {
      const deadline = Date.now() + timeoutMs;
      while (finished === undefined) await waitChange(deadline, 'the end of the stream');
      return { rest: buffered.splice(0), error: finished.error };
    },
    pending: () => buffered,
  };
}
