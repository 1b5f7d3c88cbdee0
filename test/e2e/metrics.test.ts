// /metrics, /readyz and /healthz of the real daemon (bin/flintlockd) after a known sequence: a
// VM that boots under QEMU from an image in a real registry, a create refused as invalid, a VM
// whose image can't be pulled (FAILED after its retries), then both deleted. Every value that the
// sequence fixes is asserted exactly; the VMM's CPU and memory are compared with /proc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { MicroVMSpecSchema, MicroVMStatus_MicroVMState as State, NetworkInterface_IfaceType as IfaceType } from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient, UNREACHABLE_REGISTRY } from '../helpers/grpc-client.js';
import { ensureGuestImage, pushGuest, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { waitFor } from '../helpers/wait.js';

const GUEST = '127.0.0.1:5000/flintlock/guest:metrics';
/** Inside the test's own namespace: no other test can hold the port. */
const DEBUG = '127.0.0.1:8091';
const MICROVM = 'microvm.services.api.v1alpha1.MicroVM';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The Prometheus text format, one sample per line (HELP and TYPE lines skipped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = l[2] ?? '';
    samples.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return samples;
}

/** The one sample with exactly these labels (undefined when there is none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  const found = samples.filter((s) => s.name === name && Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} is unique`);
  return found[0]?.value;
}

describeWith('flintlockd metrics and health after a known sequence', GUEST_LAB, { timeout: 240_000 }, () => {
  let ns: TestNetns;
  let dir: string;
  let daemon: DaemonHandle;
  let client: TestClient;
  const stops: Array<() => void> = [];

  /** GET on the debug endpoint, from inside the namespace. */
  function debugGet(path: string): { status: number; body: string } {
    // busybox wget prints the body with -O -, and fails (exit 1) on a non-2xx answer.
    try {
      const body = execFileSync('ip', ['netns', 'exec', ns.name, 'busybox', 'wget', '-q', '-O', '-', `http://${DEBUG}${path}`], { encoding: 'utf8' });
      return { status: 200, body };
    } catch (e) {
      return { status: 0, body: String((e as { stderr?: string }).stderr ?? e) };
    }
  }

  const scrape = (): Sample[] => {
    const got = debugGet('/metrics');
    assert.equal(got.status, 200, got.body);
    return parseMetrics(got.body);
  };

  const handled = (samples: Sample[], method: string, code: string): number | undefined =>
    value(samples, 'grpc_server_handled_total', { grpc_type: 'unary', grpc_service: MICROVM, grpc_method: method, grpc_code: code });

  before(async () => {
    ensureGuestImage();
    dir = makeTempDir('fl-metrics-');
    chmodSync(dir, 0o755); // the VMMs run as uids of their own and pass through it
    ns = createTestNetns('flmet');
    const registry = await startRegistry(ns.name, dir);
    stops.push(registry.stop);
    pushGuest(ns.name, GUEST);
    daemon = await startDaemon({
      netns: ns.name,
      dir: join(dir, 'daemon'),
      config: {
        'bridge-name': 'br0',
        'default-provider': 'qemu',
        'maximum-retry': 1,
        'retry-backoff-base': '20ms',
        'retry-backoff-max': '50ms',
        'delete-vm-timeout': '2s',
        'debug-endpoint': DEBUG,
      },
    });
    client = new TestClient(daemon.endpoint);
  });

  after(async () => {
    client?.close();
    await daemon?.stop();
    for (const stop of stops) stop();
    ns?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('counts a boot, a refused create, a failed pull and two deletes', async () => {
    assert.deepEqual(debugGet('/readyz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(debugGet('/healthz'), { status: 200, body: 'ok\n' });
    const before = scrape();
    // Every method and code exists at zero before the first call (as go-grpc-prometheus does).
    assert.equal(handled(before, 'CreateMicroVM', 'InvalidArgument'), 0);
    assert.equal(value(before, 'grpc_server_started_total', { grpc_type: 'server_stream', grpc_service: MICROVM, grpc_method: 'ListMicroVMsStream' }), 0);
    assert.equal(value(before, 'flintlock_microvms', { state: 'created', provider: 'qemu' }), 0);

    const spec = (name: string, image: string): ReturnType<typeof create<typeof MicroVMSpecSchema>> =>
      create(MicroVMSpecSchema, {
        id: name,
        namespace: 'metrics',
        vcpu: 1,
        memoryInMb: 256,
        kernel: { image, filename: 'boot/vmlinuz' },
        initrd: { image, filename: 'boot/initrd' },
        interfaces: [{ deviceId: 'eth0', type: IfaceType.TAP }],
      });
    const good = (await client.create(spec('good', GUEST))).spec?.uid ?? '';
    const booted = await waitFor(
      'good CREATED',
      async () => {
        const vm = await client.get(good);
        if (vm.status?.state === State.FAILED) throw new Error(`FAILED: ${vm.status.failureReason}`);
        return vm.status?.state === State.CREATED ? vm : undefined;
      },
      90_000,
      100,
    );
    await assert.rejects(client.create({ ...spec('refused', GUEST), id: '' }), (e: ServiceError) => e.code === grpcStatus.INVALID_ARGUMENT);
    const bad = (await client.create(spec('bad', `${UNREACHABLE_REGISTRY}/none/kernel:1`))).spec?.uid ?? '';
    await waitFor('bad FAILED', async () => ((await client.get(bad)).status?.state === State.FAILED ? true : undefined), 30_000, 50);

    const s = scrape();
    assert.equal(handled(s, 'CreateMicroVM', 'OK'), 2);
    assert.equal(handled(s, 'CreateMicroVM', 'InvalidArgument'), 1);
    assert.equal(value(s, 'grpc_server_started_total', { grpc_type: 'unary', grpc_service: MICROVM, grpc_method: 'CreateMicroVM' }), 3);
    assert.equal(value(s, 'grpc_server_handling_seconds_count', { grpc_type: 'unary', grpc_service: MICROVM, grpc_method: 'CreateMicroVM' }), 3);
    assert.equal(value(s, 'grpc_server_msg_received_total', { grpc_type: 'unary', grpc_service: MICROVM, grpc_method: 'CreateMicroVM' }), 3);
    assert.equal(value(s, 'grpc_server_msg_sent_total', { grpc_type: 'unary', grpc_service: MICROVM, grpc_method: 'CreateMicroVM' }), 2);
    assert.equal(value(s, 'flintlock_microvms', { state: 'created', provider: 'qemu' }), 1);
    assert.equal(value(s, 'flintlock_microvms', { state: 'failed', provider: 'qemu' }), 1);
    assert.equal(value(s, 'flintlock_microvms', { state: 'pending', provider: 'qemu' }), 0);
    assert.equal(value(s, 'flintlock_reconcile_queue_entries'), 0);
    assert.equal(value(s, 'flintlock_reconcile_queue_oldest_due_age_seconds'), 0);
    // good ran every create step once; bad ran those before its pull once (a retry finds them
    // done) and failed its kernel pull on each of its 2 attempts.
    const okRuns = { vm_state_dir_create: 2, network_iface_create: 2, kernel_image: 1, initrd_image: 1, vmm_start: 1 };
    for (const [step, runs] of Object.entries(okRuns)) assert.equal(value(s, 'flintlock_reconcile_steps_total', { step, outcome: 'ok' }), runs, step);
    assert.equal(value(s, 'flintlock_reconcile_steps_total', { step: 'kernel_image', outcome: 'failed' }), 2);
    assert.equal(value(s, 'flintlock_reconcile_step_duration_seconds_count', { step: 'vmm_start' }), 1);
    // One image fetched and unpacked (the initrd comes from the same one); bytes as stored.
    assert.equal(value(s, 'flintlock_image_pulls_total', { outcome: 'pulled' }), 1);
    assert.equal(value(s, 'flintlock_image_pulls_total', { outcome: 'failed' }), 0, 'a registry that does not answer fails before any fetch');
    const blobsDir = join(daemon.stateDir, 'images/blobs/sha256');
    const blobs = readdirSync(blobsDir).map((hex) => ({ digest: `sha256:${hex}`, size: statSync(join(blobsDir, hex)).size }));
    assert.equal(
      value(s, 'flintlock_image_cache_bytes', { area: 'blobs' }),
      blobs.reduce((n, b) => n + b.size, 0),
    );
    assert.equal(value(s, 'flintlock_image_cache_images'), 1);
    const received = value(s, 'flintlock_image_pull_received_bytes_total') ?? 0;
    // Config and layers are fetched as blobs; the manifest comes with the resolve.
    const isManifest = (hex: string): boolean => {
      try {
        return Array.isArray((JSON.parse(readFileSync(join(blobsDir, hex), 'utf8')) as { layers?: unknown }).layers);
      } catch {
        return false; // a layer
      }
    };
    const manifestBytes = blobs.filter((b) => isManifest(b.digest.slice(7))).reduce((n, b) => n + b.size, 0);
    assert.equal(received, blobs.reduce((n, b) => n + b.size, 0) - manifestBytes, `received ${received}`);
    // The VMM's usage, as /proc has it.
    const pid = booted.status?.vmmPid ?? 0;
    const labels = { namespace: 'metrics', name: 'good', uid: good, provider: 'qemu' };
    const rss = value(s, 'flintlock_vmm_resident_memory_bytes', labels) ?? 0;
    const procRss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
    assert.ok(rss > 10 * 1024 * 1024 && Math.abs(rss - procRss) < 64 * 1024 * 1024, `rss ${rss}, /proc ${procRss}`);
    const cpu = value(s, 'flintlock_vmm_cpu_seconds_total', labels) ?? 0;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2)
      .split(' ');
    const procCpu = (Number(stat[11]) + Number(stat[12])) / 100;
    assert.ok(cpu > 0 && cpu <= procCpu, `cpu ${cpu}, /proc now ${procCpu}`);
    assert.equal(s.filter((x) => x.name === 'flintlock_vmm_cpu_seconds_total').length, 1, 'only the running VMM');

    await client.delete(good);
    await client.delete(bad);
    await waitFor('both removed', async () => ((await client.list('metrics')).length === 0 ? true : undefined), 30_000, 100);
    const end = scrape();
    assert.equal(handled(end, 'DeleteMicroVM', 'OK'), 2);
    for (const state of ['pending', 'created', 'failed', 'deleting']) assert.equal(value(end, 'flintlock_microvms', { state, provider: 'qemu' }), 0, state);
    assert.equal(value(end, 'flintlock_reconcile_steps_total', { step: 'vmm_stop', outcome: 'ok' }), 1, 'only good had a VMM to stop');
    assert.equal(value(end, 'flintlock_reconcile_steps_total', { step: 'vm_state_dir_delete', outcome: 'ok' }), 2);
    assert.equal(end.filter((x) => x.name.startsWith('flintlock_vmm_')).length, 0, 'no VMM left to report');
  });
});
