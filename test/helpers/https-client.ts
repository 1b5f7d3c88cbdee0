// One HTTPS request on its own connection with node:https (fetch takes no CA or client cert), for
// tests of the HTTP gateway's TLS: resolves with the answer, or rejects with the transport error.
import https from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface HttpsCallOptions {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Trusted CA; the client always verifies the server. */
  readonly ca?: Buffer;
  /** Client certificate and key, for mTLS. */
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
  readonly maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  readonly timeoutMs?: number;
}

export interface HttpsAnswer {
  readonly status: number;
  readonly text: string;
  /** The negotiated protocol, e.g. TLSv1.3. */
  readonly protocol: string | null;
}

export function httpsCall(url: string, options: HttpsCallOptions = {}): Promise<HttpsAnswer> {
  const { method = 'GET', headers = {}, body, timeoutMs = 5000, ...tls } = options;
  return new Promise((resolve, reject) => {
    // agent: false gives each call a fresh connection, so one call's certificate can't serve another.
    const req = https.request(url, { method, headers, agent: false, rejectUnauthorized: true, ...tls }, (res) => {
      const protocol = (res.socket as TLSSocket).getProtocol();
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), protocol }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Awaits a call that must fail at the transport and returns its error. */
export async function httpsFailure(promise: Promise<HttpsAnswer>): Promise<NodeJS.ErrnoException> {
  return promise.then(
    (answer) => {
      throw new Error(`expected a transport failure, got HTTP ${answer.status}: ${answer.text.slice(0, 200)}`);
    },
    (e: unknown) => e as NodeJS.ErrnoException,
  );
}
