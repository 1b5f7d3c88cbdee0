// Daemon RSS and List latency with 1000 (or 10 000) stored VMs, against the real daemon
// (bin/flintlockd, the built code; built first when dist/ is missing):
//
//   node --import tsx bench/daemon-scale.ts        (BENCH_VMS=1000 BENCH_CREATE_CONCURRENCY=16)
//   BENCH_VMS=10000 BENCH_SEED=store node --import tsx bench/daemon-scale.ts   (see SEED below)
//
// The daemon runs in a fresh, empty network namespace (`unshare --net`: only a down loopback, no
// route anywhere), so nothing it does can reach the network or touch the host's devices. Its
// bridge (br-bench) and parent (bench0) don't exist and maximum-retry is 0: every VM fails at its
// first host step (the tap on the missing bridge, or an image pull that cannot resolve the
// registry) before any device is made, so each ends FAILED after one reconcile. The API is a unix
// socket in a temp dir; the daemon is stopped with SIGTERM (then SIGKILL by its PID if it hangs)
// and the temp dir removed on success, error or Ctrl-C.
//
// Figures: RSS (VmRSS, VmHWM) at idle, after the creates, once all are reconciled and after the
// List calls; create throughput; time until all are FAILED; ListMicroVMs latency (all
// namespaces, and one namespace of 10) with its response size; GetMicroVM latency. Latencies
// are measured with a raw-bytes client (server + transport, no client-side decoding); the
// client's decode time of the full list is reported apart.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { grpcServiceDefinition } from '../src/adapters/api/grpc/service-definition.js';
import { MicroVMStatus_MicroVMState, NetworkInterface_IfaceType } from '../src/gen/flintlock/types/microvm_pb.js';
import {
  GetMicroVMRequestSchema,
  ListMicroVMsRequestSchema,
  ListMicroVMsResponseSchema,
  MicroVM as MicroVMDesc,
  type ListMessage,
} from '../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { WatchEvent_Type, type WatchEvent } from '../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { monotonicFactory } from 'ulid';
import { createInputFromProto } from '../src/adapters/api/convert.js';
import { silentLogger } from '../src/adapters/log/logger.js';
import { StaticProviderRegistry } from '../src/adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../src/adapters/store/sqlite-repository.js';
import { emptyStatus } from '../src/core/model.js';
import { MicroVMService } from '../src/core/service.js';
import { DEFAULT_LIMITS } from '../src/core/validation.js';
import { MemoryProvider } from '../test/helpers/doubles.js';
import { capmvmSpec, TestClient } from '../test/helpers/grpc-client.js';
import { envInt } from './env.js';
import { writeBenchJson } from './report-json.js';

const REPO_ROOT = resolve(import.meta.dirname, '..');
const FLINTLOCKD = join(REPO_ROOT, 'bin/flintlockd');

const VMS = envInt('BENCH_VMS', 1000, 10, 20_000);
const PER_NAMESPACE = 10;
const CREATE_CONCURRENCY = envInt('BENCH_CREATE_CONCURRENCY', 16, 1, 128);
/**
 * api: every VM created through the daemon's API and reconciled by it to FAILED (the default).
 * store: the store is filled before the daemon starts, by the same core MicroVMService.create the
 * API calls (same records, same SQLite repository, on the daemon's state dir), each then given the
 * FAILED status the reconciler writes for this failure (saveStatus + dequeue, as its
 * recordFailure does), so the daemon starts with every VM stored and nothing to reconcile. For
 * 10 000 VMs: through the API it took ~10 min (264 creates/s at 1000, ~20/s past 7000 while the
 * reconciler works through the backlog), and with 10 000 pending VMs seeded the daemon reconciled
 * only ~40 in 2.5 min. The hot spot (not fixed here): the vmm_identity step lists every stored VM
 * (repo.list({}): parse + freeze of each row) to pick a free uid, once per reconcile; with 5000
 * pending VMs that list was ~40% of the daemon's CPU in a profile (--cpu-prof), GC another 15%.
 */
const BRIDGE = 'br-bench';
const SEED = process.env['BENCH_SEED'] === 'store' ? 'store' : 'api';
const LIST_CALLS = 20;
/** One namespace's List is cheap: enough calls for a p99 that is not just the maximum of 20. */
const LIST_CALLS_NS = 200;
const STREAM_CALLS = 3;
const GET_CALLS = 200;
// Every wait is bounded: with 1000 VMs the whole run stays well under 2 minutes; the reconcile
// wait grows with the VMs (each fails at its first step, a few ms of daemon time).
const START_TIMEOUT_MS = 20_000;
const RECONCILE_TIMEOUT_MS = Math.max(60_000, VMS * 40);
const STOP_TIMEOUT_MS = 10_000;

interface Stopped {
  readonly code: number | null;
  readonly ms: number;
  /** SIGKILLed after STOP_TIMEOUT_MS. */
  readonly killed: boolean;
}

interface Memory {
  rssKb: number;
  hwmKb: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Unary calls with pre-encoded requests and undecoded responses: server + transport time only. */
class RawClient {
  private readonly client: grpc.Client;
  private readonly paths: Record<string, string>;
  private readonly metadata = new grpc.Metadata();

  constructor(endpoint: string) {
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
    const definition = grpcServiceDefinition(MicroVMDesc);
    this.paths = Object.fromEntries(Object.entries(definition).map(([k, v]) => [k, v.path]));
  }

  call(method: 'getMicroVM' | 'listMicroVMs', request: Buffer): Promise<Buffer> {
    const identity = (b: Buffer): Buffer => b;
    return new Promise((res, rej) =>
      this.client.makeUnaryRequest(this.paths[method] ?? '', identity, identity, request, this.metadata, (e, v) =>
        e !== null ? rej(e) : v === undefined ? rej(new Error('no response')) : res(v),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

const listRequest = (namespace: string): Buffer => Buffer.from(toBinary(ListMicroVMsRequestSchema, create(ListMicroVMsRequestSchema, { namespace })));
const getRequest = (uid: string): Buffer => Buffer.from(toBinary(GetMicroVMRequestSchema, create(GetMicroVMRequestSchema, { uid })));

async function timeCalls(n: number, fn: (i: number) => Promise<Buffer>): Promise<{ ms: number[]; bytes: number }> {
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await fn(i);
    ms.push(performance.now() - t0);
    bytes = res.length;
  }
  return { ms, bytes };
}

const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

/** VM i: CAPMVM-shaped, with taps, ten to a namespace. */
function specFor(i: number): ReturnType<typeof capmvmSpec> {
  const spec = capmvmSpec(`vm-${String(i).padStart(4, '0')}`);
  spec.namespace = `ns-${String(Math.floor(i / PER_NAMESPACE)).padStart(3, '0')}`;
  for (const iface of spec.interfaces) iface.type = NetworkInterface_IfaceType.TAP;
  return spec;
}

/** BENCH_SEED=store: the VMs written by the core's create into the daemon's store, before it starts. */
function seedStore(stateDir: string, n: number): { uids: string[]; ms: number } {
  const t0 = performance.now();
  const repo = SqliteMicroVMRepository.open(stateDir);
  try {
    const ulid = monotonicFactory();
    const service = new MicroVMService({
      repo,
      reconciler: { trigger() {} },
      // Validation only: the provider named as the daemon's default (qemu), with its NIC kinds.
      providers: new StaticProviderRegistry([new MemoryProvider()], 'qemu'),
      limits: DEFAULT_LIMITS,
      clock: { now: () => Date.now() },
      ids: { next: () => ulid() },
      log: silentLogger(),
    });
    const uids: string[] = [];
    // What the reconciler stores when the first step fails with maximum-retry 0 (recordFailure).
    const lastError = `bridge "${BRIDGE}" does not exist`;
    for (let i = 0; i < n; i++) {
      const created = service.create(createInputFromProto(specFor(i)));
      if (!created.ok) throw new Error(`seeding vm ${i}: ${created.error.message}`);
      const uid = created.value.id.uid;
      const failed = { ...emptyStatus(), state: 'failed' as const, retry: 1, lastError, failureReason: `reconcile failed 1 times; last error: ${lastError}` };
      if (repo.saveStatus(uid, failed, Date.now()) === undefined) throw new Error(`seeding vm ${i}: status not saved`);
      repo.dequeue(uid);
      uids.push(uid);
    }
    return { uids, ms: performance.now() - t0 };
  } finally {
    repo.close();
  }
}

/** ListMicroVMsStream of every namespace, read to its end. */
function streamAll(client: TestClient): Promise<Array<ListMessage['microvm']>> {
  return new Promise((res, rej) => {
    const out: Array<ListMessage['microvm']> = [];
    const stream = client.stream('');
    stream.on('data', (m: ListMessage) => out.push(m.microvm));
    stream.on('error', rej);
    stream.on('end', () => res(out));
  });
}

async function main(): Promise<void> {
  if (!existsSync(join(REPO_ROOT, 'dist/cli/flintlockd/main.js'))) {
    console.log('dist/ is missing: npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  }

  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-scale-'));
  const socket = join(dir, 'grpc.sock');
  const endpoint = `unix:${socket}`;
  const logFile = join(dir, 'daemon.log');
  const configFile = join(dir, 'config.yaml');
  writeFileSync(
    configFile,
    stringify({
      'state-dir': join(dir, 'state'),
      'grpc-endpoint': endpoint,
      insecure: true,
      'log-format': 'json',
      'log-output': logFile,
      'bridge-name': BRIDGE,
      'parent-iface': 'bench0',
      'maximum-retry': 0,
      // Named, so that the VMs seeded into the store (BENCH_SEED=store) carry the same provider.
      'default-provider': 'qemu',
    }),
  );

  let daemon: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  let output = '';
  const clients: Array<{ close(): void }> = [];
  let stopping: Promise<Stopped | undefined> | undefined;
  const stopDaemon = (): Promise<Stopped | undefined> => (stopping ??= stopOnce());
  const stopOnce = async (): Promise<Stopped | undefined> => {
    const child = daemon;
    if (child === undefined || exited === undefined || child.pid === undefined) return undefined;
    if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, ms: 0, killed: false };
    const t0 = performance.now();
    process.kill(child.pid, 'SIGTERM');
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, STOP_TIMEOUT_MS);
    const code = await exited;
    clearTimeout(timer);
    return { code, ms: performance.now() - t0, killed };
  };
  // Once: a signal's cleanup and the main flow's (its calls fail meanwhile) must not race.
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const c of clients.splice(0)) c.close();
      await stopDaemon();
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals): void => {
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const [l1, l5] = loadavg();
    console.log(`Daemon scale: ${VMS} VMs (${VMS / PER_NAMESPACE} namespaces of ${PER_NAMESPACE}), creates ${CREATE_CONCURRENCY} at a time`);
    console.log('daemon: bin/flintlockd (dist/) in a private network namespace (unshare --net)');
    console.log(`host: load average ${l1?.toFixed(2)} (1 min) ${l5?.toFixed(2)} (5 min), node ${process.version}\n`);

    // --- seed (BENCH_SEED=store) --------------------------------------------------------------
    const seeded = SEED === 'store' ? seedStore(join(dir, 'state'), VMS) : undefined;
    if (seeded !== undefined) console.log(`seeded ${VMS} VMs into the store in ${seeded.ms.toFixed(0)} ms (MicroVMService.create, before the daemon starts)`);

    // --- start ------------------------------------------------------------------------------
    const tStart = performance.now();
    // unshare execs the daemon in place: the PID is the daemon's own (for /proc and signals).
    const child = spawn('unshare', ['--net', process.execPath, FLINTLOCKD, 'run', '--config', configFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon = child;
    exited = new Promise((res) => child.once('exit', (code) => res(code)));
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const pid = child.pid;
    if (pid === undefined) throw new Error('flintlockd did not start');
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        throw new Error(`flintlockd exited with ${child.exitCode ?? child.signalCode}:\n${output}${log}`);
      }
      if (existsSync(socket)) break;
      if (performance.now() - tStart > START_TIMEOUT_MS) throw new Error(`flintlockd did not listen within ${START_TIMEOUT_MS} ms:\n${output}`);
      await sleep(20);
    }
    const startMs = performance.now() - tStart;
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(FLINTLOCKD)) throw new Error(`PID ${pid} is not the daemon`);
    await sleep(1000);
    const idle = memoryOf(pid);

    const client = new TestClient(endpoint);
    clients.push(client);
    const raw = new RawClient(endpoint);
    clients.push(raw);

    // --- create -----------------------------------------------------------------------------
    const uids: string[] = seeded?.uids ?? new Array<string>(VMS);
    let next = 0;
    const tCreate = seeded !== undefined ? tStart : performance.now();
    const creator = async (): Promise<void> => {
      for (let i = next++; i < VMS; i = next++) {
        const vm = await client.create(specFor(i));
        uids[i] = vm.spec?.uid ?? '';
      }
    };
    if (seeded === undefined) await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, creator));
    const createMs = seeded !== undefined ? Number.NaN : performance.now() - tCreate;
    const afterCreate = memoryOf(pid);

    // --- wait until every VM is FAILED --------------------------------------------------------
    // Watched on MicroVMWatch/WatchMicroVMs (a snapshot, then every change as it is stored) rather
    // than by polling List, which would cost the daemon a full encode of every VM each time.
    // (ListMicroVMsStream sends the matching VMs and ends, as the original: no changes.) A watch
    // that falls behind is cut off (RESOURCE_EXHAUSTED): then ListMicroVMsStream is read every 2 s instead.
    const allRequest = listRequest('');
    let sample = '';
    let watchCutOff = '';
    await new Promise<void>((res, rej) => {
      const stream = client.watch({});
      const failed = new Set<string>();
      let done = false;
      let poller: NodeJS.Timeout | undefined;
      const finish = (error?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(poller);
        stream.cancel();
        if (error !== undefined) rej(error);
        else res();
      };
      const timer = setTimeout(
        () => {
          const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-5).join('\n') : '';
          finish(
            new Error(`only ${failed.size}/${VMS} VMs FAILED after ${RECONCILE_TIMEOUT_MS} ms (a failure: ${sample || 'none yet'}); daemon log tail:\n${log}`),
          );
        },
        Math.max(0, RECONCILE_TIMEOUT_MS - (performance.now() - tCreate)),
      );
      const poll = (): void => {
        void streamAll(client)
          .then((vms) => {
            failed.clear();
            for (const vm of vms) {
              if (vm === undefined) continue;
              if (vm.status?.state !== MicroVMStatus_MicroVMState.FAILED) continue;
              failed.add(vm.spec?.uid ?? '');
              sample = vm.status.lastError;
            }
            if (failed.size === VMS) finish();
            else if (!done) poller = setTimeout(poll, 2000);
          })
          .catch((e: unknown) => finish(e instanceof Error ? e : new Error(String(e))));
      };
      stream.on('data', (event: WatchEvent) => {
        const vm = event.microvm;
        if (vm === undefined) return;
        const uid = vm.spec?.uid ?? '';
        if (event.type !== WatchEvent_Type.DELETED && vm.status?.state === MicroVMStatus_MicroVMState.FAILED) {
          failed.add(uid);
          sample = vm.status.lastError;
        } else failed.delete(uid);
        if (failed.size === VMS) finish();
      });
      stream.on('error', (e: grpc.ServiceError) => {
        if (e.code === grpc.status.CANCELLED || done) return;
        if (e.code !== grpc.status.RESOURCE_EXHAUSTED) {
          finish(e);
          return;
        }
        watchCutOff = e.details;
        poll();
      });
    });
    const reconciledMs = performance.now() - tCreate;
    await sleep(1000);
    const stored = memoryOf(pid);

    // --- List and Get latency ----------------------------------------------------------------
    // List of every namespace is refused once its answer passes the 4 MiB a client accepts by
    // default (~6500 CAPMVM-shaped VMs): then it is reported as refused, and ListMicroVMsStream
    // (one message per VM, read to its end) is timed instead.
    let listAll: { ms: number[]; bytes: number } | undefined;
    let listAllRefused = '';
    let allBytes: Buffer = Buffer.alloc(0);
    try {
      await raw.call('listMicroVMs', allRequest); // warm
      listAll = await timeCalls(LIST_CALLS, () => raw.call('listMicroVMs', allRequest));
      allBytes = await raw.call('listMicroVMs', allRequest);
    } catch (e) {
      if ((e as grpc.ServiceError).code !== grpc.status.RESOURCE_EXHAUSTED) throw e;
      listAllRefused = (e as grpc.ServiceError).details;
    }
    const decodeMs: number[] = [];
    let items = 0;
    for (let i = 0; listAll !== undefined && i < LIST_CALLS; i++) {
      const t0 = performance.now();
      items = fromBinary(ListMicroVMsResponseSchema, allBytes).microvm.length;
      decodeMs.push(performance.now() - t0);
    }
    const streamAllMs: number[] = [];
    let streamItems = 0;
    for (let i = 0; i < STREAM_CALLS; i++) {
      const t0 = performance.now();
      streamItems = (await streamAll(client)).length;
      streamAllMs.push(performance.now() - t0);
    }
    const nsName = `ns-${String(Math.floor(VMS / PER_NAMESPACE / 2)).padStart(3, '0')}`;
    const nsRequest = listRequest(nsName);
    const nsItems = fromBinary(ListMicroVMsResponseSchema, await raw.call('listMicroVMs', nsRequest)).microvm.length;
    const listNs = await timeCalls(LIST_CALLS_NS, () => raw.call('listMicroVMs', nsRequest));
    const getRequests = uids.map(getRequest);
    await raw.call('getMicroVM', getRequests[0] as Buffer);
    const get = await timeCalls(GET_CALLS, (i) => raw.call('getMicroVM', getRequests[(i * 7919) % getRequests.length] as Buffer));
    const afterList = memoryOf(pid);

    for (const c of clients.splice(0)) c.close();
    const stopped = await stopDaemon();

    // --- report -------------------------------------------------------------------------------
    const rows: Array<[string, string]> = [
      ['daemon start (spawn -> socket)', `${startMs.toFixed(0)} ms`],
      ...((seeded === undefined
        ? [
            ['RSS idle (0 VMs)', `${mb(idle.rssKb)}  (HWM ${mb(idle.hwmKb)})`],
            [`create ${VMS} VMs (gRPC, ${CREATE_CONCURRENCY} in flight)`, `${createMs.toFixed(0)} ms = ${((VMS * 1000) / createMs).toFixed(0)} VMs/s`],
            ['RSS right after creates', `${mb(afterCreate.rssKb)}  (HWM ${mb(afterCreate.hwmKb)})`],
            [`all ${VMS} FAILED (from first create)`, `${reconciledMs.toFixed(0)} ms (${(reconciledMs - createMs).toFixed(0)} ms after the last create)`],
          ]
        : [
            [`seed ${VMS} VMs into the store (MicroVMService.create)`, `${seeded.ms.toFixed(0)} ms`],
            ['RSS 1 s after the start (every VM stored, FAILED)', `${mb(idle.rssKb)}  (HWM ${mb(idle.hwmKb)})`],
            [`all ${VMS} seen FAILED on the watch (from the daemon's start)`, `${reconciledMs.toFixed(0)} ms`],
          ]) satisfies Array<[string, string]>),
      [`RSS with ${VMS} stored, reconciled, idle`, `${mb(stored.rssKb)}  (HWM ${mb(stored.hwmKb)})`],
      ...((listAll !== undefined
        ? [
            [`ListMicroVMs all (${items} items) p50 / p99`, `${percentile(listAll.ms, 50).toFixed(1)} / ${percentile(listAll.ms, 99).toFixed(1)} ms`],
            [
              'ListMicroVMs all: response size',
              `${allBytes.length} B (${(allBytes.length / 1024).toFixed(0)} KiB, ${(allBytes.length / Math.max(1, items)).toFixed(0)} B/VM)`,
            ],
            ['ListMicroVMs all: client decode p50', `${percentile(decodeMs, 50).toFixed(1)} ms (protobuf-es fromBinary, not in the latency above)`],
          ]
        : [['ListMicroVMs all', `refused: ${listAllRefused}`]]) satisfies Array<[string, string]>),
      [`ListMicroVMsStream all (${streamItems} items, read to the end) p50`, `${percentile(streamAllMs, 50).toFixed(0)} ms (${STREAM_CALLS} calls, decoded)`],
      [
        `ListMicroVMs one ns (${nsName}, ${nsItems} items) p50 / p99 (${LIST_CALLS_NS} calls)`,
        `${percentile(listNs.ms, 50).toFixed(2)} / ${percentile(listNs.ms, 99).toFixed(2)} ms  (${listNs.bytes} B)`,
      ],
      [`GetMicroVM p50 / p99 (${GET_CALLS} calls)`, `${percentile(get.ms, 50).toFixed(2)} / ${percentile(get.ms, 99).toFixed(2)} ms  (${get.bytes} B)`],
      ['RSS after the List/Get calls', `${mb(afterList.rssKb)}  (HWM ${mb(afterList.hwmKb)})`],
      ['SIGTERM -> exit', stopped === undefined ? '?' : `${stopped.ms.toFixed(0)} ms, code ${String(stopped.code)}${stopped.killed ? ' (SIGKILLed)' : ''}`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
    console.log(`\nfailure reason of a VM: ${sample}`);
    if (seeded === undefined)
      console.log(`RSS growth idle -> ${VMS} stored: ${mb(stored.rssKb - idle.rssKb)} (${((stored.rssKb - idle.rssKb) / VMS).toFixed(1)} kB/VM)`);
    if (watchCutOff !== '') console.log(`(the watch was cut off while the VMs failed: ${watchCutOff}; ListMicroVMsStream was polled instead)`);

    const listAllP50 = listAll !== undefined ? percentile(listAll.ms, 50) : Number.NaN;
    const nsP99 = percentile(listNs.ms, 99);
    const rssMb = stored.rssKb / 1024;
    writeBenchJson(
      'daemon-scale',
      [
        // Refused past 4 MiB (10 000 VMs): no figure then, the refusal is in the notes.
        ...(listAll !== undefined
          ? [
              {
                id: 'list-all-p50',
                label: `ListMicroVMs of all ${VMS} VMs, p50 of ${LIST_CALLS} (server + transport, raw client)`,
                value: listAllP50,
                unit: 'ms',
                goal: '<= 20 ms (1000 VMs)',
                met: listAllP50 <= 20,
              },
            ]
          : []),
        {
          id: 'rss-stored',
          label: `daemon RSS with ${VMS} stored VMs (all reconciled to FAILED, idle)`,
          value: rssMb,
          unit: 'MB',
          goal: '<= 200 MB (10 000 VMs)',
          met: rssMb <= 200,
        },
        {
          id: 'list-ns-p99',
          label: `ListMicroVMs of one namespace (${nsItems} VMs) with ${VMS} stored, p99 of ${LIST_CALLS_NS}`,
          value: nsP99,
          unit: 'ms',
          goal: '<= 10 ms (10 000 VMs)',
          met: nsP99 <= 10,
        },
        { id: 'get-p50', label: `GetMicroVM p50 with ${VMS} stored`, value: percentile(get.ms, 50), unit: 'ms' },
        ...(seeded === undefined
          ? [{ id: 'create-rate', label: `create ${VMS} VMs over gRPC, ${CREATE_CONCURRENCY} in flight`, value: (VMS * 1000) / createMs, unit: 'VMs/s' }]
          : []),
      ],
      [
        seeded === undefined
          ? `${VMS} CAPMVM-shaped VMs created through the API (${CREATE_CONCURRENCY} in flight) in ${(createMs / 1000).toFixed(1)} s, each reconciled once to FAILED (no bridge in the daemon's empty namespace, maximum-retry 0); all FAILED after ${(reconciledMs / 1000).toFixed(1)} s.`
          : `${VMS} CAPMVM-shaped VMs seeded into the store before the daemon started (BENCH_SEED=store, ${(seeded.ms / 1000).toFixed(1)} s): the core's MicroVMService.create on the daemon's SQLite store, each then given the FAILED status the reconciler writes for this failure, so nothing was left to reconcile. Not through the API: 10 000 creates through it took ~10 min when tried (2026-12-03: 264/s at 1000, ~20/s past 7000 while the reconciler worked through its backlog), and with 10 000 pending VMs seeded the daemon reconciled only ~40 in 2.5 min (host load ~10): a daemon hot spot, not fixed here: the vmm_identity step lists every stored VM (repo.list({})) to pick a free uid, once per reconcile, ~40% of the daemon's CPU in a profile with 5000 pending VMs.`,
        seeded === undefined
          ? `RSS idle ${mb(idle.rssKb)}, after the creates ${mb(afterCreate.rssKb)}, stored and idle ${mb(stored.rssKb)} (${((stored.rssKb - idle.rssKb) / VMS).toFixed(1)} kB/VM), after the List/Get calls ${mb(afterList.rssKb)} (HWM ${mb(afterList.hwmKb)}).`
          : `RSS 1 s after the start ${mb(idle.rssKb)}, stored and idle ${mb(stored.rssKb)}, after the List/Get calls ${mb(afterList.rssKb)} (HWM ${mb(afterList.hwmKb)}).`,
        listAll !== undefined
          ? `ListMicroVMs all: p50 ${listAllP50.toFixed(1)} / p99 ${percentile(listAll.ms, 99).toFixed(1)} ms, ${(allBytes.length / 1024).toFixed(0)} KiB (${(allBytes.length / Math.max(1, items)).toFixed(0)} B/VM); client decode ${percentile(decodeMs, 50).toFixed(1)} ms, not included.`
          : `ListMicroVMs all refused: ${listAllRefused}`,
        `ListMicroVMsStream all (${streamItems} VMs, read to the end, decoded): p50 ${percentile(streamAllMs, 50).toFixed(0)} ms; one namespace p50 ${percentile(listNs.ms, 50).toFixed(2)} / p99 ${nsP99.toFixed(2)} ms; GetMicroVM p50 ${percentile(get.ms, 50).toFixed(2)} / p99 ${percentile(get.ms, 99).toFixed(2)} ms.`,
        ...(watchCutOff !== '' ? [`The watch was cut off while the VMs failed (${watchCutOff}); ListMicroVMsStream was polled instead.`] : []),
      ],
    );
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
