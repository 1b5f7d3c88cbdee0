// A long-lived `ip -batch -` process fed one request (a few batch lines) at a time, its answers
// read back from its pipes. Each `ip` process costs ~5-12 ms to start while the kernel work of a
// tap or macvtap is ~0.4 ms; kept running, a request costs a pipe round trip and the netlink
// calls themselves.
//
// How a request's end is found, since `ip -batch` prints nothing between commands:
// - `force` sessions (`-force`: keep going past a failed line; for reads, where a missing device
//   is the normal answer) end every request with a `link show` of a name longer than any
//   interface name can be, which always fails with "Command failed -:<its line>" on stderr. Once
//   that line is read, stderr holds every failure of the request (one pipe, in order), so the
//   number of JSON lines its successful shows print on stdout is known, and those are awaited
//   (changes, such as the deleter's `link del`, print nothing).
// - other sessions (for changes: ip stops at the first failed line, so nothing after a failed
//   create ever runs) end every request with a show, whose one JSON line on stdout is the end;
//   a failure ends the process, and its exit ends the request ("Command failed -:<line>" names
//   the command; an argument ip cannot resolve exits without naming it). The next request starts
//   a new process.
// ip keeps a name -> ifindex cache for its whole life, so a device deleted (or deleted and made
// again) by another process is still found under its old ifindex, and a command naming it fails
// with ENODEV (ifindexes are not reused, so it never finds another device instead). restart()
// lets a caller retry on a fresh process when it sees ENODEV (iproute2.ts does, where a retry is
// safe).
// Requests run one at a time per session (the kernel serialises link changes under RTNL anyway).
// A request that takes longer than the timeout kills the process (by its pid) and fails.
// While idle the process does not keep the daemon alive; it exits when its stdin closes.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

/** No interface is named this: names are at most 15 bytes. */
export const SENTINEL_NAME = 'flintlock-batch-end';
/** With `-json`, a show prints one JSON document (one line); a change prints nothing. */
const PRINTS = /^\S+\s+show(\s|$)/;
const FAILED_LINE = /Command failed -:(\d+)/g;

export interface IpBatchSessionOptions {
  readonly bin: string;
  /** Everything before `-batch -` (`-n <netns>`, `-json`, `-details`); `-force` is added for force sessions. */
  readonly args: readonly string[];
  readonly force: boolean;
  readonly timeoutMs: number;
}

export interface BatchAnswer {
  /** What the request's show commands printed, one JSON document per line. */
  readonly lines: readonly string[];
  /** The request's stderr: for force sessions, the failures of the lines that failed. */
  readonly stderr: string;
}

/** A request that failed or whose process died. */
export class IpBatchFailure extends Error {
  override readonly name = 'IpBatchFailure';
  constructor(
    message: string,
    readonly stderr: string,
    readonly stdout: string,
    readonly exitCode: number | string | undefined,
    /** The index of the failing command within the request, when ip named its line. */
    readonly step: number | undefined,
  ) {
    super(message);
  }
}

interface InFlight {
  readonly commands: readonly string[];
  /** Line numbers (1-based, of this process) of the request's commands that print a line when they succeed. */
  readonly printing: readonly number[];
  /** Line numbers (1-based, of this process) of the request's first command and its end marker. */
  readonly first: number;
  readonly end: number;
  readonly out: string[];
  err: string;
  readonly resolve: (a: BatchAnswer) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  timedOut: boolean;
}

export class IpBatchSession {
  private child: ChildProcessWithoutNullStreams | undefined;
  private lines = 0;
  private stdoutRest = '';
  private current: InFlight | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  /** Every word this process was sent: the names its cache may hold (a bound on its growth). */
  private readonly seen = new Set<string>();
  private stale = false;
  private spawned = 0;

  constructor(private readonly options: IpBatchSessionOptions) {}

  /** The argv a session runs, for messages. */
  get argv(): readonly string[] {
    return [...this.options.args, ...(this.options.force ? ['-force'] : []), '-batch', '-'];
  }

  /**
   * Runs batch lines (already quoted for `ip -batch`). A non-force request must end with a
   * command that prints one line (a show): that line is how its end is seen.
   */
  request(commands: readonly string[]): Promise<BatchAnswer> {
    const run = this.tail.then(() => this.run(commands));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Ends the process (stdin closed: ip exits after the line it is on). */
  close(): void {
    this.child?.stdin.end();
  }

  /** Counts the processes started: a new one has an empty name cache. */
  get generation(): number {
    return this.spawned;
  }

  /** The next request starts a fresh process (its cache empty). */
  restart(): void {
    this.stale = true;
  }

  private run(commands: readonly string[]): Promise<BatchAnswer> {
    return new Promise((resolve, reject) => {
      const child = this.started();
      const lines = this.options.force ? [...commands, `link show dev ${SENTINEL_NAME}`] : commands;
      for (const line of commands) for (const word of line.split(/\s+/)) this.seen.add(word.replace(/^["']|["']$/g, ''));
      const first = this.lines + 1;
      this.lines += lines.length;
      const timer = setTimeout(() => {
        if (this.current !== flight) return;
        flight.timedOut = true;
        // By pid, the one this session started; its exit ends the request.
        child.kill('SIGKILL');
      }, this.options.timeoutMs);
      const printing = commands.flatMap((line, i) => (PRINTS.test(line) ? [first + i] : []));
      const flight: InFlight = { commands, printing, first, end: this.lines, out: [], err: '', resolve, reject, timer, timedOut: false };
      this.current = flight;
      this.setActive(true);
      child.stdin.write(lines.join('\n') + '\n');
    });
  }

  private started(): ChildProcessWithoutNullStreams {
    // Bounded: a process that has seen very many names is replaced too.
    if (this.child !== undefined && (this.stale || this.seen.size > 10_000)) {
      const old = this.child;
      this.child = undefined;
      old.stdin.end();
    }
    this.stale = false;
    if (this.child !== undefined) return this.child;
    this.seen.clear();
    const child = spawn(this.options.bin, this.argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.spawned++;
    this.child = child;
    this.lines = 0;
    this.stdoutRest = '';
    child.stdin.on('error', () => undefined); // EPIPE after ip died: its exit reports why
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const parts = (this.stdoutRest + chunk).split('\n');
      this.stdoutRest = parts.pop() ?? '';
      this.current?.out.push(...parts.filter((l) => l !== ''));
      this.check();
    });
    child.stderr.on('data', (chunk: string) => {
      if (this.current !== undefined) this.current.err += chunk;
      this.check();
      // Without -force ip stops at a failure: it exits, but through a wrapper script (tests) its
      // exit may not end the process this session started, so that one is ended here.
      if (!this.options.force && this.current !== undefined && /Command failed -:\d+|^Error: |^Cannot /m.test(this.current.err)) child.kill('SIGKILL');
    });
    child.on('error', (e) => {
      // Could not start (ENOENT, EACCES): no exit follows.
      this.ended(child, undefined, undefined, e);
    });
    // The pid's exit, not 'close': a wrapper's other processes may hold the pipes until stdin ends.
    child.on('exit', (code, signal) => {
      child.stdin.end();
      // What is still in the pipes arrives before 'close'.
      child.once('close', () => this.ended(child, code ?? undefined, signal ?? undefined, undefined));
    });
    return child;
  }

  /** Resolves the request in flight once its end has been read. */
  private check(): void {
    const flight = this.current;
    if (flight === undefined) return;
    if (this.options.force) {
      const failed = failedLines(flight.err);
      if (!failed.includes(flight.end)) return;
      const printed = flight.printing.filter((n) => !failed.includes(n)).length;
      if (flight.out.length < printed) return;
    } else if (flight.out.length < 1) {
      return;
    }
    this.finish(flight);
    flight.resolve({ lines: flight.out, stderr: flight.err });
  }

  private ended(
    child: ChildProcessWithoutNullStreams,
    code: number | undefined,
    signal: string | undefined,
    spawnError: NodeJS.ErrnoException | undefined,
  ): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.stdoutRest !== '') this.current?.out.push(this.stdoutRest);
    this.stdoutRest = '';
    const flight = this.current;
    if (flight === undefined) return;
    // A last line read with the exit may have completed it.
    this.check();
    if (this.current !== flight) return;
    this.finish(flight);
    const line = failedLines(flight.err).find((n) => n >= flight.first && n <= flight.first + flight.commands.length - 1);
    const step = line === undefined ? undefined : line - flight.first;
    const text = flight.timedOut
      ? `no answer within ${this.options.timeoutMs} ms; killed`
      : (spawnError?.message ?? (flight.err.replace(FAILED_LINE, '').trim() || (signal !== undefined ? `killed by ${signal}` : `exited with ${code ?? '?'}`)));
    flight.reject(new IpBatchFailure(text, flight.err, flight.out.join('\n'), spawnError !== undefined ? spawnError.code : (code ?? signal), step));
  }

  private finish(flight: InFlight): void {
    clearTimeout(flight.timer);
    this.current = undefined;
    this.setActive(false);
  }

  /** Only a request in flight keeps the event loop (and so the daemon or a test) alive. */
  private setActive(active: boolean): void {
    const child = this.child;
    if (child === undefined) return;
    for (const handle of [child, child.stdout, child.stderr, child.stdin] as { ref?: () => void; unref?: () => void }[]) {
      if (active) handle.ref?.();
      else handle.unref?.();
    }
  }
}

function failedLines(stderr: string): number[] {
  return [...stderr.matchAll(FAILED_LINE)].map((m) => Number(m[1]));
}
