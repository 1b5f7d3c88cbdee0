// fl over real TLS and mTLS (test/helpers/pki.ts: a server certificate for localhost and
// 127.0.0.1): bin/fl as a child process, so what Node itself prints on stderr is seen. Connecting
// by IP address gives no DeprecationWarning (no IP as the TLS server name); each way of getting
// TLS wrong ends with a one-line error, a hint naming the flag to fix, no stack trace, and exit 5
// (2 for files fl cannot use).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { FL, makeTempDir } from '../helpers/daemon.js';
import { makePki, type Pki } from '../helpers/pki.js';
import { describeWith, programs } from '../helpers/prerequisites.js';
import { spawnTracked } from '../helpers/processes.js';
import { createTestService, type TestService } from '../helpers/service.js';

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

async function fl(args: readonly string[]): Promise<Run> {
  const child = spawnTracked(FL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? -1)));
  return { code, out, err };
}

/** An error as fl should show it: its line, one hint line, nothing else (no stack, no warning). */
function assertExplained(run: Run, hint: RegExp, code = 5): void {
  assert.equal(run.code, code, run.err);
  assert.equal(run.out, '');
  const lines = run.err.trimEnd().split('\n');
  assert.equal(lines.length, 2, run.err);
  assert.match(lines[0] ?? '', /^fl: listing microvms: /);
  assert.match(lines[1] ?? '', hint);
  assert.doesNotMatch(run.err, /Warning|\n\s+at |ssl3_|deps\/openssl/, run.err);
}

describeWith('fl over TLS', programs('openssl'), {}, () => {
  let dir: string;
  let pki: Pki;
  let testService: TestService;
  let tls: RunningGrpcServer;
  let mtls: RunningGrpcServer;
  let plain: RunningGrpcServer;
  /** Listens on 127.0.0.2, which the server certificate does not name. */
  let misnamed: RunningGrpcServer;
  const files: Record<'clientCert' | 'clientKey' | 'untrustedCert' | 'untrustedKey', string> = {
    clientCert: '',
    clientKey: '',
    untrustedCert: '',
    untrustedKey: '',
  };

  before(async () => {
    dir = makeTempDir('fl-tls-');
    pki = makePki(dir);
    for (const [name, data] of [
      ['clientCert', pki.client.cert],
      ['clientKey', pki.client.key],
      ['untrustedCert', pki.untrustedClient.cert],
      ['untrustedKey', pki.untrustedClient.key],
    ] as const) {
      files[name] = join(dir, `${name}.pem`);
      writeFileSync(files[name], data);
    }
    testService = createTestService('fl-tls-');
    const log = pino({ level: 'silent' });
    const server = { insecure: false, certFile: pki.serverCert, keyFile: pki.serverKey, clientValidate: false };
    tls = await startGrpcServer(testService.service, { endpoint: '127.0.0.1:0', tls: server, log });
    misnamed = await startGrpcServer(testService.service, { endpoint: '127.0.0.2:0', tls: server, log });
    mtls = await startGrpcServer(testService.service, { endpoint: '127.0.0.1:0', tls: { ...server, clientCaFile: pki.caFile, clientValidate: true }, log });
    plain = await startGrpcServer(testService.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log });
  });

  after(async () => {
    await Promise.all([tls?.close(), misnamed?.close(), mtls?.close(), plain?.close()]);
    testService?.close();
  });

  const list = (host: string, ...flags: string[]): Promise<Run> => fl(['--host', host, ...flags, 'microvm', 'list', '-o', 'json']);

  describe('works', () => {
    it('by IP address with --tls-ca, and no DeprecationWarning (or anything) on stderr', async () => {
      const run = await list(`127.0.0.1:${tls.port}`, '--tls-ca', pki.caFile);
      assert.equal(run.code, 0, run.err);
      assert.equal(run.err, '');
      assert.deepEqual(JSON.parse(run.out), []);
    });

    it('by name, and with mTLS', async () => {
      const byName = await list(`localhost:${tls.port}`, '--tls-ca', pki.caFile);
      assert.equal(byName.code, 0, byName.err);
      assert.equal(byName.err, '');
      const mutual = await list(`127.0.0.1:${mtls.port}`, '--tls-ca', pki.caFile, '--tls-cert', files.clientCert, '--tls-key', files.clientKey);
      assert.equal(mutual.code, 0, mutual.err);
      assert.equal(mutual.err, '');
    });
  });

  describe('explains what went wrong', () => {
    it('a CA fl does not trust: --tls-ca', async () => {
      assertExplained(
        await list(`127.0.0.1:${tls.port}`, '--tls'),
        /^ {2}hint: the server's certificate is not signed by a CA fl trusts: pass the CA that signed it with --tls-ca <file>$/,
      );
      // A wrong file given as the CA (the client's key) is refused before connecting.
      assertExplained(await list(`127.0.0.1:${tls.port}`, '--tls-ca', files.clientKey), /^ {2}hint: the server's certificate is not signed by a CA fl trusts/);
    });

    it('an address the certificate does not name: --host', async () => {
      assertExplained(
        await list(`127.0.0.2:${misnamed.port}`, '--tls-ca', pki.caFile),
        /^ {2}hint: the server's certificate does not name 127\.0\.0\.2: set --host to a name or address in its subjectAltName/,
      );
    });

    it('TLS to a plaintext daemon: leave out --tls', async () => {
      assertExplained(
        await list(`127.0.0.1:${plain.port}`, '--tls-ca', pki.caFile),
        /^ {2}hint: 127\.0\.0\.1:\d+ does not speak TLS: leave out --tls and the --tls-\* options/,
      );
    });

    it('plaintext to a TLS daemon: --tls-ca', async () => {
      assertExplained(await list(`127.0.0.1:${tls.port}`), /^ {2}hint: the server may want TLS: pass --tls-ca <file>/);
    });

    it('no client certificate where the daemon wants one: --tls-cert/--tls-key', async () => {
      assertExplained(
        await list(`127.0.0.1:${mtls.port}`, '--tls-ca', pki.caFile),
        /^ {2}hint: the server wants a client certificate \(mTLS\): pass --tls-cert <file> and --tls-key <file>$/,
      );
    });

    it('a client certificate the daemon does not trust', async () => {
      assertExplained(
        await list(`127.0.0.1:${mtls.port}`, '--tls-ca', pki.caFile, '--tls-cert', files.untrustedCert, '--tls-key', files.untrustedKey),
        /^ {2}hint: the server refused .*--tls-cert\/--tls-key .*signed by the CA the daemon trusts/,
      );
    });

    it('certificate and key swapped: exit 2 before connecting, naming the flags', async () => {
      const run = await list(`127.0.0.1:${mtls.port}`, '--tls-ca', pki.caFile, '--tls-cert', files.clientKey, '--tls-key', files.clientCert);
      assert.equal(run.code, 2, run.err);
      assert.match(
        run.err,
        /^fl: connecting: cannot use the TLS files \(.*\): --tls-ca and --tls-cert must be PEM certificates and --tls-key the PEM private key of --tls-cert \(swapped\?\)\n$/,
      );
    });
  });
});
