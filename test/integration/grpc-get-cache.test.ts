// GetMicroVM answers from a per-VM cache: it must never serve a stale VM.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { MicroVMStatus_MicroVMState as State } from '../../src/gen/flintlock/types/microvm_pb.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { serveTestService, type ServedTestService } from '../helpers/served.js';
import type { TestService } from '../helpers/service.js';

describe('GetMicroVM cache', () => {
  let served: ServedTestService;
  let svc: TestService;
  let client: TestClient;

  before(async () => {
    served = await serveTestService('fl-get-cache-');
    ({ svc, client } = served);
  });

  after(() => served?.close());

  it('answers every change at once: status updates, delete, removal', async () => {
    const uid = (await client.create(capmvmSpec('cached'))).spec?.uid ?? '';
    assert.equal((await client.get(uid)).status?.state, State.PENDING);
    assert.equal((await client.get(uid)).status?.state, State.PENDING, 'a second Get (cached) agrees');
    const stored = svc.repo.get(uid);
    assert.ok(stored);
    svc.repo.saveStatus(uid, { ...stored.status, state: 'created', restartCount: 2 }, Date.now());
    const updated = await client.get(uid);
    assert.equal(updated.status?.state, State.CREATED);
    assert.equal(updated.status?.restartCount, 2);
    await client.delete(uid);
    assert.equal((await client.get(uid)).status?.state, State.DELETING);
    svc.repo.remove(uid);
    await assert.rejects(client.get(uid), (e: ServiceError) => e.code === grpcStatus.NOT_FOUND);
  });
});
