// Over gRPC, a Create or Delete is acknowledged only once the store says it is on disk
// (durable()); a failing sync is an error to the client, not an acknowledgement.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { createTestService, type TestService } from '../helpers/service.js';

describe('Create and Delete wait for durable()', () => {
  let svc: TestService;
  let server: RunningGrpcServer;
  let client: TestClient;
  let release: (() => void) | undefined;
  let failure: Error | undefined;

  before(async () => {
    svc = createTestService('fl-durable-');
    // The store's sync held until the test releases it (or failing, when told to).
    svc.repo.durable = () =>
      failure !== undefined
        ? Promise.reject(failure)
        : new Promise<void>((resolve) => {
            release = resolve;
          });
    server = await startGrpcServer(svc.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log: silentLogger() });
    client = new TestClient(`127.0.0.1:${server.port}`);
  });

  after(async () => {
    client.close();
    await server.close();
    svc.close();
  });

  it('answers a Create and a Delete only after the sync, and an error when the sync fails', async () => {
    let answered = false;
    const creating = client.create(capmvmSpec('slow-disk')).then((vm) => ((answered = true), vm));
    await sleep(200);
    assert.equal(answered, false, 'no answer before the sync');
    assert.equal(svc.repo.list({}).length, 1, 'committed meanwhile');
    release?.();
    const vm = await creating;
    // Get and List don't wait.
    assert.equal((await client.get(vm.spec?.uid ?? '')).spec?.id, 'slow-disk');

    let deleted = false;
    const deleting = client.delete(vm.spec?.uid ?? '').then(() => (deleted = true));
    await sleep(200);
    assert.equal(deleted, false, 'no answer before the sync');
    release?.();
    await deleting;

    failure = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    await assert.rejects(client.create(capmvmSpec('lost-disk')), (e: ServiceError) => e.code === grpcStatus.INTERNAL && /fdatasync/.test(e.details));
  });
});
