// What to do about a connection that failed: grpc-js reports TLS and socket failures as
// UNAVAILABLE with OpenSSL's or the socket's text, which says what broke but not which fl flag
// fixes it. Each hint names the flag (or the daemon's setting) to look at. The patterns are the
// messages grpc-js 1.14 and Node 20's OpenSSL give (test/integration/fl-tls.test.ts makes each).
import * as grpc from '@grpc/grpc-js';
import type { RpcError } from './client.js';

export interface HintContext {
  /** fl connected with TLS (--tls or a --tls-* option). */
  readonly tls: boolean;
  /** A client certificate was sent (--tls-cert/--tls-key). */
  readonly clientCert?: boolean;
  readonly host: string;
}

/** OpenSSL's `8053...:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/...` as `wrong version number`. */
export function plainOpenSslText(details: string): string {
  return details
    .replace(/(?:Error: )?[0-9A-F]{8,}:error:[0-9A-F]+:[^:]*:[^:]*:([^:\n]+):[^\s]*(?:\s*SSL alert number \d+)?/g, '$1')
    .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

export function connectionHint(error: RpcError, context: HintContext): string | undefined {
  if (error.code !== grpc.status.UNAVAILABLE && error.code !== grpc.status.DEADLINE_EXCEEDED) return undefined;
  const text = error.details;
  const port = context.host.slice(context.host.lastIndexOf(':') + 1);
  if (/unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer|certificate signature failure/i.test(text)) {
    return "the server's certificate is not signed by a CA fl trusts: pass the CA that signed it with --tls-ca <file>";
  }
  if (/Hostname\/IP does not match|altnames/i.test(text)) {
    return `the server's certificate does not name ${context.host.replace(/:\d+$/, '')}: set --host to a name or address in its subjectAltName (or give the server a certificate that names this one)`;
  }
  if (/certificate has expired|not yet valid/i.test(text)) return "the server's certificate is expired or not yet valid: renew it (or check this host's clock)";
  if (/wrong version number|packet length too long|http request/i.test(text)) {
    return `${context.host} does not speak TLS: leave out --tls and the --tls-* options (the daemon runs with insecure: true), or check the port in --host`;
  }
  if (/certificate required/i.test(text)) return 'the server wants a client certificate (mTLS): pass --tls-cert <file> and --tls-key <file>';
  if (/unknown ca|bad certificate|certificate unknown|decrypt error/i.test(text)) {
    return 'the server refused the client certificate: --tls-cert/--tls-key must be signed by the CA the daemon trusts (its tls-client-ca)';
  }
  if (/ECONNREFUSED/.test(text))
    return `nothing listens at ${context.host}: check the address and port in --host (flintlockd's default is 9090) and that flintlockd runs`;
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/i.test(text))
    return `the host name in --host (${context.host}) does not resolve: check its spelling, or use an address`;
  if (/EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/.test(text) || error.code === grpc.status.DEADLINE_EXCEEDED) {
    return `no route to ${context.host}, or a firewall drops it: check the address in --host`;
  }
  // grpc-js's generic failure: the handshake ended without a reason it passes on.
  if (/Failed to connect|Connection dropped|ECONNRESET|socket hang up|GOAWAY/i.test(text)) {
    if (!context.tls) return `the server may want TLS: pass --tls-ca <file> (or --tls to trust the system CAs); port ${port} is flintlockd's gRPC port?`;
    if (context.clientCert === true) return 'the server refused the TLS handshake: is --tls-cert/--tls-key signed by the CA the daemon trusts (tls-client-ca)?';
    return `the TLS handshake failed: check --tls-ca, and whether the daemon wants a client certificate (--tls-cert/--tls-key)`;
  }
  return undefined;
}
