// The HTTP/JSON gateway against a real MicroVMService and SQLite store (no reconciler, no VMM),
// plaintext and, with certificates from the openssl CLI, over TLS and mTLS like the gRPC port.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startHttpGateway, type RunningHttpGateway } from '../../src/adapters/api/http/gateway.js';
import type { TlsSettings } from '../../src/adapters/api/tls.js';
import { MicroVMService } from '../../src/core/service.js';
import { createTestService, type TestService } from '../helpers/service.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { httpsCall, httpsFailure } from '../helpers/https-client.js';
import { makePki, type Pki } from '../helpers/pki.js';
import { describeWith, programs } from '../helpers/prerequisites.js';

const silent = silentLogger();
const INSECURE: TlsSettings = { insecure: true, clientValidate: false };

type Json = Record<string, unknown>;

interface Gateway {
  readonly url: string;
  readonly running: RunningHttpGateway;
}

const services: TestService[] = [];
const gateways: RunningHttpGateway[] = [];
const dirs: string[] = [];
/** Open watch subscriptions of the main service, to check that the stream route holds none. */
let activeWatches = 0;

async function startGateway(basicAuthToken?: string, tls: TlsSettings = INSECURE): Promise<{ gw: Gateway; service: MicroVMService; created: TestService }> {
  const created = createTestService('flintlock-http-');
  services.push(created);
  const service = created.service;
  const watch = service.watch.bind(service);
  service.watch = (query, listener) => {
    activeWatches += 1;
    const unsubscribe = watch(query, listener);
    return () => {
      activeWatches -= 1;
      unsubscribe();
    };
  };
  const running = await startHttpGateway(service, { endpoint: '127.0.0.1:0', tls, log: silent, ...(basicAuthToken !== undefined ? { basicAuthToken } : {}) });
  gateways.push(running);
  return { gw: { url: `${tls.insecure ? 'http' : 'https'}://127.0.0.1:${running.port}`, running }, service, created };
}

function camelSpec(id: string, namespace = 'ns1'): Json {
  return {
    id,
    namespace,
    vcpu: 1,
    memoryInMb: 256,
    kernel: { image: 'registry.local/kernel:1', filename: 'boot/vmlinux', addNetworkConfig: true },
    rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: 'registry.local/root:1' } },
    interfaces: [{ deviceId: 'eth0', type: 'MACVTAP' }],
  };
}

function snakeSpec(id: string, namespace = 'ns1'): Json {
  return {
    id,
    namespace,
    vcpu: 2,
    memory_in_mb: 512,
    kernel: { image: 'registry.local/kernel:1', add_network_config: false },
    root_volume: { id: 'root', is_read_only: true, source: { container_source: 'registry.local/root:1' } },
    interfaces: [{ device_id: 'eth0', type: 1 }],
  };
}

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: Json; text: string; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text, headers: res.headers };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}): ReturnType<typeof call> =>
  call(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

function vmOf(body: Json): { spec: Json; status: Json } {
  const vm = body['microvm'] as { spec: Json; status: Json };
  assert.ok(vm !== undefined && vm !== null, 'response has a microvm');
  return vm;
}

after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  for (const created of services) created.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

describe('HTTP gateway', () => {
  let gw: Gateway;
  let store: TestService;
  let firstUid: string;

  before(async () => {
    ({ gw, created: store } = await startGateway());
  });

  it('creates from lowerCamelCase JSON with enum names', async () => {
    const res = await post(`${gw.url}/v1alpha1/microvm`, camelSpec('vm1'));
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const vm = vmOf(res.body);
    firstUid = vm.spec['uid'] as string;
    assert.equal(firstUid.length, 26);
    assert.equal(vm.status['state'], 'PENDING');
    assert.equal(vm.spec['memoryInMb'], 256);
    assert.equal(vm.spec['provider'], 'qemu');
  });

  it('creates from snake_case JSON with enum numbers, ignoring unknown fields', async () => {
    const res = await post(`${gw.url}/v1alpha1/microvm`, { ...snakeSpec('vm2'), no_such_field: 1, kernel: { image: 'registry.local/kernel:1', bogus: true } });
    assert.equal(res.status, 200, res.text);
    const vm = vmOf(res.body);
    assert.equal((vm.spec['uid'] as string).length, 26);
    assert.equal(vm.status['state'], 'PENDING');
    assert.equal(vm.spec['memoryInMb'], 512);
    const ifaces = vm.spec['interfaces'] as Json[];
    assert.equal(ifaces[0]?.['type'], 'TAP');
    assert.equal((vm.spec['rootVolume'] as Json)['isReadOnly'], true);
  });

  it('emits every field: zero scalars, empty collections, unset messages as null, unset optionals omitted', async () => {
    const res = await call(`${gw.url}/v1alpha1/microvm/${firstUid}`);
    assert.equal(res.status, 200, res.text);
    const { spec, status } = vmOf(res.body);
    assert.equal(status['kernelMount'], null);
    assert.equal(status['initrdMount'], null);
    assert.equal(status['nextRetryAt'], null);
    assert.equal(status['retry'], 0);
    assert.equal(status['vsockPath'], '');
    assert.deepEqual(status['volumes'], {});
    assert.deepEqual(status['networkInterfaces'], {});
    assert.equal(spec['deletedAt'], null);
    assert.equal(typeof spec['createdAt'], 'string');
    assert.deepEqual(spec['labels'], {});
    assert.deepEqual(spec['additionalVolumes'], []);
    assert.equal(spec['allowGuestAgent'], false);
    // proto3 `optional` is a synthetic oneof: Go's protojson leaves it out when unset.
    assert.equal('initrd' in spec, false);
    const iface = (spec['interfaces'] as Json[])[0] ?? {};
    assert.equal('address' in iface, false);
    assert.equal('guestMac' in iface, false);
  });

  it('GET /v1alpha1/microvm/{uid} answers Get', async () => {
    const res = await call(`${gw.url}/v1alpha1/microvm/${firstUid}`);
    assert.equal(res.status, 200);
    assert.equal(vmOf(res.body).spec['id'], 'vm1');
    assert.equal('microvm' in res.body && !Array.isArray(res.body['microvm']), true);
  });

  it('GET /v1alpha1/microvm/{namespace} answers List, with ?name=', async () => {
    const all = await call(`${gw.url}/v1alpha1/microvm/ns1`);
    assert.equal(all.status, 200);
    const items = all.body['microvm'] as Json[];
    assert.deepEqual(items.map((vm) => (vm['spec'] as Json)['id']).sort(), ['vm1', 'vm2']);
    const one = await call(`${gw.url}/v1alpha1/microvm/ns1?name=vm2`);
    assert.deepEqual(
      (one.body['microvm'] as Json[]).map((vm) => (vm['spec'] as Json)['id']),
      ['vm2'],
    );
    const none = await call(`${gw.url}/v1alpha1/microvm/empty-ns`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.body, { microvm: [] });
  });

  it('GET /v1alpha1/microvms filters by namespace and name', async () => {
    await post(`${gw.url}/v1alpha1/microvm`, camelSpec('x', 'ns2'));
    const filtered = await call(`${gw.url}/v1alpha1/microvms?namespace=ns1&name=vm1`);
    assert.equal(filtered.status, 200);
    assert.deepEqual(
      (filtered.body['microvm'] as Json[]).map((vm) => (vm['spec'] as Json)['id']),
      ['vm1'],
    );
    const none = await call(`${gw.url}/v1alpha1/microvms?namespace=ns1&name=x`);
    assert.deepEqual(none.body['microvm'], []);
    const everything = await call(`${gw.url}/v1alpha1/microvms`);
    assert.equal((everything.body['microvm'] as Json[]).length, 3);
  });

  it('DELETE answers {} and the VM shows DELETING', async () => {
    const created = vmOf((await post(`${gw.url}/v1alpha1/microvm`, camelSpec('doomed'))).body);
    const uid = created.spec['uid'] as string;
    const res = await call(`${gw.url}/v1alpha1/microvm/${uid}`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {});
    const afterDelete = await call(`${gw.url}/v1alpha1/microvm/${uid}`);
    assert.equal(vmOf(afterDelete.body).status['state'], 'DELETING');
  });

  it('GET of the uid of a VM that is gone is 404 with "not found", not an empty List', async () => {
    const created = vmOf((await post(`${gw.url}/v1alpha1/microvm`, camelSpec('gone'))).body);
    const uid = created.spec['uid'] as string;
    await call(`${gw.url}/v1alpha1/microvm/${uid}`, { method: 'DELETE' });
    // What the reconciler does once the VM's resources are released.
    store.repo.remove(uid);
    const res = await call(`${gw.url}/v1alpha1/microvm/${uid}`);
    assert.equal(res.status, 404, res.text);
    assert.equal(res.body['code'], 5);
    assert.match(res.body['message'] as string, /not found/);
    const head = await fetch(`${gw.url}/v1alpha1/microvm/${uid}`, { method: 'HEAD' });
    assert.equal(head.status, 404);
  });

  it('a namespace spelt like a uid still answers List when VMs live in it', async () => {
    const namespace = '01HGW2N7EH0000000000000NS1';
    await post(`${gw.url}/v1alpha1/microvm`, camelSpec('in-ulid-ns', namespace));
    const res = await call(`${gw.url}/v1alpha1/microvm/${namespace}`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(
      (res.body['microvm'] as Json[]).map((vm) => (vm['spec'] as Json)['id']),
      ['in-ulid-ns'],
    );
  });

  it('HEAD answers like GET without a body; on a POST-only path it is 405 without a body', async () => {
    const get = await fetch(`${gw.url}/v1alpha1/microvms?namespace=ns1`);
    const head = await fetch(`${gw.url}/v1alpha1/microvms?namespace=ns1`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), get.headers.get('content-length'));
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${gw.url}/v1alpha1/microvm/${firstUid}`, { method: 'HEAD' })).status, 200);
    const post = await fetch(`${gw.url}/v1alpha1/microvm`, { method: 'HEAD' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'POST');
    assert.equal(await post.text(), '');
    const wrong = await call(`${gw.url}/v1alpha1/microvms`, { method: 'POST' });
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
  });

  it('an unknown enum name is 400 naming the field, and stores nothing', async () => {
    const before = (await call(`${gw.url}/v1alpha1/microvms`)).text;
    const res = await post(`${gw.url}/v1alpha1/microvm`, { ...camelSpec('bogus'), interfaces: [{ deviceId: 'eth0', type: 'BOGUS' }] });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body['code'], 3);
    assert.match(res.body['message'] as string, /^invalid microvm spec: interfaces\[0\]\.type: unknown value "BOGUS" \(expected one of MACVTAP, TAP\)/);
    const snake = await post(`${gw.url}/v1alpha1/microvm`, { ...snakeSpec('bogus2'), interfaces: [{ device_id: 'eth0', type: 'tap' }] });
    assert.equal(snake.status, 400, snake.text);
    assert.match(snake.body['message'] as string, /interfaces\[0\]\.type: unknown value "tap"/);
    assert.equal((await call(`${gw.url}/v1alpha1/microvms`)).text, before);
  });

  it('DELETE of an unknown uid is 404 with "not found"', async () => {
    const res = await call(`${gw.url}/v1alpha1/microvm/01HGW2N7EH0000000000000000`, { method: 'DELETE' });
    assert.equal(res.status, 404);
    assert.equal(res.body['code'], 5);
    assert.match(res.body['message'] as string, /not found/);
    assert.deepEqual(res.body['details'], []);
  });

  it('a validation error is 400 with code 3 naming the field', async () => {
    const res = await post(`${gw.url}/v1alpha1/microvm`, { ...camelSpec('bad'), vcpu: 500 });
    assert.equal(res.status, 400);
    assert.equal(res.body['code'], 3);
    assert.match(res.body['message'] as string, /vcpu/);
    assert.deepEqual(res.body['details'], []);
  });

  // Found by the API fuzzer: this was a 500 "internal error".
  it('meta-data YAML with an alias to no anchor is 400 naming metadata[meta-data], and stores nothing', async () => {
    const before = (await call(`${gw.url}/v1alpha1/microvms`)).text;
    const res = await post(`${gw.url}/v1alpha1/microvm`, { ...camelSpec('alias'), metadata: { 'meta-data': Buffer.from('a: *nowhere\n').toString('base64') } });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body['code'], 3);
    assert.match(res.body['message'] as string, /^invalid microvm spec: metadata\[meta-data\]: is not valid YAML: Unresolved alias/);
    assert.equal((await call(`${gw.url}/v1alpha1/microvms`)).text, before);
  });

  it('invalid JSON and wrongly typed fields are 400', async () => {
    const broken = await post(`${gw.url}/v1alpha1/microvm`, '{"id": ');
    assert.equal(broken.status, 400);
    assert.equal(broken.body['code'], 3);
    assert.match(broken.body['message'] as string, /invalid JSON/);
    const wrongType = await post(`${gw.url}/v1alpha1/microvm`, { ...camelSpec('typed'), vcpu: 'many' });
    assert.equal(wrongType.status, 400);
    assert.match(wrongType.body['message'] as string, /vcpu/);
  });

  it('an oversized body is 413', async () => {
    const res = await post(`${gw.url}/v1alpha1/microvm`, { ...camelSpec('huge'), labels: { big: 'x'.repeat(5 * 1024 * 1024) } });
    assert.equal(res.status, 413);
    assert.equal(res.body['code'], 8);
  });

  it('unknown paths are 404 and wrong methods 405, with the error body', async () => {
    const missing = await call(`${gw.url}/v1alpha1/nothing`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, { code: 5, message: 'Not Found', details: [] });
    const wrong = await call(`${gw.url}/v1alpha1/microvm`, { method: 'PUT' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal(wrong.body['code'], 12);
  });

  it('ListMicroVMsStream sends the matching VMs and ends, as the original does', async () => {
    await post(`${gw.url}/v1alpha1/microvm`, camelSpec('s1', 'ns3'));
    await post(`${gw.url}/v1alpha1/microvm`, snakeSpec('s2', 'ns3'));
    await post(`${gw.url}/v1alpha1/microvm`, snakeSpec('s1', 'ns4'));
    const stream = async (body: string): Promise<Json[]> => {
      const res = await fetch(`${gw.url}/microvm.services.api.v1alpha1.MicroVM/ListMicroVMsStream`, {
        method: 'POST',
        body,
        signal: AbortSignal.timeout(3000),
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      // text() resolves only once the response ends: a stream that stays open times out here.
      const text = await res.text();
      assert.ok(text === '' || text.endsWith('\n'), 'newline-delimited chunks');
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => (JSON.parse(line) as Json)['result'] as Json);
    };
    const ns3 = await stream(JSON.stringify({ namespace: 'ns3' }));
    assert.deepEqual(
      ns3.map((r) => vmOf(r).spec['id']),
      ['s1', 's2'],
    );
    assert.equal(vmOf(ns3[0] ?? {}).status['kernelMount'], null, 'the gateway JSON shape');
    assert.deepEqual((await stream('{"name":"s1"}')).map((r) => vmOf(r).spec['namespace']).sort(), ['ns3', 'ns4']);
    assert.deepEqual(await stream('{"namespace":"nothing-here"}'), []);
    assert.equal(activeWatches, 0, 'no stream subscribes to changes');
  });
});

describe('HTTP gateway with a token', () => {
  let gw: Gateway;
  before(async () => {
    ({ gw } = await startGateway('s3cret'));
  });

  it('refuses a request without the header with 401 code 16', async () => {
    const res = await call(`${gw.url}/v1alpha1/microvms`);
    assert.equal(res.status, 401);
    assert.equal(res.body['code'], 16);
    const create = await post(`${gw.url}/v1alpha1/microvm`, camelSpec('vm1'));
    assert.equal(create.status, 401);
  });

  it('accepts Basic base64(token) and Bearer token', async () => {
    const basic = await post(`${gw.url}/v1alpha1/microvm`, camelSpec('vm1'), { authorization: `Basic ${Buffer.from('s3cret').toString('base64')}` });
    assert.equal(basic.status, 200, basic.text);
    const bearer = await call(`${gw.url}/v1alpha1/microvms`, { headers: { authorization: 'Bearer s3cret' } });
    assert.equal(bearer.status, 200);
    assert.equal((bearer.body['microvm'] as Json[]).length, 1);
  });

  it('refuses a wrong token without revealing the right one', async () => {
    const res = await call(`${gw.url}/v1alpha1/microvms`, { headers: { authorization: `Basic ${Buffer.from('guess').toString('base64')}` } });
    assert.equal(res.status, 401);
    assert.equal(res.body['code'], 16);
    assert.ok(!res.text.includes('s3cret'));
    assert.ok(!res.text.includes(Buffer.from('s3cret').toString('base64')));
  });

  it('protects the stream route too', async () => {
    const res = await post(`${gw.url}/microvm.services.api.v1alpha1.MicroVM/ListMicroVMsStream`, {});
    assert.equal(res.status, 401);
    assert.equal(res.body['code'], 16);
  });
});

describeWith('HTTP gateway over TLS', programs('openssl'), {}, () => {
  let pki: Pki;
  let tls: TlsSettings;
  let mtls: TlsSettings;
  before(() => {
    pki = makePki(tempDir('flintlock-http-pki-'));
    tls = { insecure: false, certFile: pki.serverCert, keyFile: pki.serverKey, clientValidate: false };
    mtls = { ...tls, clientCaFile: pki.caFile, clientValidate: true };
  });

  describe('TLS without client certificates', () => {
    let gw: Gateway;
    before(async () => {
      ({ gw } = await startGateway(undefined, tls));
    });

    it('serves the API over HTTPS (TLS 1.3) to a client that trusts the CA', async () => {
      const created = await httpsCall(`${gw.url}/v1alpha1/microvm`, { method: 'POST', body: JSON.stringify(camelSpec('tls1')), ca: pki.ca });
      assert.equal(created.status, 200, created.text);
      assert.equal(created.protocol, 'TLSv1.3');
      const listed = await httpsCall(`${gw.url}/v1alpha1/microvms?namespace=ns1`, { ca: pki.ca });
      assert.equal(listed.status, 200, listed.text);
      assert.deepEqual(
        ((JSON.parse(listed.text) as Json)['microvm'] as Json[]).map((vm) => (vm['spec'] as Json)['id']),
        ['tls1'],
      );
    });

    it('serves a client that dials "localhost" (DNS SAN)', async () => {
      const res = await httpsCall(gw.url.replace('127.0.0.1', 'localhost') + '/v1alpha1/microvms', { ca: pki.ca });
      assert.equal(res.status, 200, res.text);
    });

    it('answers no plain HTTP on the TLS port', async () => {
      await assert.rejects(fetch(`${gw.url.replace('https:', 'http:')}/v1alpha1/microvms`, { signal: AbortSignal.timeout(5000) }), TypeError);
    });

    it('fails a client that does not trust the server certificate', async () => {
      const error = await httpsFailure(httpsCall(`${gw.url}/v1alpha1/microvms`));
      assert.match(`${error.code ?? ''} ${error.message}`, /self.signed|unable to (get|verify)|UNABLE_TO/i);
    });

    it('rejects a TLS 1.2-only client in the handshake', async () => {
      // The client offers 1.2 only; the refusal must come from the gateway's 1.3 minimum.
      const error = await httpsFailure(httpsCall(`${gw.url}/v1alpha1/microvms`, { ca: pki.ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }));
      assert.match(`${error.code ?? ''} ${error.message}`, /protocol.version|unsupported.protocol/i);
    });
  });

  describe('mTLS (tls-client-validate) without a token', () => {
    let gw: Gateway;
    before(async () => {
      ({ gw } = await startGateway(undefined, mtls));
    });

    it('serves a client with a certificate from tls-client-ca', async () => {
      const res = await httpsCall(`${gw.url}/v1alpha1/microvm`, { method: 'POST', body: JSON.stringify(camelSpec('mtls1')), ca: pki.ca, ...pki.client });
      assert.equal(res.status, 200, res.text);
      assert.equal(vmOf(JSON.parse(res.text) as Json).spec['id'], 'mtls1');
    });

    it('refuses a client without a certificate in the TLS handshake (no HTTP answer)', async () => {
      for (const path of ['/v1alpha1/microvms', '/v1alpha1/nothing']) {
        const error = await httpsFailure(httpsCall(`${gw.url}${path}`, { ca: pki.ca }));
        // TLS 1.3 finishes the client's side first, so the refusal can also arrive as a reset.
        assert.match(`${error.code ?? ''} ${error.message}`, /certificate.required|ECONNRESET|socket hang up/i, path);
      }
    });

    it('refuses a client whose certificate comes from another CA', async () => {
      const error = await httpsFailure(httpsCall(`${gw.url}/v1alpha1/microvms`, { ca: pki.ca, ...pki.untrustedClient }));
      // The client has sent its request by the time the server aborts, so the alert usually
      // arrives as a reset; either way no HTTP answer came, and the port still serves others.
      assert.match(`${error.code ?? ''} ${error.message}`, /unknown.ca|ECONNRESET|socket hang up/i);
      assert.equal((await httpsCall(`${gw.url}/v1alpha1/microvms`, { ca: pki.ca, ...pki.client })).status, 200);
    });

    it('refuses the stream route without a certificate too', async () => {
      const error = await httpsFailure(
        httpsCall(`${gw.url}/microvm.services.api.v1alpha1.MicroVM/ListMicroVMsStream`, { method: 'POST', body: '{}', ca: pki.ca }),
      );
      assert.match(`${error.code ?? ''} ${error.message}`, /certificate.required|ECONNRESET|socket hang up/i);
    });
  });

  describe('token and TLS together', () => {
    let gw: Gateway;
    let both: Gateway;
    before(async () => {
      ({ gw } = await startGateway('s3cret', tls));
      ({ gw: both } = await startGateway('s3cret', mtls));
    });

    it('over TLS needs the token as well', async () => {
      const denied = await httpsCall(`${gw.url}/v1alpha1/microvms`, { ca: pki.ca });
      assert.equal(denied.status, 401);
      assert.equal((JSON.parse(denied.text) as Json)['code'], 16);
      const basic = await httpsCall(`${gw.url}/v1alpha1/microvms`, {
        ca: pki.ca,
        headers: { authorization: `Basic ${Buffer.from('s3cret').toString('base64')}` },
      });
      assert.equal(basic.status, 200, basic.text);
      const bearer = await httpsCall(`${gw.url}/v1alpha1/microvms`, { ca: pki.ca, headers: { authorization: 'Bearer s3cret' } });
      assert.equal(bearer.status, 200, bearer.text);
    });

    it('over mTLS needs both the client certificate and the token', async () => {
      const noToken = await httpsCall(`${both.url}/v1alpha1/microvms`, { ca: pki.ca, ...pki.client });
      assert.equal(noToken.status, 401);
      const noCert = await httpsFailure(httpsCall(`${both.url}/v1alpha1/microvms`, { ca: pki.ca, headers: { authorization: 'Bearer s3cret' } }));
      assert.match(`${noCert.code ?? ''} ${noCert.message}`, /certificate.required|ECONNRESET|socket hang up/i);
      const ok = await httpsCall(`${both.url}/v1alpha1/microvms`, { ca: pki.ca, ...pki.client, headers: { authorization: 'Bearer s3cret' } });
      assert.equal(ok.status, 200, ok.text);
    });
  });

  describe('TLS files', () => {
    it('refuses to start with a missing tls-cert, naming the key and the path', async () => {
      const missing = join(pki.dir, 'absent.crt');
      await assert.rejects(startGateway(undefined, { ...tls, certFile: missing }), (e: Error) => {
        assert.match(e.message, /tls-cert/);
        assert.ok(e.message.includes(missing), e.message);
        return true;
      });
    });

    it('refuses to start with a tls-client-ca that holds no certificate', async () => {
      const junk = join(pki.dir, 'junk-ca.crt');
      writeFileSync(junk, 'not a certificate\n');
      await assert.rejects(startGateway(undefined, { ...mtls, clientCaFile: junk }), (e: Error) => {
        assert.match(e.message, /tls-client-ca/);
        assert.ok(e.message.includes(junk), e.message);
        return true;
      });
    });

    it('refuses to start when tls-key does not match tls-cert', async () => {
      await assert.rejects(startGateway(undefined, { ...tls, keyFile: join(pki.dir, 'client.key') }), /tls-cert .* and tls-key .* do not form a usable pair/);
    });

    it('refuses mTLS without tls-client-ca rather than trusting public roots', async () => {
      await assert.rejects(
        startGateway(undefined, { ...tls, clientValidate: true }),
        /^Error: tls-client-validate \(mTLS\) needs tls-client-ca: set tls-client-ca to/,
      );
    });

    it('says tls-cert and tls-key are swapped when they are', async () => {
      await assert.rejects(startGateway(undefined, { ...tls, certFile: tls.keyFile, keyFile: tls.certFile }), (e: Error) => {
        assert.equal(
          e.message,
          `tls-cert ${tls.keyFile} holds a private key and tls-key ${tls.certFile} a certificate: they are swapped; set tls-cert to the certificate file and tls-key to its key file`,
        );
        return true;
      });
    });

    it('says what a tls-cert holding a key holds, and a tls-key that is a directory is one', async () => {
      await assert.rejects(
        startGateway(undefined, { ...tls, certFile: tls.keyFile }),
        /^Error: invalid tls-cert file \S+ \(it holds a private key\): .*; set tls-cert to the server certificate's PEM file$/,
      );
      await assert.rejects(
        startGateway(undefined, { ...tls, keyFile: pki.dir }),
        /^Error: tls-key \S+ is a directory: set tls-key to the PEM file of the server certificate's private key$/,
      );
    });
  });
});
