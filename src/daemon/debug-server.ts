// The debug endpoint: `/metrics` (Prometheus), `/healthz` and `/readyz`, unauthenticated like the
// original's. It listens from the start of the daemon, so an orchestrator sees `/readyz` answer
// 503 until the store is open and the APIs serve, and again once a shutdown begins.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { errorMessage } from '../core/result.js';
import { splitHostPort } from './endpoint.js';

export interface DebugServer {
  readonly port: number;
  /** Whether the daemon serves; `reason` is what /readyz answers while it doesn't. */
  setReady(ready: boolean, reason?: string): void;
  /** What /healthz runs: throws when the daemon is unwell (the store doesn't answer). */
  setHealthCheck(check: () => void): void;
  close(): Promise<void>;
}

export async function startDebugServer(endpoint: string, registry: Registry): Promise<DebugServer> {
  const { host, port } = splitHostPort(endpoint);
  let ready = false;
  let notReadyReason = 'starting: the store is not open yet';
  let healthCheck: (() => void) | undefined;
  const text = (code: number, body: string): [number, Record<string, string>, string] => [code, { 'content-type': 'text/plain; charset=utf-8' }, body];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://debug').pathname;
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (e: unknown) => res.writeHead(500).end(errorMessage(e)),
      );
      return;
    }
    let answer: [number, Record<string, string>, string];
    if (path === '/readyz') answer = ready ? text(200, 'ok\n') : text(503, `not ready: ${notReadyReason}\n`);
    else if (path === '/healthz') {
      try {
        if (healthCheck === undefined) throw new Error('starting: the store is not open yet');
        healthCheck();
        answer = text(200, 'ok\n');
      } catch (e) {
        answer = text(503, `unhealthy: ${errorMessage(e)}\n`);
      }
    } else answer = text(404, 'not found\n');
    res.writeHead(answer[0], answer[1]).end(req.method === 'HEAD' ? undefined : answer[2]);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    setReady(next, reason) {
      ready = next;
      if (reason !== undefined) notReadyReason = reason;
    },
    setHealthCheck(check) {
      healthCheck = check;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
