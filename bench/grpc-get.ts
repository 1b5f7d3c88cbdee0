// GetMicroVM requests/s with 100 stored VMs: our gRPC server (real MicroVMService over the real
// SQLite store, with API metrics, as the daemon wires it) against a bare grpc-js server answering
// a canned GetMicroVMResponse of the same size. Goal: ours/bare >= 0.8.
//
//   node --import tsx bench/grpc-get.ts        (BENCH_SECONDS=5 BENCH_CONCURRENCY=32 BENCH_ROUNDS=3)
//
// Both servers live in this process; the load comes from bench/grpc-get-client.ts in a child
// process (its own core), N outstanding calls on one channel cycling through the 100 uids, 1 s
// warm-up then a fixed measured window. Ours and bare alternate (ABBA order), each measured
// BENCH_ROUNDS times; the table reports every run and the medians. The temp dir, the servers and
// any client process are cleaned up on success, error or Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fromBinary, type MessageShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { monotonicFactory } from 'ulid';
import { startGrpcServer, type RunningGrpcServer } from '../src/adapters/api/grpc/server.js';
import { grpcServiceDefinition } from '../src/adapters/api/grpc/service-definition.js';
import { ApiMetrics } from '../src/adapters/api/metrics.js';
import { silentLogger } from '../src/adapters/log/logger.js';
import { SqliteMicroVMRepository } from '../src/adapters/store/sqlite-repository.js';
import type { ProviderCapability, VmmProvider } from '../src/core/ports.js';
import { MicroVMService } from '../src/core/service.js';
import { DEFAULT_LIMITS, type CreateInput, type ProviderLookup } from '../src/core/validation.js';
import { GetMicroVMResponseSchema, MicroVM as MicroVMDesc } from '../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import type { ClientResult } from './grpc-get-client.js';

const REPO_ROOT = resolve(import.meta.dirname, '..');
const CLIENT = join(REPO_ROOT, 'bench/grpc-get-client.ts');

const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
};
// Bounded: 2 x ROUNDS x (SECONDS + ~2 s start-up and warm-up) = ~45 s by default, < 2 min at the caps.
const SECONDS = envInt('BENCH_SECONDS', 5, 1, 10);
const CONCURRENCY = envInt('BENCH_CONCURRENCY', 32, 1, 256);
const ROUNDS = envInt('BENCH_ROUNDS', 3, 1, 3);
const VM_COUNT = 100;
const GOAL = 0.8;

const qemu: VmmProvider = {
  name: 'qemu',
  capabilities: new Set<ProviderCapability>(['macvtap', 'tap']),
  availability: () => ({ available: false, reason: 'bench' }),
  start: () => Promise.resolve(),
  stop: () => Promise.resolve(),
  state: () => Promise.resolve('stopped'),
};
const providers: ProviderLookup = { names: () => ['qemu'], get: (n) => (n === 'qemu' ? qemu : undefined), defaultName: () => 'qemu' };

/** A CAPMVM-shaped VM (labels, cloud-init metadata, one tap), so responses have a realistic size. */
function input(i: number): CreateInput {
  const name = `vm-${String(i).padStart(3, '0')}`;
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return {
    name,
    namespace: 'bench-ns',
    labels: { 'cluster-name': 'c1' },
    vcpu: 2,
    memoryMb: 512,
    kernel: { image: 'ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77', filename: '', cmdline: {}, addNetworkConfig: true },
    rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'ghcr.io/liquidmetal-dev/capmvm-kubernetes:1.23.5' } },
    additionalVolumes: [],
    interfaces: [{ deviceId: 'eth1', type: 'tap', guestMac: `02:00:00:00:00:${(i % 256).toString(16).padStart(2, '0')}` }],
    metadata: {
      'meta-data': b64(`local_hostname: ${name}\nvm_host: host1\n`),
      'user-data': b64(`#cloud-config\nhostname: ${name}\n`),
      'vendor-data': b64('#cloud-config\nmounts: []\n'),
    },
    provider: '',
    allowGuestAgent: false,
  };
}

type GetResponse = MessageShape<typeof GetMicroVMResponseSchema>;

/** The bare server: the same service definition, getMicroVM answering one pre-built message. */
async function startBareServer(canned: GetResponse): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void => callback({ code: grpc.status.UNIMPLEMENTED }, null);
  server.addService(grpcServiceDefinition(MicroVMDesc), {
    getMicroVM: (_call: grpc.ServerUnaryCall<unknown, GetResponse>, callback: grpc.sendUnaryData<GetResponse>) => callback(null, canned),
    createMicroVM: unimplemented,
    deleteMicroVM: unimplemented,
    listMicroVMs: unimplemented,
    listMicroVMsStream: (call: grpc.ServerWritableStream<unknown, unknown>) => call.destroy(new Error('unimplemented')),
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e !== null ? rej(e) : res(p))),
  );
  return { port, server };
}

/** The wire bytes of one GetMicroVM answer from our server (a throwaway raw-bytes client). */
async function captureResponse(endpoint: string, uidRequest: Buffer): Promise<Buffer> {
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  const path = grpcServiceDefinition(MicroVMDesc)['getMicroVM']?.path ?? '';
  try {
    return await new Promise<Buffer>((res, rej) =>
      client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        uidRequest,
        (e, v) => (e !== null ? rej(e) : v === undefined ? rej(new Error('no response')) : res(v)),
      ),
    );
  } finally {
    client.close();
  }
}

const children = new Set<ChildProcess>();

function runClient(endpoint: string, uids: readonly string[]): Promise<ClientResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, endpoint, String(SECONDS), String(CONCURRENCY), ...uids], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let errOut = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
    const timer = setTimeout(
      () => {
        if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      },
      (SECONDS + 30) * 1000,
    );
    child.once('error', rej);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || line === '') rej(new Error(`client exited with ${code ?? signal ?? '?'}: ${errOut.trim()}`));
      else res(JSON.parse(line) as ClientResult);
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const fmt = (n: number, digits = 0): string => n.toFixed(digits);
const row = (cells: string[], widths: number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-grpc-'));
  let repo: SqliteMicroVMRepository | undefined;
  let ours: RunningGrpcServer | undefined;
  let bare: grpc.Server | undefined;
  const cleanup = async (): Promise<void> => {
    for (const child of children) if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    bare?.forceShutdown();
    bare = undefined;
    await ours?.close();
    ours = undefined;
    repo?.close();
    repo = undefined;
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    repo = SqliteMicroVMRepository.open(join(dir, 'state'));
    const ulid = monotonicFactory();
    const log = silentLogger();
    const service = new MicroVMService({
      repo,
      reconciler: { trigger() {} },
      providers,
      limits: DEFAULT_LIMITS,
      clock: { now: () => Date.now() },
      ids: { next: () => ulid() },
      log,
    });
    const uids: string[] = [];
    for (let i = 0; i < VM_COUNT; i++) {
      const created = service.create(input(i));
      if (!created.ok) throw new Error(`create vm ${i}: ${created.error.message}`);
      uids.push(created.value.id.uid);
    }

    ours = await startGrpcServer(service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log, metrics: new ApiMetrics() });
    const oursEndpoint = `127.0.0.1:${ours.port}`;

    // GetMicroVMRequest{uid} is field 1, a string: 0x0a <len> <bytes>.
    const firstUid = uids[0] ?? '';
    const captured = await captureResponse(oursEndpoint, Buffer.concat([Buffer.from([0x0a, firstUid.length]), Buffer.from(firstUid)]));
    const canned = fromBinary(GetMicroVMResponseSchema, captured);
    if (canned.microvm?.spec?.uid !== firstUid) throw new Error('captured response is not the first VM');
    const bareServer = await startBareServer(canned);
    bare = bareServer.server;
    const bareEndpoint = `127.0.0.1:${bareServer.port}`;

    console.log(
      `GetMicroVM, ${VM_COUNT} stored VMs: ${ROUNDS} rounds x ${SECONDS} s (after 1 s warm-up), ${CONCURRENCY} outstanding calls, client in a child process`,
    );
    console.log(`captured response of ${firstUid}: ${captured.length} bytes\n`);

    const results: Record<'ours' | 'bare', ClientResult[]> = { ours: [], bare: [] };
    const widths = [22, 6, 10, 9, 9, 8, 10];
    console.log(row(['server', 'round', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'resp bytes'], widths));
    for (let r = 0; r < ROUNDS; r++) {
      const order: Array<'ours' | 'bare'> = r % 2 === 0 ? ['ours', 'bare'] : ['bare', 'ours'];
      for (const which of order) {
        const result = await runClient(which === 'ours' ? oursEndpoint : bareEndpoint, uids);
        if (which === 'ours' && result.matched !== uids.length) throw new Error(`ours answered the asked VM for only ${result.matched}/${uids.length} uids`);
        results[which].push(result);
        const bytes = result.minBytes === result.maxBytes ? String(result.maxBytes) : `${result.minBytes}-${result.maxBytes}`;
        const label = which === 'ours' ? 'ours (service+sqlite)' : 'bare (canned message)';
        console.log(row([label, String(r + 1), fmt(result.rps), fmt(result.p50Ms, 2), fmt(result.p99Ms, 2), String(result.errors), bytes], widths));
      }
    }

    const summary = (xs: ClientResult[]): { rps: number; p50: number; p99: number; min: number; max: number } => ({
      rps: median(xs.map((x) => x.rps)),
      p50: median(xs.map((x) => x.p50Ms)),
      p99: median(xs.map((x) => x.p99Ms)),
      min: Math.min(...xs.map((x) => x.minBytes)),
      max: Math.max(...xs.map((x) => x.maxBytes)),
    });
    const o = summary(results.ours);
    const b = summary(results.bare);
    const ratio = o.rps / b.rps;
    console.log('\nmedians');
    const w2 = [22, 10, 9, 9, 12];
    console.log(row(['server', 'req/s', 'p50 ms', 'p99 ms', 'resp bytes'], w2));
    console.log(row(['ours (service+sqlite)', fmt(o.rps), fmt(o.p50, 2), fmt(o.p99, 2), o.min === o.max ? String(o.max) : `${o.min}-${o.max}`], w2));
    console.log(row(['bare (canned message)', fmt(b.rps), fmt(b.p50, 2), fmt(b.p99, 2), b.min === b.max ? String(b.max) : `${b.min}-${b.max}`], w2));
    const sameSize = o.min === o.max && b.min === b.max && o.max === b.max;
    console.log(`\nresponse sizes equal: ${sameSize ? 'yes' : 'NO'} (ours ${o.min}-${o.max} B, bare ${b.min}-${b.max} B)`);
    console.log(`ratio ours/bare (req/s): ${ratio.toFixed(3)}  goal >= ${GOAL}: ${ratio >= GOAL ? 'MET' : 'NOT MET'}`);
    console.log(`p50 latency ours/bare: ${(o.p50 / b.p50).toFixed(2)}x`);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
