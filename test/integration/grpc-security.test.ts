// The gRPC server's transport security and auth (COMPAT §2.10) against the real server in-process:
// plaintext h2c, token auth (Basic/Bearer), health and reflection left open, TLS 1.3-only with
// ALPN h2, mTLS, and token + TLS together. Certificates come from the openssl CLI.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';
import { startGrpcServer, type RunningGrpcServer, type TlsSettings } from '../../src/adapters/api/grpc/server.js';
import { MicroVMService } from '../../src/core/service.js';
import { createTestService, type TestService } from '../helpers/service.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { describeWith, programs } from '../helpers/prerequisites.js';
import { makePki, type Pki } from '../helpers/pki.js';

const silent = silentLogger();

const MICROVM_SERVICE = 'microvm.services.api.v1alpha1.MicroVM';
const WATCH_SERVICE = 'flintlock.services.ext.v1alpha1.MicroVMWatch';
const TOKEN = 's3cret';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

// ---- resources, all released in the top-level `after` ----

const dirs: string[] = [];
const services: TestService[] = [];
const servers: RunningGrpcServer[] = [];
const clients: { close(): void }[] = [];
const sockets: tls.TLSSocket[] = [];

after(async () => {
  for (const socket of sockets) socket.destroy();
  for (const client of clients) client.close();
  await Promise.all(servers.map((s) => s.close()));
  for (const created of services) created.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

function newService(): MicroVMService {
  const created = createTestService('flintlock-grpc-sec-');
  services.push(created);
  return created.service;
}

async function startServer(tlsSettings: TlsSettings = { insecure: true, clientValidate: false }, basicAuthToken?: string): Promise<string> {
  const running = await startGrpcServer(newService(), {
    endpoint: '127.0.0.1:0',
    tls: tlsSettings,
    log: silent,
    ...(basicAuthToken !== undefined ? { basicAuthToken } : {}),
  });
  servers.push(running);
  return `127.0.0.1:${running.port}`;
}

function client(endpoint: string, options: { credentials?: grpc.ChannelCredentials; authorization?: string } = {}): TestClient {
  const c = new TestClient(endpoint, options);
  clients.push(c);
  return c;
}

// ---- helpers ----

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

/** Awaits a call that must fail, with a time limit, and returns its gRPC error. */
async function grpcFailure(promise: Promise<unknown>, timeoutMs = 5000): Promise<grpc.ServiceError> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`call neither failed nor succeeded within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([promise, timeout]);
  } catch (error) {
    if (isServiceError(error)) return error;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  assert.fail('the call succeeded but was expected to fail');
}

/** Rejects with the stream's error, or resolves with its messages when it ends. */
function drain<T>(stream: grpc.ClientReadableStream<T>): Promise<T[]> {
  const items: T[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (item: T) => items.push(item));
    stream.on('error', reject);
    stream.on('end', () => resolve(items));
  });
}

// Health and reflection are called through their own protos (what grpc_health_probe and grpcurl use).
const root = fileURLToPath(new URL('../../', import.meta.url));
const loaderOptions = { keepCase: true, defaults: true, oneofs: true };
const healthProto = loadSync(join(root, 'node_modules/grpc-health-check/proto/health/v1/health.proto'), loaderOptions);
const reflectionV1Proto = loadSync(join(root, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto'), loaderOptions);
const reflectionV1AlphaProto = loadSync(join(root, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto'), loaderOptions);

function methodOf(definition: PackageDefinition, service: string, method: string): MethodDefinition<object, object> {
  const svc = definition[service];
  if (svc === undefined || 'format' in svc) throw new Error(`${service} is not a service in the loaded proto`);
  const found = svc[method];
  if (found === undefined) throw new Error(`${service} has no method ${method}`);
  return found;
}

interface HealthCheckResponse {
  status: number;
}

function healthCheck(endpoint: string, service: string, credentials = grpc.credentials.createInsecure()): Promise<HealthCheckResponse> {
  const raw = new grpc.Client(endpoint, credentials);
  clients.push(raw);
  const check = methodOf(healthProto, 'grpc.health.v1.Health', 'Check');
  return new Promise((resolve, reject) => {
    raw.makeUnaryRequest(check.path, check.requestSerialize, check.responseDeserialize, { service }, (error, value) =>
      error !== null || value === undefined ? reject(error ?? new Error('no response')) : resolve(value as HealthCheckResponse),
    );
  });
}

interface ReflectionResponse {
  message_response?: string;
  list_services_response?: { service: { name: string }[] } | null;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] } | null;
  error_response?: { error_code: number; error_message: string } | null;
}

/** One request on the bidi ServerReflectionInfo stream, then half-close; resolves with the single answer. */
function reflect(endpoint: string, version: 'v1' | 'v1alpha', request: Record<string, string>): Promise<ReflectionResponse> {
  const raw = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  clients.push(raw);
  const service = `grpc.reflection.${version}.ServerReflection`;
  const info = methodOf(version === 'v1' ? reflectionV1Proto : reflectionV1AlphaProto, service, 'ServerReflectionInfo');
  const stream = raw.makeBidiStreamRequest(info.path, info.requestSerialize, info.responseDeserialize);
  return new Promise((resolve, reject) => {
    const answers: ReflectionResponse[] = [];
    stream.on('data', (answer: object) => answers.push(answer as ReflectionResponse));
    stream.on('error', reject);
    stream.on('end', () => (answers[0] !== undefined ? resolve(answers[0]) : reject(new Error('reflection answered nothing'))));
    stream.write({ host: '', ...request });
    stream.end();
  });
}

/** Connects with node:tls directly; resolves with the negotiated socket or rejects with the handshake error. */
function rawTls(port: number, ca: Buffer, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['h2'], ...options });
    sockets.push(socket);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

// ---- tests ----

describeWith('gRPC security', programs('openssl'), {}, () => {
  let pki: Pki;

  before(() => {
    pki = makePki(tempDir('flintlock-pki-'));
  });

  describe('insecure server without a token', () => {
    let endpoint: string;
    before(async () => {
      endpoint = await startServer();
    });

    it('serves Create, Get and List over plaintext h2c', async () => {
      const c = client(endpoint);
      const created = await c.create(capmvmSpec('plain1'));
      const uid = created.spec?.uid ?? '';
      assert.equal(uid.length, 26);
      const got = await c.get(uid);
      assert.equal(got.spec?.id, 'plain1');
      const listed = await c.list('capmvm-ns');
      assert.deepEqual(
        listed.map((vm) => vm.spec?.id),
        ['plain1'],
      );
    });
  });

  describe('token authentication', () => {
    let endpoint: string;
    before(async () => {
      endpoint = await startServer(undefined, TOKEN);
    });

    it('rejects a call without metadata as UNAUTHENTICATED', async () => {
      const error = await grpcFailure(client(endpoint).list());
      assert.equal(error.code, grpc.status.UNAUTHENTICATED);
    });

    it('accepts "Basic base64(token)"', async () => {
      const c = client(endpoint, { authorization: `Basic ${b64(TOKEN)}` });
      const created = await c.create(capmvmSpec('auth1'));
      assert.equal((await c.get(created.spec?.uid ?? '')).spec?.id, 'auth1');
    });

    it('accepts a lowercase "basic" scheme', async () => {
      const listed = await client(endpoint, { authorization: `basic ${b64(TOKEN)}` }).list('capmvm-ns');
      assert.deepEqual(
        listed.map((vm) => vm.spec?.id),
        ['auth1'],
      );
    });

    it('accepts "Bearer token"', async () => {
      const listed = await client(endpoint, { authorization: `Bearer ${TOKEN}` }).list('capmvm-ns');
      assert.equal(listed.length, 1);
    });

    it('rejects a wrong token without revealing the right one', async () => {
      for (const authorization of [`Basic ${b64('wrong')}`, `Bearer wrong`, `Basic ${TOKEN}`, `Token ${TOKEN}`, 'Basic']) {
        const error = await grpcFailure(client(endpoint, { authorization }).list());
        assert.equal(error.code, grpc.status.UNAUTHENTICATED, authorization);
        for (const text of [error.details, error.message]) {
          assert.ok(!text.includes(TOKEN), `error reveals the token: ${text}`);
          assert.ok(!text.includes(b64(TOKEN)), `error reveals the encoded token: ${text}`);
        }
      }
    });

    it('rejects ListMicroVMsStream without a token', async () => {
      const error = await grpcFailure(drain(client(endpoint).stream('capmvm-ns')));
      assert.equal(error.code, grpc.status.UNAUTHENTICATED);
    });

    it('rejects WatchMicroVMs (our extension service) without a token', async () => {
      const error = await grpcFailure(drain(client(endpoint).watch({})));
      assert.equal(error.code, grpc.status.UNAUTHENTICATED);
    });

    it('leaves grpc.health.v1.Health/Check open and SERVING', async () => {
      assert.equal((await healthCheck(endpoint, '')).status, 1);
      assert.equal((await healthCheck(endpoint, MICROVM_SERVICE)).status, 1);
      assert.equal((await healthCheck(endpoint, WATCH_SERVICE)).status, 1);
    });

    it('leaves reflection v1 open: list_services and file_containing_symbol', async () => {
      const listed = await reflect(endpoint, 'v1', { list_services: '' });
      const names = listed.list_services_response?.service.map((s) => s.name) ?? [];
      assert.ok(names.includes(MICROVM_SERVICE), `services listed: ${names.join(', ')}`);
      assert.ok(names.includes(WATCH_SERVICE), `the watch extension is listed too: ${names.join(', ')}`);
      const watchFiles = await reflect(endpoint, 'v1', { file_containing_symbol: WATCH_SERVICE });
      assert.ok(
        (watchFiles.file_descriptor_response?.file_descriptor_proto ?? []).some((p) =>
          p.toString('latin1').includes('flintlock/services/ext/v1alpha1/watch.proto'),
        ),
        'the watch service file is served',
      );

      const files = await reflect(endpoint, 'v1', { file_containing_symbol: MICROVM_SERVICE });
      assert.equal(files.error_response ?? null, null);
      const protos = files.file_descriptor_response?.file_descriptor_proto ?? [];
      assert.ok(protos.length > 0, 'file descriptors returned');
      assert.ok(
        protos.some((p) => p.toString('latin1').includes('microvms.proto')),
        'the service file is among them',
      );
    });

    it('serves reflection v1alpha too (older grpcurl)', async () => {
      const listed = await reflect(endpoint, 'v1alpha', { list_services: '' });
      const names = listed.list_services_response?.service.map((s) => s.name) ?? [];
      assert.ok(names.includes(MICROVM_SERVICE), `services listed: ${names.join(', ')}`);
    });
  });

  describe('TLS server', () => {
    let endpoint: string;
    let port: number;
    before(async () => {
      endpoint = await startServer({ insecure: false, certFile: pki.serverCert, keyFile: pki.serverKey, clientValidate: false });
      port = Number(endpoint.split(':')[1]);
    });

    it('serves a client that trusts the CA', async () => {
      const c = client(endpoint, { credentials: grpc.credentials.createSsl(pki.ca) });
      const created = await c.create(capmvmSpec('tls1'));
      assert.equal((await c.get(created.spec?.uid ?? '')).spec?.id, 'tls1');
    });

    it('serves a client that dials "localhost" (DNS SAN)', async () => {
      const c = client(`localhost:${port}`, { credentials: grpc.credentials.createSsl(pki.ca) });
      assert.equal((await c.list('capmvm-ns')).length, 1);
    });

    it('fails a plaintext client with UNAVAILABLE', async () => {
      const error = await grpcFailure(client(endpoint).list());
      assert.equal(error.code, grpc.status.UNAVAILABLE);
    });

    it('fails a client that does not trust the server certificate', async () => {
      const error = await grpcFailure(client(endpoint, { credentials: grpc.credentials.createSsl() }).list());
      assert.equal(error.code, grpc.status.UNAVAILABLE);
    });

    it('rejects a TLS 1.2-only client in the handshake', async () => {
      // The client offers 1.2 only; the refusal must come from the server's 1.3 minimum.
      const error = await rawTls(port, pki.ca, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }).then(
        () => assert.fail('a TLS 1.2 handshake succeeded'),
        (e: unknown) => e as NodeJS.ErrnoException,
      );
      assert.match(`${error.code ?? ''} ${error.message}`, /protocol.version|unsupported.protocol/i);
    });

    it('leaves the process-wide TLS default alone (outbound clients may still need TLS 1.2)', () => {
      assert.notEqual(tls.DEFAULT_MIN_VERSION, 'TLSv1.3');
    });

    it('negotiates TLS 1.3 with ALPN h2', async () => {
      const socket = await rawTls(port, pki.ca, { minVersion: 'TLSv1.3' });
      assert.equal(socket.getProtocol(), 'TLSv1.3');
      assert.equal(socket.alpnProtocol, 'h2');
      assert.equal(socket.authorized, true);
      socket.destroy();
    });

    it('refuses to start with a missing tls-key, naming the key and the path', async () => {
      const missing = join(pki.dir, 'absent.key');
      await assert.rejects(startServer({ insecure: false, certFile: pki.serverCert, keyFile: missing, clientValidate: false }), (e: Error) => {
        assert.match(e.message, /tls-key/);
        assert.ok(e.message.includes(missing), e.message);
        return true;
      });
    });

    it('serves health over TLS', async () => {
      assert.equal((await healthCheck(endpoint, '', grpc.credentials.createSsl(pki.ca))).status, 1);
    });
  });

  describe('mTLS server', () => {
    let endpoint: string;
    before(async () => {
      endpoint = await startServer({ insecure: false, certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caFile, clientValidate: true });
    });

    it('serves a client with a certificate from the trusted CA', async () => {
      const c = client(endpoint, { credentials: grpc.credentials.createSsl(pki.ca, pki.client.key, pki.client.cert) });
      const created = await c.create(capmvmSpec('mtls1'));
      assert.equal((await c.get(created.spec?.uid ?? '')).spec?.id, 'mtls1');
    });

    it('fails a client without a certificate', async () => {
      const error = await grpcFailure(client(endpoint, { credentials: grpc.credentials.createSsl(pki.ca) }).list());
      assert.equal(error.code, grpc.status.UNAVAILABLE);
    });

    it('fails a client whose certificate comes from another CA', async () => {
      const credentials = grpc.credentials.createSsl(pki.ca, pki.untrustedClient.key, pki.untrustedClient.cert);
      const error = await grpcFailure(client(endpoint, { credentials }).list());
      assert.equal(error.code, grpc.status.UNAVAILABLE);
    });
  });

  describe('token and TLS together', () => {
    let endpoint: string;
    before(async () => {
      endpoint = await startServer({ insecure: false, certFile: pki.serverCert, keyFile: pki.serverKey, clientValidate: false }, TOKEN);
    });

    it('needs both the CA and the token', async () => {
      const credentials = grpc.credentials.createSsl(pki.ca);
      const denied = await grpcFailure(client(endpoint, { credentials }).list());
      assert.equal(denied.code, grpc.status.UNAUTHENTICATED);
      const c = client(endpoint, { credentials, authorization: `Basic ${b64(TOKEN)}` });
      const created = await c.create(capmvmSpec('both1'));
      assert.equal((await c.get(created.spec?.uid ?? '')).spec?.id, 'both1');
      assert.equal((await client(endpoint, { credentials, authorization: `Bearer ${TOKEN}` }).list('capmvm-ns')).length, 1);
    });

    it('keeps health open over TLS without a token', async () => {
      assert.equal((await healthCheck(endpoint, MICROVM_SERVICE, grpc.credentials.createSsl(pki.ca))).status, 1);
    });
  });
});
