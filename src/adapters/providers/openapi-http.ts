// A tiny JSON client for a VMM's REST API over its unix socket (Firecracker, Cloud Hypervisor),
// plus the few helpers both API-socket providers share: waiting for the socket, waiting for a
// process to end, rendering the kernel command line and quoting the tail of a log in errors.
//
// Every request carries an explicit Content-Length (0 when there is no body): the VMMs' small
// HTTP servers (micro_http) don't speak chunked transfer encoding, which Node would otherwise
// use for a PUT without a length. Each request has its own connection (no keep-alive agent), so
// nothing holds the daemon's event loop once a call returned.
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { open } from 'node:fs/promises';
import type { ProcessTable, VmmProcess } from '../../core/ports.js';

export interface ApiResponse {
  readonly status: number;
  /** The parsed body; undefined when it was empty or not JSON. */
  readonly json: unknown;
  /** The raw body. */
  readonly text: string;
}

/** A request the VMM answered with a non-2xx status. */
export class VmmApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    /** Firecracker's `fault_message`, else the body text (Cloud Hypervisor answers plain text). */
    readonly detail: string,
  ) {
    super(`${method} ${path} failed with HTTP ${status}${detail !== '' ? `: ${detail}` : ''}`);
    this.name = 'VmmApiError';
  }
}

const MAX_DETAIL = 2000;

/** What the VMM said went wrong: `fault_message` when the body has one, else the trimmed text. */
export function errorDetail(text: string, json: unknown): string {
  if (typeof json === 'object' && json !== null && 'fault_message' in json) {
    const fault = json.fault_message;
    if (typeof fault === 'string') return fault;
  }
  const trimmed = text.trim();
  return trimmed.length > MAX_DETAIL ? `${trimmed.slice(0, MAX_DETAIL)}...` : trimmed;
}

export class UnixSocketApiClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 10_000,
  ) {}

  /** Sends one request and returns whatever status came back; rejects only on transport errors. */
  raw(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<ApiResponse>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socketPath,
          method,
          path,
          agent: false,
          timeout: this.timeoutMs,
          headers: {
            Accept: 'application/json',
            'Content-Length': String(payload?.length ?? 0),
            ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            if (text.trim() !== '') {
              try {
                json = JSON.parse(text) as unknown;
              } catch {
                json = undefined;
              }
            }
            resolve({ status: res.statusCode ?? 0, json, text });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer from ${this.socketPath} within ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(new Error(`${method} ${path} on ${this.socketPath}: ${err.message}`)));
      req.end(payload);
    });
  }

  /** Sends one request; a non-2xx answer rejects with a VmmApiError carrying the VMM's message. */
  async request(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const res = await this.raw(method, path, body);
    if (res.status < 200 || res.status >= 300) throw new VmmApiError(method, path, res.status, errorDetail(res.text, res.json));
    return res;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export interface WaitForSocketOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  /** Checked between attempts: once it says false the wait fails at once (the VMM died). */
  readonly stillRunning?: () => Promise<boolean>;
  /** Names the socket's owner in errors. */
  readonly what?: string;
  /** Stops the wait (a delete, a shutdown): rejects with its reason. */
  readonly signal?: AbortSignal;
}

/** Waits until a connection to the unix socket succeeds (the file alone may exist before listen). */
export async function waitForSocket(socketPath: string, options: WaitForSocketOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const what = options.what ?? 'the VMM';
  for (;;) {
    options.signal?.throwIfAborted();
    if (await canConnect(socketPath)) return;
    if (options.stillRunning !== undefined && !(await options.stillRunning())) {
      throw new Error(`${what} exited before its API socket ${socketPath} accepted connections`);
    }
    if (Date.now() > deadline) throw new Error(`${what}'s API socket ${socketPath} did not accept connections within ${options.timeoutMs} ms`);
    await sleep(options.intervalMs ?? 20);
  }
}

/** Polls until the process is gone; true when it ended within timeoutMs. */
export async function waitForExit(processes: ProcessTable, process: VmmProcess, timeoutMs: number, intervalMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await processes.isAlive(process))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}

/** SIGKILL (only while the pid is still that process) and wait a little for it to be gone. */
export async function killAndWait(processes: ProcessTable, process: VmmProcess, timeoutMs = 2000): Promise<boolean> {
  if (!(await processes.isAlive(process))) return true;
  await processes.signal(process, 'SIGKILL');
  return waitForExit(processes, process, timeoutMs);
}

/** The last bytes of a log file (for start-up errors); empty when it can't be read. */
export async function tailOfFile(path: string, maxBytes = 2000): Promise<string> {
  try {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, maxBytes);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      return buffer.toString('utf8').trim();
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}
