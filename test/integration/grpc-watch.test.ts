// flintlock.services.ext.v1alpha1.MicroVMWatch/WatchMicroVMs on an in-process grpc-js server over
// a real MicroVMService and SQLite store: snapshot, changes, deletion, filters, resume, the token,
// and a client that stops reading (bounded backlog, then RESOURCE_EXHAUSTED).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { startGrpcServer, type GrpcServerOptions, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { ApiMetrics } from '../../src/adapters/api/metrics.js';
import { WatchEvent_Type as Type, type WatchEvent } from '../../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { MicroVMStatus_MicroVMState as State } from '../../src/gen/flintlock/types/microvm_pb.js';
import type { MicroVMStatus } from '../../src/core/model.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { createTestService, type TestService } from '../helpers/service.js';
import { readStream, type StreamReader } from '../helpers/stream-reader.js';
import { waitFor } from '../helpers/wait.js';

const INSECURE = { insecure: true, clientValidate: false } as const;
const TOKEN = 'w4tch';

let svc: TestService;
const servers: RunningGrpcServer[] = [];
const clients: TestClient[] = [];

before(() => {
  svc = createTestService('fl-watch-');
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close()));
  svc.close();
});

async function serve(options: Partial<GrpcServerOptions> = {}): Promise<RunningGrpcServer> {
  const server = await startGrpcServer(svc.service, { endpoint: '127.0.0.1:0', tls: INSECURE, log: silentLogger(), ...options });
  servers.push(server);
  return server;
}

function clientOf(server: RunningGrpcServer, authorization?: string): TestClient {
  const client = new TestClient(`127.0.0.1:${server.port}`, authorization !== undefined ? { authorization } : {});
  clients.push(client);
  return client;
}

async function createIn(client: TestClient, namespace: string, name: string): Promise<string> {
  const vm = await client.create(Object.assign(capmvmSpec(name), { namespace }));
  return vm.spec?.uid ?? '';
}

function setStatus(uid: string, patch: Partial<MicroVMStatus>): void {
  const vm = svc.repo.get(uid);
  assert.ok(vm, `no vm ${uid}`);
  svc.repo.saveStatus(uid, { ...vm.status, ...patch }, Date.now());
}

/** Reads the snapshot items up to and including the marker. */
async function snapshotOf(reader: StreamReader<WatchEvent>): Promise<{ items: WatchEvent[]; end: WatchEvent }> {
  const items: WatchEvent[] = [];
  for (;;) {
    const event = await reader.next();
    if (event.type === Type.SNAPSHOT_END) return { items, end: event };
    assert.equal(event.type, Type.SNAPSHOT, `snapshot item, got ${Type[event.type]}`);
    items.push(event);
  }
}

const idOf = (e: WatchEvent): string => e.microvm?.spec?.id ?? '';

describe('WatchMicroVMs', () => {
  let server: RunningGrpcServer;
  let client: TestClient;
  let metrics: ApiMetrics;

  before(async () => {
    metrics = new ApiMetrics(false);
    server = await serve({ metrics });
    client = clientOf(server);
  });

  it('sends the snapshot, then each change, then the deletion; positions never go back', async () => {
    const a = await createIn(client, 'w1', 'a');
    const b = await createIn(client, 'w1', 'b');
    await createIn(client, 'w2', 'a');
    const stream = client.watch({ namespace: 'w1' });
    const reader = readStream(stream);
    const { items, end } = await snapshotOf(reader);
    assert.deepEqual(items.map(idOf), ['a', 'b']);
    assert.ok(items.every((e) => e.epoch === end.epoch && e.sequence === end.sequence && e.microvm?.status !== undefined));
    assert.equal(end.resumed, false);
    assert.equal(end.microvm, undefined);

    setStatus(a, { state: 'created' });
    await createIn(client, 'w2', 'elsewhere');
    await client.delete(b);
    svc.repo.remove(b);
    const c = await createIn(client, 'w1', 'c');

    const updated = await reader.next();
    assert.equal(updated.type, Type.UPDATED);
    assert.equal(updated.microvm?.spec?.uid, a);
    assert.equal(updated.microvm?.status?.state, State.CREATED);
    const deleting = await reader.next();
    assert.equal(deleting.type, Type.UPDATED);
    assert.equal(deleting.microvm?.status?.state, State.DELETING);
    const deleted = await reader.next();
    assert.equal(deleted.type, Type.DELETED);
    assert.deepEqual([deleted.microvm?.spec?.uid, deleted.microvm?.spec?.namespace, deleted.microvm?.spec?.id], [b, 'w1', 'b']);
    const created = await reader.next();
    assert.equal(created.type, Type.UPDATED);
    assert.equal(created.microvm?.spec?.uid, c);
    assert.equal(created.microvm?.version, 1);

    const changes = [updated, deleting, deleted, created];
    assert.ok(changes.every((e) => e.epoch === end.epoch));
    const sequences = [end, ...changes].map((e) => e.sequence);
    for (let i = 1; i < sequences.length; i++) assert.ok((sequences[i] ?? 0n) > (sequences[i - 1] ?? 0n), `sequences increase: ${sequences.join(', ')}`);
    assert.equal(reader.pending().length, 0, 'nothing from namespace w2');

    stream.cancel();
    const ended = await reader.end();
    assert.equal(ended.error?.code, grpcStatus.CANCELLED);
    await waitFor('the stream to be released', () => server.watchStats().streams === 0);
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      /grpc_server_handled_total\{grpc_type="server_stream",grpc_service="flintlock.services.ext.v1alpha1.MicroVMWatch",grpc_method="WatchMicroVMs",grpc_code="Canceled"\} 1/,
    );
    assert.match(text, /flintlock_watch_streams 0/);
  });

  it('filters by namespace and by name, as List does', async () => {
    await createIn(client, 'f1', 'same');
    await createIn(client, 'f2', 'same');
    await createIn(client, 'f2', 'other');
    const byName = readStream(client.watch({ name: 'same' }));
    const named = await snapshotOf(byName);
    assert.deepEqual(named.items.map((e) => `${e.microvm?.spec?.namespace}/${idOf(e)}`).sort(), ['f1/same', 'f2/same']);
    const byNs = readStream(client.watch({ namespace: 'f2' }));
    assert.deepEqual((await snapshotOf(byNs)).items.map(idOf), ['other', 'same']);

    await createIn(client, 'f3', 'same');
    await createIn(client, 'f2', 'third');
    assert.equal(`${(await byName.next()).microvm?.spec?.namespace}`, 'f3');
    assert.equal(idOf(await byNs.next()), 'third');
    assert.equal(byName.pending().length + byNs.pending().length, 0);
  });

  it('resumes from a position with what changed since, as it is now; a foreign position gets a fresh snapshot', async () => {
    const x = await createIn(client, 'r1', 'x');
    const y = await createIn(client, 'r1', 'y');
    const first = client.watch({ namespace: 'r1' });
    const { end } = await snapshotOf(readStream(first));
    first.cancel();

    setStatus(x, { state: 'created' });
    setStatus(x, { state: 'created', restartCount: 3 });
    svc.repo.remove(y);
    const z = await createIn(client, 'r1', 'z');
    await createIn(client, 'r2', 'ignored');

    const resumed = readStream(client.watch({ namespace: 'r1', resumeEpoch: end.epoch, resumeSequence: end.sequence }));
    const marker = await resumed.next();
    assert.equal(marker.type, Type.SNAPSHOT_END);
    assert.equal(marker.resumed, true);
    assert.equal(marker.sequence, end.sequence);
    const replayed = [await resumed.next(), await resumed.next(), await resumed.next()];
    assert.deepEqual(
      replayed.map((e) => [Type[e.type], e.microvm?.spec?.uid]),
      [
        ['UPDATED', x],
        ['DELETED', y],
        ['UPDATED', z],
      ],
    );
    assert.equal(replayed[0]?.microvm?.status?.restartCount, 3, 'x once, in its latest state');
    assert.ok((replayed[0]?.sequence ?? 0n) < (replayed[1]?.sequence ?? 0n) && (replayed[1]?.sequence ?? 0n) < (replayed[2]?.sequence ?? 0n));

    const foreign = readStream(client.watch({ namespace: 'r1', resumeEpoch: 'another-run', resumeSequence: end.sequence }));
    const fresh = await snapshotOf(foreign);
    assert.equal(fresh.end.resumed, false);
    assert.deepEqual(fresh.items.map(idOf), ['x', 'z']);
  });

  it('ends every watch with UNAVAILABLE when the server closes', async () => {
    const own = await serve();
    const reader = readStream(clientOf(own).watch({ namespace: 'nothing' }));
    await snapshotOf(reader);
    await own.close();
    const ended = await reader.end();
    assert.equal(ended.error?.code, grpcStatus.UNAVAILABLE);
    assert.match(ended.error?.details ?? '', /shutting down: reconnect/);
  });
});

describe('WatchMicroVMs with a token', () => {
  let server: RunningGrpcServer;
  before(async () => {
    server = await serve({ basicAuthToken: TOKEN });
  });

  it('refuses a watch without the token, and serves it with the token', async () => {
    const refused = await readStream(clientOf(server).watch({})).end();
    assert.equal(refused.error?.code, grpcStatus.UNAUTHENTICATED);
    assert.equal(refused.rest.length, 0);
    const wrong = await readStream(clientOf(server, `Basic ${Buffer.from('guess').toString('base64')}`).watch({})).end();
    assert.equal(wrong.error?.code, grpcStatus.UNAUTHENTICATED);
    assert.ok(!(wrong.error?.details ?? '').includes(TOKEN));

    const stream = clientOf(server, `Basic ${Buffer.from(TOKEN).toString('base64')}`).watch({ namespace: 'nothing' });
    await snapshotOf(readStream(stream)); // served: the snapshot ends
    stream.cancel();
  });
});

describe('WatchMicroVMs with a client that stops reading', () => {
  const LIMITS = { maxMessages: 20, maxBytes: 64 * 1024 };

  it('keeps the backlog within its bound, cuts the client off with RESOURCE_EXHAUSTED, and the client can resume', async () => {
    const server = await serve({ watchLimits: LIMITS });
    const client = clientOf(server);
    const uid = await createIn(client, 'slow', 'busy');
    // Read the snapshot, then stop: grpc-js stops reading the HTTP/2 stream, flow control stops
    // the server, and events pile up on the server side. (A stream never read at all would not do:
    // grpc-js buffers without bound on the client until the first read.)
    const stream = client.watch({ namespace: 'slow' });
    let failure: ServiceError | undefined;
    stream.on('error', (e: ServiceError) => (failure = e));
    const received: WatchEvent[] = [];
    const collect = (e: WatchEvent): void => {
      received.push(e);
      if (e.type === Type.SNAPSHOT_END) stream.pause();
    };
    stream.on('data', collect);
    await waitFor('the snapshot', () => received.some((e) => e.type === Type.SNAPSHOT_END));

    const filler = 'x'.repeat(1000);
    let changes = 0;
    while (server.watchStats().cutOffs === 0) {
      assert.ok(changes < 5000, `not cut off after ${changes} changes: ${JSON.stringify(server.watchStats())}`);
      changes += 1;
      setStatus(uid, { retry: changes, lastError: `${filler} ${changes}` });
      // Let the network move, as it would between real changes.
      await tick();
      const stats = server.watchStats();
      assert.ok(stats.queuedMessages <= LIMITS.maxMessages && stats.queuedBytes <= LIMITS.maxBytes, `backlog over its bound: ${JSON.stringify(stats)}`);
    }
    const stats = server.watchStats();
    assert.equal(stats.streams, 0, 'the stream is released');
    assert.equal(stats.queuedBytes, 0);
    assert.ok(stats.peakQueuedMessages <= LIMITS.maxMessages && stats.peakQueuedBytes <= LIMITS.maxBytes, JSON.stringify(stats));
    // The cut-off comes on the push that would queue maxMessages + 1: anything beyond that went to grpc-js and HTTP/2 first.
    assert.ok(changes > LIMITS.maxMessages + 1, `flow control held some events before the backlog filled (${changes} changes)`);

    // The client catches up: it reads what was sent, then the status.
    stream.off('data', collect);
    stream.on('data', (e: WatchEvent) => received.push(e));
    stream.resume();
    await waitFor('the status', () => failure !== undefined);
    assert.equal(failure?.code, grpcStatus.RESOURCE_EXHAUSTED);
    assert.match(failure?.details ?? '', /watch cut off: the client fell behind .* Reconnect, with resume_epoch and resume_sequence/);
    assert.ok(received.length < changes + 2, `fewer events than changes (${received.length} of ${changes})`);
    assert.equal(received.at(-1)?.type, Type.UPDATED);

    const last = received.at(-1);
    assert.ok(last !== undefined);
    setStatus(uid, { retry: changes + 1 });
    const again = readStream(client.watch({ namespace: 'slow', resumeEpoch: last.epoch, resumeSequence: last.sequence }));
    const marker = await again.next();
    assert.equal(marker.resumed, true);
    const caughtUp = await again.next();
    assert.equal(caughtUp.type, Type.UPDATED);
    assert.equal(caughtUp.microvm?.status?.retry, changes + 1, 'the missed changes come as the latest state');
    assert.equal(again.pending().length, 0);
  });
});
