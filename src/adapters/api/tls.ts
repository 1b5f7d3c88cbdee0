// Transport security shared by every API port (COMPAT §2.10): the gRPC server and the HTTP
// gateway read the same files into the same options here, so no port can end up serving the API
// with less protection than the operator configured (a plaintext or unverified side door).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { errorMessage } from '../../core/result.js';
import { TLS_FILE_KEYS } from '../../config/paths.js';

export interface TlsSettings {
  readonly insecure: boolean;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly clientCaFile?: string;
  readonly clientValidate: boolean;
}

/** What a TLS server of the API needs: the secure context, and whether client certs are demanded. */
export interface ServerTls {
  /** cert, key, ca (when configured) and the TLS 1.3 minimum. */
  readonly context: SecureContextOptions;
  /** requestCert and rejectUnauthorized together: a missing or untrusted client cert fails the handshake. */
  readonly requireClientCert: boolean;
}

/** How a port is protected, for start-up logs. */
export function tlsMode(settings: TlsSettings): 'plaintext' | 'TLS' | 'mTLS' {
  if (settings.insecure) return 'plaintext';
  return settings.clientValidate ? 'mTLS' : 'TLS';
}

type TlsFileKey = keyof typeof TLS_FILE_KEYS;

/** What a PEM file holds, by its first armour line, for saying what a wrong file is instead. */
function pemKind(pem: Buffer): 'certificate' | 'private key' | undefined {
  const text = pem.toString('latin1');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return 'private key';
  if (text.includes('-----BEGIN CERTIFICATE-----')) return 'certificate';
  return undefined;
}

/** Reads one configured file and checks it parses, so a bad file is named by its key and path. */
async function readPem(key: TlsFileKey, path: string, parse: (pem: Buffer) => unknown): Promise<Buffer> {
  const what = `set ${key} to ${TLS_FILE_KEYS[key]}`;
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw new Error(`${key} ${path} is a directory: ${what}`, { cause: e });
    throw new Error(`cannot read ${key} file ${path}: ${errorMessage(e)}; ${what}`, { cause: e });
  }
  try {
    parse(pem);
  } catch (e) {
    const holds = pemKind(pem);
    const instead = holds !== undefined ? ` (it holds a ${holds})` : '';
    throw new Error(`invalid ${key} file ${path}${instead}: ${errorMessage(e)}; ${what}`, { cause: e });
  }
  return pem;
}

/** tls-cert holding a key and tls-key a certificate: said as one mistake, not two parse errors. */
async function swappedProblem(certFile: string, keyFile: string): Promise<string | undefined> {
  const [cert, key] = await Promise.all([readFile(certFile).catch(() => undefined), readFile(keyFile).catch(() => undefined)]);
  if (cert === undefined || key === undefined) return undefined;
  if (pemKind(cert) !== 'private key' || pemKind(key) !== 'certificate') return undefined;
  return `tls-cert ${certFile} holds a private key and tls-key ${keyFile} a certificate: they are swapped; set tls-cert to the certificate file and tls-key to its key file`;
}

// X509Certificate reads the first certificate: a CA file without one would otherwise be accepted
// as an empty trust store, refusing every client with no hint why.
const certificate = (pem: Buffer): unknown => new X509Certificate(pem);
const privateKey = (pem: Buffer): unknown => createPrivateKey(pem);

/**
 * The secure-context options for an API server, or undefined when `insecure` is set. TLS 1.3 is
 * the minimum (the Go original and its clients use 1.3 only), set on the server's own options:
 * the process-wide tls.DEFAULT_MIN_VERSION would also constrain outbound clients (registries).
 */
export async function loadServerTls(settings: TlsSettings): Promise<ServerTls | undefined> {
  if (settings.insecure) return undefined;
  if (settings.certFile === undefined) throw new Error('certificate file path is required when running securely (set tls-cert)');
  if (settings.keyFile === undefined) throw new Error('certificate key file path is required when running securely (set tls-key)');
  // Without a CA, Node would verify client certs against its public roots: not what mTLS means here.
  if (settings.clientValidate && settings.clientCaFile === undefined)
    throw new Error(`tls-client-validate (mTLS) needs tls-client-ca: set tls-client-ca to ${TLS_FILE_KEYS['tls-client-ca']}`);
  const swapped = await swappedProblem(settings.certFile, settings.keyFile);
  if (swapped !== undefined) throw new Error(swapped);
  const [cert, key, ca] = await Promise.all([
    readPem('tls-cert', settings.certFile, certificate),
    readPem('tls-key', settings.keyFile, privateKey),
    settings.clientCaFile !== undefined ? readPem('tls-client-ca', settings.clientCaFile, certificate) : Promise.resolve(undefined),
  ]);
  const context: SecureContextOptions = { cert, key, ...(ca !== undefined ? { ca } : {}), minVersion: 'TLSv1.3' };
  // Built once here so a key that does not match the certificate fails at start-up, by name,
  // rather than inside a server's listen.
  try {
    createSecureContext(context);
  } catch (e) {
    throw new Error(`tls-cert ${settings.certFile} and tls-key ${settings.keyFile} do not form a usable pair: ${errorMessage(e)}`, { cause: e });
  }
  return { context, requireClientCert: settings.clientValidate };
}

/** The same settings as options for node:https / node:tls servers. */
export function tlsServerOptions(tls: ServerTls): TlsOptions {
  return { ...tls.context, requestCert: tls.requireClientCert, rejectUnauthorized: tls.requireClientCert };
}
