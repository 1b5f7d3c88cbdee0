// Request and answer bounds over the wire (issue 8, finding 4): a refused request stores nothing,
// every stored VM fits a default 4 MiB client message, List never answers more than a client can
// receive, and error messages stay small enough for every client's header limits.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { MicroVMSpecSchema, NetworkInterfaceSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { serveTestService, type ServedTestService } from '../helpers/served.js';
import type { TestService } from '../helpers/service.js';
import { readStream } from '../helpers/stream-reader.js';
import { WatchEvent_Type } from '../../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';

async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('expected the call to fail');
}

/** A CAPMVM spec whose user-data is `bytes` long (as sent: base64 characters). */
function withUserData(name: string, bytes: number): ReturnType<typeof capmvmSpec> {
  const spec = capmvmSpec(name);
  return create(MicroVMSpecSchema, { ...spec, metadata: { ...spec.metadata, 'user-data': 'A'.repeat(bytes - (bytes % 4)) } });
}

describe('gRPC request and answer limits', () => {
  let served: ServedTestService;
  let svc: TestService;
  let client: TestClient;

  before(async () => {
    served = await serveTestService('fl-limits-');
    ({ svc, client } = served);
  });

  after(() => served?.close());

  it('refuses 5 MB of metadata with InvalidArgument naming the field, stores nothing, and List still works', async () => {
    const e = await grpcError(client.create(withUserData('huge', 5 * 1024 * 1024)));
    assert.equal(e.code, grpcStatus.INVALID_ARGUMENT, e.details);
    assert.match(e.details, /metadata: is \d+ bytes, more than the 1048576 this daemon accepts \(maximum-metadata-kb\)/);
    assert.deepEqual(await client.list('capmvm-ns', 'huge'), []);
    assert.deepEqual(svc.repo.list({ namespace: '' }), []);
  });

  it('answers RESOURCE_EXHAUSTED, saying the disk is full, when the store cannot write', async () => {
    const insert = svc.repo.insertUnlessExists.bind(svc.repo);
    svc.repo.insertUnlessExists = () => {
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    };
    try {
      const e = await grpcError(client.create(capmvmSpec('no-room')));
      assert.equal(e.code, grpcStatus.RESOURCE_EXHAUSTED, e.details);
      assert.equal(e.details, "the daemon's disk is full: database or disk is full");
    } finally {
      svc.repo.insertUnlessExists = insert;
    }
  });

  it('keeps error messages short however long the input', async () => {
    const spec = capmvmSpec('longid');
    spec.interfaces = [create(NetworkInterfaceSchema, { deviceId: 'e'.repeat(10_000), type: 1 })];
    spec.labels = { ['k'.repeat(5000)]: 'v' };
    const e = await grpcError(client.create(spec));
    assert.equal(e.code, grpcStatus.INVALID_ARGUMENT);
    assert.ok(e.details.length < 1000, `details are ${e.details.length} characters`);
    assert.match(e.details, /interfaces\[0\]\.device_id: "e{64}"\.\.\. \(10000 bytes\)/);
    const notFound = await grpcError(client.get('u'.repeat(20_000)));
    assert.equal(notFound.code, grpcStatus.NOT_FOUND);
    assert.ok(notFound.details.length <= 2100, `details are ${notFound.details.length} characters`);
  });

  // Found by the API fuzzer: a "billion laughs" meta-data was answered Internal.
  it('refuses meta-data YAML that expands aliases without bound with InvalidArgument, storing nothing', async () => {
    const spec = capmvmSpec('laughs');
    const levels = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
    ];
    spec.metadata = { ...spec.metadata, 'meta-data': Buffer.from(`${levels.join('\n')}\n`).toString('base64') };
    const e = await grpcError(client.create(spec));
    assert.equal(e.code, grpcStatus.INVALID_ARGUMENT, e.details);
    assert.match(e.details, /^invalid microvm spec: metadata\[meta-data\]: is not valid YAML: Excessive alias count/);
    assert.deepEqual(await client.list('capmvm-ns', 'laughs'), []);
  });

  it('answers every stored VM to a default client, and caps List at what such a client accepts', async () => {
    const names = ['big-0', 'big-1', 'big-2', 'big-3', 'big-4'];
    const uids: string[] = [];
    // Each just under the default 1 MiB metadata limit: five of them are more than 4 MiB.
    for (const name of names) uids.push((await client.create(withUserData(name, 1024 * 1024 - 4096))).spec?.uid ?? '');
    for (const uid of uids) assert.equal((await client.get(uid)).spec?.uid, uid);
    const e = await grpcError(client.list('capmvm-ns'));
    assert.equal(e.code, grpcStatus.RESOURCE_EXHAUSTED, e.details);
    assert.match(
      e.details,
      /the answer holds 5 microvms in \d+ bytes, more than the 4193280 a client accepts by default: list one namespace or one name, or use ListMicroVMsStream/,
    );
    assert.equal((await client.list('capmvm-ns', 'big-3')).length, 1);
    // The stream sends one message per VM: each fits. It ends once they are sent.
    const streamed = await readStream(client.stream('capmvm-ns')).end();
    assert.equal(streamed.error, undefined);
    assert.deepEqual(streamed.rest.map((m) => m.microvm?.spec?.id ?? '').sort(), names);
    // So does the watch's snapshot (one event per VM, within the per-client bound).
    const watch = client.watch({ namespace: 'capmvm-ns' });
    const reader = readStream(watch);
    const snapshot: string[] = [];
    for (let event = await reader.next(); event.type === WatchEvent_Type.SNAPSHOT; event = await reader.next()) snapshot.push(event.microvm?.spec?.id ?? '');
    assert.deepEqual(snapshot.sort(), names);
    watch.cancel();
  });
});
