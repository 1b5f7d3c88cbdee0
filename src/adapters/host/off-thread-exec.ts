// execFile on a worker thread. Starting a process (fork + exec in libuv's uv_spawn) runs on the
// thread that asks for it, and from a daemon of ~200 MB it takes milliseconds, tens of them on a
// busy host; a profile under load (bench/load.ts) showed a third of the event loop's time inside
// ChildProcess.spawn for `ip`, every API call waiting behind it. On one worker thread of its own
// the spawns still happen, but the event loop that serves the API does not wait for them.
//
// Same contract as util.promisify(execFile) with utf8 output: resolves { stdout, stderr }, or
// rejects with an Error carrying stdout, stderr, code and signal as own properties.
import { Worker } from 'node:worker_threads';

export interface OffThreadExecOptions {
  /** Written to the process's stdin, which is then closed (closed at once when absent). */
  readonly input?: string;
  readonly timeoutMs?: number;
  readonly killSignal?: NodeJS.Signals;
  readonly maxBuffer?: number;
}

interface Reply {
  readonly id: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly error?: { readonly message: string; readonly code?: number | string; readonly signal?: string; readonly killed?: boolean };
}

// CommonJS, evaluated in the worker: nothing to resolve from dist/ or src/.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { execFile } = require('node:child_process');
parentPort.on('message', ({ id, file, args, options, input }) => {
  let child;
  try {
    child = execFile(file, args, options, (error, stdout, stderr) => {
      parentPort.postMessage({
        id, stdout: String(stdout), stderr: String(stderr),
        error: error ? { message: error.message, code: error.code, signal: error.signal ?? undefined, killed: error.killed } : undefined,
      });
    });
  } catch (error) {
    parentPort.postMessage({ id, stdout: '', stderr: '', error: { message: String(error && error.message || error), code: error && error.code } });
    return;
  }
  if (child.stdin) {
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  }
});
`;

type Pending = { resolve: (v: { stdout: string; stderr: string }) => void; reject: (e: Error) => void };

class ExecWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  run(file: string, args: readonly string[], options: OffThreadExecOptions): Promise<{ stdout: string; stderr: string }> {
    const worker = this.started();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Keeps the process alive only while a command runs, like a child process of its own would.
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({
        id,
        file,
        args: [...args],
        input: options.input,
        options: {
          encoding: 'utf8',
          ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
          ...(options.killSignal !== undefined ? { killSignal: options.killSignal } : {}),
          ...(options.maxBuffer !== undefined ? { maxBuffer: options.maxBuffer } : {}),
        },
      });
    });
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    // No loaders or profiler flags of the parent's: the worker only runs the source above.
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    worker.unref();
    worker.on('message', (reply: Reply) => this.settle(reply));
    const fail = (error: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      const waiting = [...this.pending.values()];
      this.pending.clear();
      for (const p of waiting) p.reject(error);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the exec worker thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private settle(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (p === undefined) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (reply.error === undefined) return p.resolve({ stdout: reply.stdout, stderr: reply.stderr });
    const { message, code, signal, killed } = reply.error;
    p.reject(Object.assign(new Error(message), { stdout: reply.stdout, stderr: reply.stderr, code, signal, killed }));
  }
}

const shared = new ExecWorker();

/** execFile(file, args) with utf8 output, started from a worker thread (see above). */
export function execFileOffThread(file: string, args: readonly string[], options: OffThreadExecOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return shared.run(file, args, options);
}
