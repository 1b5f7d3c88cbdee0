// One stream's back-pressure (docs/adr/0011): messages go to the stream while it accepts them;
// once `write()` returns false they wait here, up to a bound in messages and bytes, until 'drain'.
// A stream whose backlog would pass the bound is given up (the caller ends it with a status), so
// a client that stops reading costs at most the bound plus what grpc-js and HTTP/2 hold.
//
// An initial sequence (a snapshot) is pulled only as the stream drains: it is already in memory
// as the VMs it came from, and converting it all at once would hold it twice.

export interface MessageSink<T> {
  write(message: T): boolean;
  on(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}

export interface BacklogLimits {
  /** Messages waiting at most (beyond what the stream itself buffers). */
  readonly maxMessages: number;
  /** Encoded bytes waiting at most; keep it above the largest message. */
  readonly maxBytes: number;
}

export interface Backlog {
  readonly messages: number;
  readonly bytes: number;
}

export class BoundedWriter<T> {
  private initial: Iterator<T> | undefined;
  private queue: { readonly message: T; readonly size: number }[] = [];
  private head = 0;
  private bytes = 0;
  /** Until start(), everything pushed waits behind the initial sequence. */
  private blocked = true;
  private initialSent: (() => void) | undefined;
  private initialFailed: ((error: unknown) => void) | undefined;
  private stopped = false;
  private readonly onDrain = (): void => {
    this.blocked = false;
    this.flush();
  };

  constructor(
    private readonly sink: MessageSink<T>,
    private readonly limits: BacklogLimits,
    private readonly sizeOf: (message: T) => number,
    /** Called once, with the backlog that did not fit, when the stream is given up. */
    private readonly onOverflow: (backlog: Backlog) => void,
  ) {
    sink.on('drain', this.onDrain);
  }

  /**
   * Starts with `messages`, sent before anything `push`ed (pulled as the stream drains). `sent`
   * runs once the last of them is handed to the stream; `failed` when producing one throws (the
   * writer has stopped then: a throw from a 'drain' listener would take the daemon down).
   */
  start(messages: Iterable<T>, callbacks: { readonly sent?: () => void; readonly failed?: (error: unknown) => void } = {}): void {
    this.initial = messages[Symbol.iterator]();
    this.initialSent = callbacks.sent;
    this.initialFailed = callbacks.failed;
    this.blocked = false;
    this.flush();
  }

  /** Sends, or queues behind what is waiting; gives the stream up when the bound would be passed. */
  push(message: T): void {
    if (this.stopped) return;
    // Not blocked means nothing is waiting: flush() runs until the queue is empty or the stream is full.
    if (!this.blocked) {
      this.blocked = !this.sink.write(message);
      return;
    }
    const size = this.sizeOf(message);
    const waiting = this.queue.length - this.head;
    if (waiting + 1 > this.limits.maxMessages || this.bytes + size > this.limits.maxBytes) {
      const backlog = { messages: waiting + 1, bytes: this.bytes + size };
      this.stop();
      this.onOverflow(backlog);
      return;
    }
    this.queue.push({ message, size });
    this.bytes += size;
  }

  /** What waits here now (not what grpc-js or HTTP/2 hold). */
  backlog(): Backlog {
    return { messages: this.queue.length - this.head, bytes: this.bytes };
  }

  /** Drops everything waiting and sends nothing more. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.sink.off('drain', this.onDrain);
    this.initial = undefined;
    this.initialSent = undefined;
    this.initialFailed = undefined;
    this.queue = [];
    this.head = 0;
    this.bytes = 0;
  }

  private flush(): void {
    while (!this.blocked && !this.stopped) {
      const next = this.next();
      if (next === undefined) return;
      this.blocked = !this.sink.write(next.message);
    }
  }

  private pullInitial(initial: Iterator<T>): IteratorResult<T> | undefined {
    try {
      return initial.next();
    } catch (e) {
      const failed = this.initialFailed;
      this.stop();
      failed?.(e);
      return undefined;
    }
  }

  private next(): { message: T } | undefined {
    if (this.initial !== undefined) {
      const item = this.pullInitial(this.initial);
      if (item === undefined) return undefined;
      if (item.done !== true) return { message: item.value };
      this.initial = undefined;
      const sent = this.initialSent;
      this.initialSent = undefined;
      sent?.();
      if (this.stopped) return undefined;
    }
    if (this.head >= this.queue.length) return undefined;
    const entry = this.queue[this.head];
    this.head += 1;
    if (entry === undefined) return undefined;
    this.bytes -= entry.size;
    // Compact now and then, so a long-lived stream's array does not grow with everything it sent.
    if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return entry;
  }
}

/**
 * Sends `messages` as the stream drains (never more than it accepts at once), then calls
 * `onSent` (or `onFailed` when producing one throws). Returns a function that stops early (the
 * client went away).
 */
export function sendPaced<T>(sink: MessageSink<T>, messages: Iterable<T>, onSent: () => void, onFailed: (error: unknown) => void): () => void {
  const writer = new BoundedWriter<T>(
    sink,
    { maxMessages: 0, maxBytes: 0 },
    () => 0,
    () => undefined,
  );
  writer.start(messages, {
    sent: () => {
      writer.stop();
      onSent();
    },
    failed: onFailed,
  });
  return () => writer.stop();
}
