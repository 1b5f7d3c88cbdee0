// The composition root in-process: gateway and debug endpoint wired, metrics counted, clean stop.
// The host network port is the in-memory double (this test is about wiring, not devices).
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/compose.js';
import { makeTempDir } from '../helpers/daemon.js';
import { MemoryNetwork } from '../helpers/doubles.js';
import { describeWith, QEMU_PROGRAMS } from '../helpers/prerequisites.js';
import { TestClient, capmvmSpec } from '../helpers/grpc-client.js';

describeWith('daemon composition', QEMU_PROGRAMS, {}, () => {
  let dir: string;
  let daemon: RunningDaemon;

  before(async () => {
    dir = makeTempDir('fl-compose-');
    // An explicit (empty) file, so a config in /etc/opt/flintlockd on this host can't leak in.
    writeFileSync(join(dir, 'config.yaml'), '');
    const config = loadConfig({
      file: join(dir, 'config.yaml'),
      env: {},
      flags: {
        'state-dir': join(dir, 'state'),
        'grpc-endpoint': '127.0.0.1:0',
        'enable-http': true,
        'http-endpoint': '127.0.0.1:0',
        'debug-endpoint': '127.0.0.1:0',
        'bridge-name': 'br0',
        insecure: true,
        'basic-auth-token': 'tok',
        'default-provider': 'qemu',
      },
    });
    daemon = await startDaemon(config, silentLogger(), { network: new MemoryNetwork() });
  });

  after(async () => {
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves gRPC and the HTTP gateway from one store, and counts requests in /metrics', async () => {
    const client = new TestClient(`127.0.0.1:${daemon.grpcPort}`, { authorization: `Basic ${Buffer.from('tok').toString('base64')}` });
    try {
      const vm = await client.create(capmvmSpec('wired'));
      const res = await fetch(`http://127.0.0.1:${daemon.httpPort}/v1alpha1/microvm/${vm.spec?.uid}`, { headers: { authorization: 'Bearer tok' } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { microvm: { spec: { uid: string } } };
      assert.equal(body.microvm.spec.uid, vm.spec?.uid);
      assert.equal((await fetch(`http://127.0.0.1:${daemon.httpPort}/v1alpha1/microvms`)).status, 401);
    } finally {
      client.close();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.debugPort}/metrics`)).text();
    assert.match(
      metrics,
      /grpc_server_handled_total\{grpc_type="unary",grpc_service="microvm.services.api.v1alpha1.MicroVM",grpc_method="CreateMicroVM",grpc_code="OK"\} 1/,
    );
    assert.match(metrics, /http_server_handled_total\{[^}]*grpc_method="GetMicroVM",grpc_code="OK"\} 1/);
    assert.match(metrics, /process_resident_memory_bytes/);
    assert.equal((await fetch(`http://127.0.0.1:${daemon.debugPort}/healthz`)).status, 200);
  });
});
