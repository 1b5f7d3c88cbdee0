// ListMicroVMsStream behaves as the Go original's: the VMs that match (List's filters), then the end
// of the stream with OK, so a client reading to EOF (grpcurl, a Go client ranging over Recv)
// finishes. Changes are the watch's business (grpc-watch.test.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { ApiMetrics } from '../../src/adapters/api/metrics.js';
import type { ListMessage } from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { createTestService, type TestService } from '../helpers/service.js';
import { readStream } from '../helpers/stream-reader.js';

describe('ListMicroVMsStream', () => {
  let svc: TestService;
  let server: RunningGrpcServer;
  let client: TestClient;
  let metrics: ApiMetrics;
  /** Open subscriptions to the service's changes (the server's own, plus any a stream holds). */
  let subscriptions = 0;

  before(async () => {
    svc = createTestService('fl-list-stream-');
    const watch = svc.service.watch.bind(svc.service);
    svc.service.watch = (query, listener) => {
      subscriptions += 1;
      const unsubscribe = watch(query, listener);
      return () => {
        subscriptions -= 1;
        unsubscribe();
      };
    };
    metrics = new ApiMetrics(false);
    server = await startGrpcServer(svc.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log: silentLogger(), metrics });
    client = new TestClient(`127.0.0.1:${server.port}`);
    for (const [namespace, name] of [
      ['ls1', 'a'],
      ['ls1', 'b'],
      ['ls2', 'a'],
    ] as const) {
      await client.create(Object.assign(capmvmSpec(name), { namespace }));
    }
  });

  after(async () => {
    client.close();
    await server.close();
    svc.close();
  });

  /** The stream's messages once it ends; fails (rather than hangs) when it does not end. */
  async function streamed(namespace: string, name?: string): Promise<string[]> {
    const { rest, error } = await readStream(client.stream(namespace, name)).end(3000);
    assert.equal(error, undefined, `the stream ends with OK (${error?.message ?? ''})`);
    return rest.map((m: ListMessage) => `${m.microvm?.spec?.namespace}/${m.microvm?.spec?.id}`);
  }

  it('sends the VMs of a namespace and ends with OK', async () => {
    assert.deepEqual(await streamed('ls1'), ['ls1/a', 'ls1/b']);
  });

  it('filters by name, and an empty namespace means every namespace, as List does', async () => {
    assert.deepEqual((await streamed('', 'a')).sort(), ['ls1/a', 'ls2/a']);
    assert.deepEqual(await streamed('ls1', 'b'), ['ls1/b']);
    assert.deepEqual((await streamed('')).sort(), ['ls1/a', 'ls1/b', 'ls2/a']);
    assert.deepEqual(await streamed('nothing-here'), []);
  });

  it('ends even while VMs change, and holds no subscription afterwards', async () => {
    const baseline = subscriptions;
    const reader = readStream(client.stream('ls1'));
    await client.create(Object.assign(capmvmSpec('c'), { namespace: 'ls1' }));
    const { rest, error } = await reader.end(3000);
    assert.equal(error, undefined);
    assert.ok(rest.length === 2 || rest.length === 3, `the VMs as listed when the call arrived (${rest.length})`);
    assert.equal(subscriptions, baseline);
    assert.match(
      await metrics.registry.metrics(),
      /grpc_server_handled_total\{grpc_type="server_stream",grpc_service="microvm.services.api.v1alpha1.MicroVM",grpc_method="ListMicroVMsStream",grpc_code="OK"\} \d+/,
    );
  });

  it('sends a long list to a slow reader in full, paced by flow control', async () => {
    for (let i = 0; i < 150; i++) await client.create(Object.assign(capmvmSpec(`many-${String(i).padStart(3, '0')}`), { namespace: 'many' }));
    const stream = client.stream('many');
    const received: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    // Read one message every few milliseconds: the server must wait for 'drain', not buffer it all.
    stream.on('data', (m: ListMessage) => {
      received.push(m.microvm?.spec?.id ?? '');
      stream.pause();
      setTimeout(() => stream.resume(), 2);
    });
    await ended;
    assert.equal(received.length, 150);
    assert.equal(received[149], 'many-149');
  });
});
