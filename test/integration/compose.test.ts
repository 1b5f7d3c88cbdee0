// The composition root in-process: gateway and debug endpoint wired, metrics counted, clean stop,
// and the gateway given the gRPC port's TLS settings. The host network port is the in-memory
// double (this test is about wiring, not devices).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import type { Logger } from '../../src/core/ports.js';
import type { RunningDaemon } from '../../src/daemon/compose.js';
import { MicroVMSpecSchema, NetworkInterface_IfaceType } from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir } from '../helpers/daemon.js';
import { buildImage, buildLayer, TestRegistry } from '../helpers/oci-registry.js';
import { waitFor } from '../helpers/wait.js';
import { startComposedDaemon } from '../helpers/composed-daemon.js';
import { describeWith, programs, QEMU_PROGRAMS } from '../helpers/prerequisites.js';
import { TestClient, capmvmSpec } from '../helpers/grpc-client.js';
import { httpsCall, httpsFailure } from '../helpers/https-client.js';
import { makePki, type Pki } from '../helpers/pki.js';

describeWith('daemon composition', QEMU_PROGRAMS, {}, () => {
  let dir: string;
  let daemon: RunningDaemon;

  before(async () => {
    dir = makeTempDir('fl-compose-');
    daemon = await startComposedDaemon(dir, {
      'enable-http': true,
      'http-endpoint': '127.0.0.1:0',
      'debug-endpoint': '127.0.0.1:0',
      'bridge-name': 'br0',
      'parent-iface': 'eth0',
      insecure: true,
      'basic-auth-token': 'tok',
      'default-provider': 'qemu',
    });
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

/** Keeps the info lines (messages only) a daemon logs, to check what it says about TLS. */
function recordingLogger(lines: string[]): Logger {
  const logger: Logger = {
    trace: () => undefined,
    debug: () => undefined,
    info: (_obj, msg) => void lines.push(msg),
    warn: () => undefined,
    error: () => undefined,
    child: () => logger,
  };
  return logger;
}

// The configuration of the bug this guards against: mTLS as the only protection (no token) with
// the gateway on. The gateway must ask for the same client certificate the gRPC port does.
describeWith('daemon composition with mTLS and the HTTP gateway', [...QEMU_PROGRAMS, ...programs('openssl')], {}, () => {
  let dir: string;
  let pki: Pki;
  let daemon: RunningDaemon;
  const lines: string[] = [];

  before(async () => {
    dir = makeTempDir('fl-compose-tls-');
    pki = makePki(dir);
    daemon = await startComposedDaemon(
      dir,
      {
        'enable-http': true,
        'http-endpoint': '127.0.0.1:0',
        'bridge-name': 'br0',
        'tls-cert': pki.serverCert,
        'tls-key': pki.serverKey,
        'tls-client-ca': pki.caFile,
        'tls-client-validate': true,
        'default-provider': 'qemu',
      },
      recordingLogger(lines),
    );
  });

  after(async () => {
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the gateway over HTTPS only to clients with a certificate from tls-client-ca', async () => {
    const url = `https://127.0.0.1:${daemon.httpPort}/v1alpha1/microvms`;
    const noCert = await httpsFailure(httpsCall(url, { ca: pki.ca }));
    assert.match(`${noCert.code ?? ''} ${noCert.message}`, /certificate.required|ECONNRESET|socket hang up/i);
    await assert.rejects(fetch(url.replace('https:', 'http:'), { signal: AbortSignal.timeout(5000) }), TypeError);
    const withCert = await httpsCall(url, { ca: pki.ca, ...pki.client });
    assert.equal(withCert.status, 200, withCert.text);
    assert.equal(withCert.protocol, 'TLSv1.3');
  });

  it('serves gRPC under the same rules', async () => {
    const client = new TestClient(`127.0.0.1:${daemon.grpcPort}`, {
      credentials: grpc.credentials.createSsl(pki.ca, pki.client.key, pki.client.cert),
      // The certificate's DNS name, so grpc-js doesn't send an IP address as the SNI server name.
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    });
    try {
      assert.deepEqual(await client.list('capmvm-ns'), []);
    } finally {
      client.close();
    }
  });

  it("logs the gateway's TLS mode", () => {
    assert.ok(lines.includes('TLS is enabled'), lines.join('\n'));
    assert.ok(lines.includes('http gateway serves HTTPS: TLS 1.3, client certificates required (mTLS)'), lines.join('\n'));
  });
});

describeWith('daemon composition: network-config-dhcp6 reaches the network-config builder', [...QEMU_PROGRAMS, ...programs('mtype')], {}, () => {
  let dir: string;
  let registry: TestRegistry;
  let daemon: RunningDaemon;

  before(async () => {
    dir = makeTempDir('fl-compose-dhcp6-');
    registry = await TestRegistry.start();
    // Not a bootable kernel: the VM never runs; its cidata disk is built before the VMM starts.
    registry.push('test/kernel', 'v1', buildImage([buildLayer({ 'boot/vmlinuz': 'not a kernel', 'boot/initrd': 'not an initrd' })]));
    daemon = await startComposedDaemon(dir, {
      'bridge-name': 'br0',
      insecure: true,
      'default-provider': 'qemu',
      'network-config-dhcp6': false,
      'maximum-retry': 1,
      'vmm-uid-range': '',
      'vmm-cgroup-parent': '',
    });
  });

  after(async () => {
    await daemon?.stop();
    await registry?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a DHCP NIC's generated network-config on the cidata disk has dhcp6: false", async () => {
    const client = new TestClient(`127.0.0.1:${daemon.grpcPort}`);
    try {
      const kernel = `${registry.host}/test/kernel:v1`;
      const vm = await client.create(
        create(MicroVMSpecSchema, {
          id: 'v6',
          namespace: 'ns',
          vcpu: 1,
          memoryInMb: 128,
          kernel: { image: kernel, filename: 'boot/vmlinuz', cmdline: {}, addNetworkConfig: true },
          initrd: { image: kernel, filename: 'boot/initrd' },
          interfaces: [{ deviceId: 'eth1', type: NetworkInterface_IfaceType.TAP, guestMac: '02:00:00:00:06:01' }],
          metadata: { 'meta-data': Buffer.from('local_hostname: v6\n').toString('base64') },
        }),
      );
      const cidata = join(dir, 'state', 'vm', 'ns', 'v6', vm.spec?.uid ?? '', 'cidata.img');
      await waitFor('the cidata disk', () => existsSync(cidata), 20_000, 50);
      const text = execFileSync('mtype', ['-i', cidata, '::network-config'], { encoding: 'utf8' });
      assert.deepEqual(parse(text, { version: '1.1' }), {
        version: 2,
        ethernets: { eth1: { match: { macaddress: '02:00:00:00:06:01' }, dhcp4: true, dhcp6: false, 'dhcp-identifier': 'mac' } },
      });
    } finally {
      client.close();
    }
  });
});
