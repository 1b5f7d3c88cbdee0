// A throwaway PKI made with the openssl CLI for tests of the API's TLS and mTLS (EC P-256, one
// day): the server cert names localhost and 127.0.0.1; "other-ca" signs a client the CA doesn't know.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A CA with a server and a client cert, and a second CA with a client cert the first doesn't trust. */
export interface Pki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly client: { readonly cert: Buffer; readonly key: Buffer };
  readonly untrustedClient: { readonly cert: Buffer; readonly key: Buffer };
}

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

/** Writes the PKI into `dir` (which the caller creates and removes). */
export function makePki(dir: string): Pki {
  const cnf = join(dir, 'openssl.cnf');
  writeFileSync(cnf, OPENSSL_CONFIG);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const key = (name: string): void => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  let serial = 1;
  const ca = (name: string): void => {
    key(name);
    openssl('req', '-new', '-x509', '-config', cnf, '-extensions', 'ca', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-days', '1', '-out', `${name}.crt`);
  };
  const leaf = (name: string, cn: string, signer: string, profile: 'server' | 'client'): void => {
    key(name);
    openssl('req', '-new', '-config', cnf, '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${signer}.crt`,
      '-CAkey',
      `${signer}.key`,
      '-set_serial',
      String((serial += 1)),
      '-days',
      '1',
      '-extfile',
      cnf,
      '-extensions',
      profile,
      '-out',
      `${name}.crt`,
    );
  };
  ca('ca');
  leaf('server', 'localhost', 'ca', 'server');
  leaf('client', 'client', 'ca', 'client');
  ca('other-ca');
  leaf('untrusted-client', 'intruder', 'other-ca', 'client');
  const read = (file: string): Buffer => readFileSync(join(dir, file));
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    ca: read('ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    client: { cert: read('client.crt'), key: read('client.key') },
    untrustedClient: { cert: read('untrusted-client.crt'), key: read('untrusted-client.key') },
  };
}
