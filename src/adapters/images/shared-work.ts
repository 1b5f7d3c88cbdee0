// Work that several callers wait for (one pull of an image, one download of a blob): it runs once,
// each caller can stop waiting (its AbortSignal: a delete, a shutdown), and the work itself is
// aborted once every caller has stopped waiting, so no transfer goes on that nobody wants.
export class SharedWork<T> {
  private readonly controller = new AbortController();
  private waiters = 0;
  readonly promise: Promise<T>;

  constructor(run: (signal: AbortSignal) => Promise<T>) {
    this.promise = run(this.controller.signal);
    this.promise.catch(() => undefined); // each waiter gets the rejection
  }

  /** Aborted: a new caller must start the work again rather than join this one. */
  get abandoned(): boolean {
    return this.controller.signal.aborted;
  }

  /** The work's result, or a rejection with the signal's reason as soon as it aborts. */
  wait(signal?: AbortSignal): Promise<T> {
    if (signal === undefined) {
      // A caller that cannot stop waiting keeps the work alive until it ends.
      this.waiters += 1;
      return this.promise.finally(() => (this.waiters -= 1));
    }
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    this.waiters += 1;
    return new Promise<T>((resolve, reject) => {
      let waiting = true;
      const leave = (): boolean => {
        if (!waiting) return false;
        waiting = false;
        this.waiters -= 1;
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (!leave()) return;
        reject(signal.reason as Error);
        if (this.waiters === 0) this.controller.abort(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.promise.then(
        (value) => leave() && resolve(value),
        (e: unknown) => leave() && reject(e as Error),
      );
    });
  }
}
