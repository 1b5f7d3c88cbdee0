// Load benchmark of issue 9, against the real daemon (bin/flintlockd, the built code; built first
// when dist/ is missing). As root (like test/e2e):
//
//   node --import tsx bench/load.ts
//   LOAD_CLIENTS=64 LOAD_SECONDS=60 LOAD_ROUNDS=3 node --import tsx bench/load.ts      (the defaults)
//
// Other knobs: LOAD_BOOTS (healthy boots under load per round, 3), LOAD_IDLE_BOOTS (on the idle
// daemon per round, 2), LOAD_THINK_MS (mean pause between one client's calls, uniform in 0..2x,
// 50; 0 = closed loop), LOAD_VMS_PER_CLIENT (live VMs a client keeps at most, 6),
// LOAD_CPU_PROF=<dir> (the daemon runs under `node --cpu-prof --cpu-prof-dir=<dir>`; the profile
// is written when it exits at the end), LOAD_SAMPLES=<file> (every RSS/fd sample as CSV),
// LOAD_CLIENT_PROCESSES (child processes the clients are spread over, 4; see below).
//
// Lab (as test/e2e/daemon-boot.test.ts): a network namespace of this run's with a bridge br0,
// Debian's docker-registry on its loopback holding the test guest (scripts/build-guest-image.sh),
// the daemon inside it (`bridge-name: br0`, no `parent-iface`, `default-provider: qemu`, the VMM
// sandbox and cgroups as by default, `retry-backoff-base: 1s` so failing VMs come back often, log
// to a file at info level), its API on a unix socket in this run's temp dir.
//
// Each round:
//  1. idle: LOAD_IDLE_BOOTS healthy VMs (the test guest, QEMU under TCG, a tap on br0), one at a
//     time, on a daemon with no other VM: create -> CREATED, then delete -> gone; then 200
//     GetMicroVM of one VM, one at a time (the idle baseline of Get on this machine, this run).
//  2. load, LOAD_SECONDS: LOAD_CLIENTS clients, each its own gRPC connection and namespace, loop
//     over a mix of GetMicroVM (55%, one of its VMs), ListMicroVMs (20%, its namespace),
//     CreateMicroVM (12.5%) and DeleteMicroVM (12.5%, or when it holds LOAD_VMS_PER_CLIENT).
//     Creates that fail fast: half pull from a registry port where nothing listens (transient:
//     retried with backoff until FAILED), a quarter name an image the local registry doesn't have,
//     a quarter ask for a macvtap NIC with no parent-iface configured (refused at Create:
//     FAILED_PRECONDITION). Meanwhile LOAD_BOOTS healthy VMs, as in 1, spread over the first
//     three quarters of the window.
//  3. cleanup: every client deletes its VMs; wait until the store is empty; 3 s to settle; the
//     end-of-round RSS and fd count.
// One warm-up boot before round 1 fills the image cache, so idle and loaded boots pull alike.
//
// Figures: calls and errors by gRPC code per RPC, p50/p99 per RPC (measured with raw-bytes calls:
// server + transport, no client-side decoding), time to CREATED of the healthy VMs loaded vs idle
// (ratio of the medians), the daemon's RSS (VmRSS) and open fds (/proc/<pid>/fd) sampled every
// second, its CPU, the load average. Goals (issue 9): p99 Get < 50 ms, loaded time to CREATED
// within 2x idle, no growth across rounds (end-of-round fds equal, RSS within 10% of round 1's).
// Clients and daemon share this machine's cores: on a busy host every figure is worse; compare
// the ratio, and rerun on a quiet machine for absolute numbers.
//
// Cleanup on success, error or Ctrl-C: the VMs are deleted through the API (then the daemon is
// stopped with SIGTERM, SIGKILL by PID after 15 s); whatever remains is ended by PID at exit
// (test/helpers/processes.ts: the daemon, every process naming its state dir, the registry), the
// cgroups removed, the namespace (and every tap in it) deleted, the temp dir removed.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { grpcServiceDefinition } from '../src/adapters/api/grpc/service-definition.js';
import { WatchEvent_Type as EventType, type WatchEvent } from '../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import {
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState as State,
  NetworkInterface_IfaceType as IfaceType,
  type MicroVMSpec,
} from '../src/gen/flintlock/types/microvm_pb.js';
import {
  CreateMicroVMRequestSchema,
  CreateMicroVMResponseSchema,
  DeleteMicroVMRequestSchema,
  GetMicroVMRequestSchema,
  ListMicroVMsRequestSchema,
  MicroVM as MicroVMDesc,
} from '../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { REPO_ROOT, startDaemon, type DaemonHandle } from '../test/helpers/daemon.js';
import { capmvmSpec, TestClient } from '../test/helpers/grpc-client.js';
import { createBenchLab, ensureGuestImage, pushGuest } from '../test/helpers/guest-lab.js';
import { GUEST_LAB, missingPrerequisites } from '../test/helpers/prerequisites.js';
import { atExit } from '../test/helpers/processes.js';
import { envInt } from './env.js';

const CLIENTS = envInt('LOAD_CLIENTS', 64, 1, 512);
const SECONDS = envInt('LOAD_SECONDS', 60, 5, 3600);
const ROUNDS = envInt('LOAD_ROUNDS', 3, 1, 50);
const BOOTS = envInt('LOAD_BOOTS', 3, 0, 20);
const IDLE_BOOTS = envInt('LOAD_IDLE_BOOTS', 2, 1, 20);
const THINK_MS = envInt('LOAD_THINK_MS', 50, 0, 60_000);
const VMS_PER_CLIENT = envInt('LOAD_VMS_PER_CLIENT', 6, 1, 100);
const CPU_PROF = process.env.LOAD_CPU_PROF;
const SAMPLES_FILE = process.env.LOAD_SAMPLES;
const CLIENT_PROCESSES = envInt('LOAD_CLIENT_PROCESSES', 4, 1, 64);

const GUEST = '127.0.0.1:5000/flintlock/guest:load';
const HEALTHY_NS = 'healthy';
const CALL_DEADLINE_MS = 30_000;
const BOOT_DEADLINE_MS = 120_000;
const CLEANUP_DEADLINE_MS = 180_000;
const SETTLE_MS = 3000;
const IDLE_GETS = 200;
/** "No growth": end-of-round RSS within this fraction of round 1's. */
const RSS_TOLERANCE = 0.1;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();
const loads = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// --- the daemon, seen from /proc ----------------------------------------------------------------

interface Sample {
  readonly t: number;
  readonly round: number;
  readonly phase: string;
  readonly rssKb: number;
  readonly fds: number;
}

const CLK_TCK = 100;
function cpuMs(pid: number): number {
  // Fields after the command (which may hold spaces) start at state; utime, stime are 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}
function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
}
const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

// --- raw calls ----------------------------------------------------------------------------------

type Rpc = 'get' | 'list' | 'create' | 'delete';
const RPCS: readonly Rpc[] = ['get', 'list', 'create', 'delete'];
const PATHS: Record<Rpc, string> = (() => {
  const d = grpcServiceDefinition(MicroVMDesc);
  const path = (k: string): string => d[k]?.path ?? '';
  return { get: path('getMicroVM'), list: path('listMicroVMs'), create: path('createMicroVM'), delete: path('deleteMicroVM') };
})();

class CallStats {
  readonly ms: Record<Rpc, number[]> = { get: [], list: [], create: [], delete: [] };
  readonly codes: Record<Rpc, Map<string, number>> = { get: new Map(), list: new Map(), create: new Map(), delete: new Map() };

  record(rpc: Rpc, ms: number, code: grpc.status): void {
    this.ms[rpc].push(ms);
    const name = grpc.status[code] ?? String(code);
    this.codes[rpc].set(name, (this.codes[rpc].get(name) ?? 0) + 1);
  }
}

/** One client connection: pre-encoded requests, undecoded responses (server + transport time). */
class RawClient {
  private readonly client: grpc.Client;
  private readonly metadata = new grpc.Metadata();

  constructor(endpoint: string) {
    // A subchannel pool of its own: a connection per client, as separate controllers would have.
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  /** The response bytes, or the error code; timed into `stats`. */
  call(rpc: Rpc, request: Uint8Array, stats: CallStats): Promise<Buffer | grpc.status> {
    const identity = (b: Buffer): Buffer => b;
    const t0 = now();
    return new Promise((res) =>
      this.client.makeUnaryRequest(
        PATHS[rpc],
        identity,
        identity,
        Buffer.from(request),
        this.metadata,
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (e: grpc.ServiceError | null, v?: Buffer) => {
          const code = e !== null ? e.code : grpc.status.OK;
          stats.record(rpc, now() - t0, code);
          res(e !== null ? e.code : (v ?? Buffer.alloc(0)));
        },
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

const encodeGet = (uid: string): Uint8Array => toBinary(GetMicroVMRequestSchema, create(GetMicroVMRequestSchema, { uid }));
const encodeDelete = (uid: string): Uint8Array => toBinary(DeleteMicroVMRequestSchema, create(DeleteMicroVMRequestSchema, { uid }));
const encodeList = (namespace: string): Uint8Array => toBinary(ListMicroVMsRequestSchema, create(ListMicroVMsRequestSchema, { namespace }));
const encodeCreate = (spec: MicroVMSpec): Uint8Array => toBinary(CreateMicroVMRequestSchema, create(CreateMicroVMRequestSchema, { microvm: spec }));

// --- what the VMs are -----------------------------------------------------------------------------

function healthySpec(name: string): MicroVMSpec {
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: HEALTHY_NS,
    vcpu: 1,
    memoryInMb: 256,
    kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig: false },
    initrd: { image: GUEST, filename: 'boot/initrd' },
    interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP }],
  });
}

/** A create that fails fast, one of three ways (see the header). */
function failingSpec(namespace: string, name: string, kind: number): MicroVMSpec {
  const spec = capmvmSpec(name);
  spec.namespace = namespace;
  const tap = (): void => {
    for (const iface of spec.interfaces) iface.type = IfaceType.TAP;
  };
  if (kind % 4 < 2) {
    tap(); // kernel and root volume on a port where nothing listens: connection refused, retried
  } else if (kind % 4 === 2) {
    tap();
    if (spec.kernel !== undefined) spec.kernel.image = '127.0.0.1:5000/flintlock/missing:1';
  } // else: macvtap (the API's default type) with no parent-iface: FAILED_PRECONDITION at Create
  return spec;
}

// --- healthy boots, timed through the watch ---------------------------------------------------------

interface Boot {
  readonly createdMs: number;
  readonly goneMs: number;
  /** CREATED came while the load was on. */
  readonly underLoad: boolean;
}

/** Times of each healthy VM's CREATED and deletion, from WatchMicroVMs on the healthy namespace. */
class HealthyWatch {
  private readonly created = new Map<string, number>();
  private readonly failed = new Map<string, string>();
  private readonly deleted = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private readonly stream: grpc.ClientReadableStream<WatchEvent>;
  private broken: Error | undefined;

  constructor(client: TestClient) {
    this.stream = client.watch({ namespace: HEALTHY_NS });
    this.stream.on('data', (e: WatchEvent) => {
      const uid = e.microvm?.spec?.uid ?? '';
      const t = now();
      if (e.type === EventType.DELETED) this.deleted.set(uid, t);
      else if (e.microvm?.status?.state === State.CREATED && !this.created.has(uid)) this.created.set(uid, t);
      else if (e.microvm?.status?.state === State.FAILED) this.failed.set(uid, e.microvm.status.failureReason);
      for (const w of this.waiters) w();
    });
    this.stream.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) this.broken = new Error(`the watch of healthy VMs broke: ${e.message}`);
      for (const w of this.waiters) w();
    });
  }

  /** When `uid` reached CREATED (or was deleted), as seen on the watch. */
  async until(uid: string, what: 'created' | 'deleted', deadlineMs: number): Promise<number> {
    const deadline = now() + deadlineMs;
    for (;;) {
      if (this.broken !== undefined) throw this.broken;
      const reason = this.failed.get(uid);
      if (what === 'created' && reason !== undefined) throw new Error(`healthy VM ${uid} FAILED: ${reason}`);
      const at = (what === 'created' ? this.created : this.deleted).get(uid);
      if (at !== undefined) return at;
      if (now() > deadline) throw new Error(`healthy VM ${uid} not ${what} within ${deadlineMs} ms`);
      await new Promise<void>((res) => {
        const wake = (): void => {
          this.waiters.delete(wake);
          clearTimeout(timer);
          res();
        };
        const timer = setTimeout(wake, 200);
        this.waiters.add(wake);
      });
    }
  }

  close(): void {
    this.stream.cancel();
  }
}

// --- the load -----------------------------------------------------------------------------------------

class LoadClient {
  private readonly raw: RawClient;
  private readonly namespace: string;
  readonly live: string[] = [];
  private created = 0;

  constructor(
    endpoint: string,
    readonly index: number,
  ) {
    this.raw = new RawClient(endpoint);
    this.namespace = `load-${String(index).padStart(3, '0')}`;
  }

  async run(until: number, stats: CallStats): Promise<void> {
    while (now() < until) {
      await this.step(stats);
      if (THINK_MS > 0) await sleep(Math.random() * 2 * THINK_MS);
    }
  }

  private async step(stats: CallStats): Promise<void> {
    const r = Math.random();
    if (this.live.length > 0 && r < 0.55) {
      await this.raw.call('get', encodeGet(this.pick()), stats);
    } else if (r < 0.75) {
      await this.raw.call('list', encodeList(this.namespace), stats);
    } else if (r < 0.875 && this.live.length < VMS_PER_CLIENT) {
      const n = this.created++;
      const spec = failingSpec(this.namespace, `vm-${this.index}-${n}`, n + this.index);
      const res = await this.raw.call('create', encodeCreate(spec), stats);
      if (typeof res !== 'number') {
        const uid = fromBinary(CreateMicroVMResponseSchema, res).microvm?.spec?.uid;
        if (uid !== undefined) this.live.push(uid);
      }
    } else if (this.live.length > 0) {
      const [uid] = this.live.splice(Math.floor(Math.random() * this.live.length), 1);
      if (uid !== undefined) await this.raw.call('delete', encodeDelete(uid), stats);
    }
  }

  private pick(): string {
    return this.live[Math.floor(Math.random() * this.live.length)] ?? '';
  }

  /** `n` Gets of one VM of its own, one at a time (a baseline); the VM is deleted after. */
  async probeGets(n: number, stats: CallStats): Promise<void> {
    const res = await this.raw.call('create', encodeCreate(failingSpec(this.namespace, `probe-${this.created++}`, 0)), stats);
    const uid = typeof res === 'number' ? undefined : fromBinary(CreateMicroVMResponseSchema, res).microvm?.spec?.uid;
    if (uid === undefined) throw new Error(`the probe VM was not created (code ${String(res)})`);
    const request = encodeGet(uid);
    for (let i = 0; i < n; i++) await this.raw.call('get', request, stats);
    await this.raw.call('delete', encodeDelete(uid), stats);
  }

  /** Deletes every VM it holds (cleanup). */
  async deleteAll(stats: CallStats): Promise<void> {
    for (const uid of this.live.splice(0)) await this.raw.call('delete', encodeDelete(uid), stats);
  }

  close(): void {
    this.raw.close();
  }
}

// --- the clients' processes ------------------------------------------------------------------------------
// The clients run in LOAD_CLIENT_PROCESSES child processes (this file with --client-process), as
// separate controllers would: in one process their own event loop fell behind under load (its
// delay p99 was 32-62 ms, all of it counted in every call's time), so the figures measured the
// bench as much as the daemon.

type StatsWire = { ms: Record<Rpc, number[]>; codes: Record<Rpc, Array<[string, number]>> };
type ToChild =
  { type: 'init'; endpoint: string; indices: number[] } | { type: 'run'; ms: number } | { type: 'probe'; n: number } | { type: 'cleanup' } | { type: 'close' };
type FromChild =
  | { type: 'ready' }
  | { type: 'ran'; stats: StatsWire; cpuMs: number; lagP99Ms: number }
  | { type: 'probed'; stats: StatsWire }
  | { type: 'cleaned'; stats: StatsWire }
  | { type: 'failed'; error: string };

const statsToWire = (stats: CallStats): StatsWire => ({
  ms: stats.ms,
  codes: { get: [...stats.codes.get], list: [...stats.codes.list], create: [...stats.codes.create], delete: [...stats.codes.delete] },
});
function mergeStats(into: CallStats, wire: StatsWire): void {
  for (const rpc of RPCS) {
    for (const ms of wire.ms[rpc]) into.ms[rpc].push(ms);
    for (const [code, n] of wire.codes[rpc]) into.codes[rpc].set(code, (into.codes[rpc].get(code) ?? 0) + n);
  }
}

/** One child process holding some of the clients; requests answered in order. */
class ClientProcess {
  private readonly child: ChildProcess;
  private readonly replies: Array<{ resolve: (m: FromChild) => void; reject: (e: Error) => void }> = [];
  private exited: Error | undefined;

  constructor(endpoint: string, indices: number[]) {
    this.child = fork(fileURLToPath(import.meta.url), ['--client-process'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromChild) => {
      const waiter = this.replies.shift();
      if (m.type === 'failed') waiter?.reject(new Error(`a client process failed: ${m.error}`));
      else waiter?.resolve(m);
    });
    this.child.on('exit', (code, signal) => {
      this.exited = new Error(`a client process exited (${String(code ?? signal)})`);
      for (const w of this.replies.splice(0)) w.reject(this.exited);
    });
    this.send({ type: 'init', endpoint, indices });
  }

  request(message: ToChild): Promise<FromChild> {
    return new Promise((resolve, reject) => {
      if (this.exited !== undefined) return reject(this.exited);
      this.replies.push({ resolve, reject });
      this.child.send(message);
    });
  }

  private send(message: ToChild): void {
    this.replies.push({ resolve: () => undefined, reject: () => undefined });
    this.child.send(message);
  }

  close(): void {
    if (this.exited === undefined) this.child.send({ type: 'close' } satisfies ToChild);
  }

  kill(): void {
    if (this.exited === undefined && this.child.pid !== undefined) this.child.kill('SIGKILL');
  }
}

class ClientPool {
  private readonly processes: ClientProcess[] = [];

  constructor(endpoint: string) {
    for (let k = 0; k < Math.min(CLIENT_PROCESSES, CLIENTS); k++) {
      const indices: number[] = [];
      for (let i = k; i < CLIENTS; i += CLIENT_PROCESSES) indices.push(i);
      this.processes.push(new ClientProcess(endpoint, indices));
    }
    for (const p of this.processes) atExit(() => p.kill());
  }

  async run(ms: number, stats: CallStats): Promise<{ cpuMs: number; lagP99Ms: number }> {
    const replies = await Promise.all(this.processes.map((p) => p.request({ type: 'run', ms })));
    let cpu = 0;
    let lag = 0;
    for (const r of replies) {
      if (r.type !== 'ran') continue;
      mergeStats(stats, r.stats);
      cpu += r.cpuMs;
      lag = Math.max(lag, r.lagP99Ms);
    }
    return { cpuMs: cpu, lagP99Ms: lag };
  }

  async probeGets(n: number, stats: CallStats): Promise<void> {
    const r = await (this.processes[0] as ClientProcess).request({ type: 'probe', n });
    if (r.type === 'probed') mergeStats(stats, r.stats);
  }

  async deleteAll(stats: CallStats): Promise<void> {
    for (const r of await Promise.all(this.processes.map((p) => p.request({ type: 'cleanup' })))) if (r.type === 'cleaned') mergeStats(stats, r.stats);
  }

  close(): void {
    for (const p of this.processes) p.close();
  }
}

/** The child's side: its clients, driven by the parent's messages. */
function clientProcessMain(): void {
  let clients: LoadClient[] = [];
  const reply = (m: FromChild): void => void process.send?.(m);
  process.on('message', (m: ToChild) => {
    void (async () => {
      try {
        switch (m.type) {
          case 'init':
            clients = m.indices.map((i) => new LoadClient(m.endpoint, i));
            return reply({ type: 'ready' });
          case 'run': {
            const stats = new CallStats();
            const cpu0 = process.cpuUsage();
            const lag = monitorEventLoopDelay({ resolution: 10 });
            lag.enable();
            const until = now() + m.ms;
            await Promise.all(clients.map((c) => c.run(until, stats)));
            lag.disable();
            const cpu = process.cpuUsage(cpu0);
            return reply({ type: 'ran', stats: statsToWire(stats), cpuMs: (cpu.user + cpu.system) / 1000, lagP99Ms: lag.percentile(99) / 1e6 });
          }
          case 'probe': {
            const stats = new CallStats();
            await (clients[0] as LoadClient).probeGets(m.n, stats);
            return reply({ type: 'probed', stats: statsToWire(stats) });
          }
          case 'cleanup': {
            const stats = new CallStats();
            await Promise.all(clients.map((c) => c.deleteAll(stats)));
            return reply({ type: 'cleaned', stats: statsToWire(stats) });
          }
          case 'close':
            for (const c of clients) c.close();
            process.disconnect();
            return;
        }
      } catch (e) {
        reply({ type: 'failed', error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
      }
    })();
  });
}

// --- statistics ------------------------------------------------------------------------------------------

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}
const median = (values: readonly number[]): number => percentile(values, 50);
const f = (ms: number): string => (Number.isNaN(ms) ? '-' : ms < 10 ? ms.toFixed(2) : ms.toFixed(0));
const mb = (kb: number): string => `${(kb / 1024).toFixed(1)}`;

interface RoundFigures {
  readonly round: number;
  readonly stats: CallStats;
  readonly idle: Boot[];
  /** GetMicroVM on the idle daemon, one call at a time (the same machine's baseline). */
  readonly idleGetMs: number[];
  readonly loaded: Boot[];
  readonly loadSeconds: number;
  readonly daemonCpuPercent: number;
  readonly vmsAtEnd: number;
  readonly cleanupMs: number;
  readonly endRssKb: number;
  readonly endFds: number;
  readonly peakRssKb: number;
  readonly peakFds: number;
  readonly loadavgStart: string;
  readonly loadavgEnd: string;
  /** The clients' event-loop delay p99 in the load phase (the worst of their processes): how late the clients themselves ran. */
  readonly clientLagP99Ms: number;
  readonly clientCpuPercent: number;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')).join('\n');
}

function codesOf(stats: CallStats, rpc: Rpc): string {
  return [...stats.codes[rpc].entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
}

function report(rounds: readonly RoundFigures[]): boolean {
  const all = new CallStats();
  for (const r of rounds)
    for (const rpc of RPCS) {
      all.ms[rpc].push(...r.stats.ms[rpc]);
      for (const [code, n] of r.stats.codes[rpc]) all.codes[rpc].set(code, (all.codes[rpc].get(code) ?? 0) + n);
    }
  console.log('\n=== latency per RPC (ms), every round, load phase only ===');
  const header = ['rpc', ...rounds.flatMap((r) => [`r${r.round} n`, `r${r.round} p50`, `r${r.round} p99`]), 'all p50', 'all p99', 'all max'];
  console.log(
    table([
      header,
      ...RPCS.map((rpc) => [
        rpc,
        ...rounds.flatMap((r) => [String(r.stats.ms[rpc].length), f(median(r.stats.ms[rpc])), f(percentile(r.stats.ms[rpc], 99))]),
        f(median(all.ms[rpc])),
        f(percentile(all.ms[rpc], 99)),
        f(Math.max(...all.ms[rpc])),
      ]),
    ]),
  );
  const idleGets = rounds.flatMap((r) => r.idleGetMs);
  console.log(
    `idle daemon, ${IDLE_GETS} sequential GetMicroVM per round: p50 ${f(median(idleGets))} ms, p99 ${f(percentile(idleGets, 99))} ms (per round p99: ${rounds.map((r) => f(percentile(r.idleGetMs, 99))).join(' ')})`,
  );
  console.log('\n=== results by gRPC code (all rounds, load phase) ===');
  for (const rpc of RPCS) console.log(`${rpc.padEnd(7)} ${codesOf(all, rpc)}`);
  const unexpected = RPCS.flatMap((rpc) =>
    [...all.codes[rpc].entries()]
      .filter(([code]) => !(code === 'OK' || (rpc === 'create' && code === 'FAILED_PRECONDITION')))
      .map(([c, n]) => `${rpc} ${c} ${n}`),
  );
  console.log(`unexpected codes: ${unexpected.length === 0 ? 'none' : unexpected.join(', ')} (expected: OK; FAILED_PRECONDITION for the macvtap creates)`);

  console.log('\n=== healthy VM: create -> CREATED (ms) ===');
  console.log(
    table([
      ['round', 'idle', 'under load', 'ratio (medians)', 'delete -> gone idle / loaded'],
      ...rounds.map((r) => [
        String(r.round),
        r.idle.map((b) => f(b.createdMs)).join(' '),
        r.loaded.map((b) => `${f(b.createdMs)}${b.underLoad ? '' : '*'}`).join(' '),
        (median(r.loaded.map((b) => b.createdMs)) / median(r.idle.map((b) => b.createdMs))).toFixed(2),
        `${f(median(r.idle.map((b) => b.goneMs)))} / ${f(median(r.loaded.map((b) => b.goneMs)))}`,
      ]),
    ]),
  );
  const idleAll = rounds.flatMap((r) => r.idle.map((b) => b.createdMs));
  const loadedAll = rounds.flatMap((r) => r.loaded.map((b) => b.createdMs));
  const ratio = median(loadedAll) / median(idleAll);
  console.log(`median idle ${f(median(idleAll))} ms, under load ${f(median(loadedAll))} ms (max ${f(Math.max(...loadedAll))}), ratio ${ratio.toFixed(2)}`);
  if (rounds.some((r) => r.loaded.some((b) => !b.underLoad))) console.log('(* CREATED after the load window ended)');

  console.log('\n=== daemon per round ===');
  console.log(
    table([
      [
        'round',
        'calls/s',
        'daemon CPU',
        'clients CPU',
        'clients loop lag p99',
        'VMs at load end',
        'cleanup',
        'RSS peak MB',
        'RSS end MB',
        'fds peak',
        'fds end',
        'loadavg start',
        'loadavg end',
      ],
      ...rounds.map((r) => [
        String(r.round),
        (RPCS.reduce((n, rpc) => n + r.stats.ms[rpc].length, 0) / r.loadSeconds).toFixed(0),
        `${r.daemonCpuPercent.toFixed(0)}%`,
        `${r.clientCpuPercent.toFixed(0)}%`,
        `${f(r.clientLagP99Ms)} ms`,
        String(r.vmsAtEnd),
        `${(r.cleanupMs / 1000).toFixed(1)} s`,
        mb(r.peakRssKb),
        mb(r.endRssKb),
        String(r.peakFds),
        String(r.endFds),
        r.loadavgStart,
        r.loadavgEnd,
      ]),
    ]),
  );

  const p99Get = percentile(all.ms.get, 99);
  const first = rounds[0];
  const last = rounds.at(-1);
  const fdsSteady = rounds.every((r) => r.endFds <= (first?.endFds ?? 0));
  const rssSteady = first !== undefined && last !== undefined && last.endRssKb <= first.endRssKb * (1 + RSS_TOLERANCE);
  const goals: Array<[string, boolean, string]> = [
    ['p99 GetMicroVM < 50 ms', p99Get < 50, `${f(p99Get)} ms`],
    ['healthy time to CREATED under load <= 2x idle', ratio <= 2, `${ratio.toFixed(2)}x`],
    [
      'no growth across rounds',
      fdsSteady && rssSteady && unexpected.length === 0,
      `end-of-round fds ${rounds.map((r) => r.endFds).join(' ')}, RSS MB ${rounds.map((r) => mb(r.endRssKb)).join(' ')} (last within ${RSS_TOLERANCE * 100}% of the first)`,
    ],
  ];
  console.log('\n=== goals ===');
  for (const [what, met, value] of goals) console.log(`${met ? 'MET    ' : 'NOT MET'}  ${what}: ${value}`);
  return goals.every(([, met]) => met);
}

// --- the run ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const missing = missingPrerequisites(GUEST_LAB);
  if (missing.length > 0) throw new Error(`missing: ${missing.join('; ')}`);
  if (!existsSync(join(REPO_ROOT, 'dist/cli/flintlockd/main.js'))) {
    console.log('dist/ is missing: npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  }
  ensureGuestImage();

  const benchLab = createBenchLab('fl-load');
  const { dir, netns: lab } = benchLab;
  const removeLab = (): void => benchLab.remove();
  // Exit cleanups run in the order registered: once the daemon runs, the lab goes after the
  // daemon helper's own (which end the daemon and its VMMs by PID and remove their cgroups).
  let daemon: DaemonHandle | undefined;
  atExit(() => {
    if (daemon === undefined) removeLab();
  });
  let clients: ClientPool | undefined;
  let control: TestClient | undefined;
  let healthyUids: string[] = [];
  const samples: Sample[] = [];
  let sampler: NodeJS.Timeout | undefined;

  try {
    await benchLab.startRegistry();
    pushGuest(lab.name, GUEST);
    const nodeArgs = CPU_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${resolve(CPU_PROF)}`] : [];
    if (CPU_PROF !== undefined) mkdirSync(resolve(CPU_PROF), { recursive: true });
    daemon = await startDaemon({
      netns: lab.name,
      dir: join(dir, 'daemon'),
      nodeArgs,
      config: {
        'bridge-name': 'br0',
        'default-provider': 'qemu',
        'retry-backoff-base': '1s',
        'delete-vm-timeout': '5s',
        verbosity: 0,
        'log-output': join(dir, 'daemon.log'),
      },
    });
    atExit(removeLab);
    const pid = daemon.process.pid ?? 0;
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('flintlockd')) throw new Error(`PID ${pid} is not the daemon`);
    const endpoint = daemon.endpoint;
    control = new TestClient(endpoint);
    const watch = new HealthyWatch(control);

    console.log(`Load: ${CLIENTS} clients x ${SECONDS} s x ${ROUNDS} rounds; think ${THINK_MS} ms; <= ${VMS_PER_CLIENT} VMs per client;`);
    console.log(`      ${BOOTS} healthy boots under load and ${IDLE_BOOTS} idle per round (QEMU TCG, tap on br0)`);
    console.log(`daemon: bin/flintlockd pid ${pid} in netns ${lab.name}${CPU_PROF !== undefined ? `, --cpu-prof into ${resolve(CPU_PROF)}` : ''}`);
    console.log(`host: ${process.env.HOSTNAME ?? ''} node ${process.version}, load average ${loads()}\n`);

    let round = 0;
    let phase = 'start';
    const sample = (): Sample => {
      const s = { t: now(), round, phase, rssKb: rssKb(pid), fds: fdCount(pid) };
      samples.push(s);
      return s;
    };
    sampler = setInterval(sample, 1000);
    let bootSeq = 0;
    const boot = async (loadEndsAt: number): Promise<Boot> => {
      const c = control as TestClient;
      const t0 = now();
      const uid = (await c.create(healthySpec(`h-${bootSeq++}`))).spec?.uid ?? '';
      healthyUids.push(uid);
      const created = await watch.until(uid, 'created', BOOT_DEADLINE_MS);
      const t1 = now();
      await c.delete(uid);
      const gone = await watch.until(uid, 'deleted', BOOT_DEADLINE_MS);
      healthyUids = healthyUids.filter((u) => u !== uid);
      return { createdMs: created - t0, goneMs: gone - t1, underLoad: created < loadEndsAt };
    };

    console.log('warm-up boot (fills the image cache) ...');
    const warm = await boot(0);
    console.log(`warm-up: CREATED in ${f(warm.createdMs)} ms, gone in ${f(warm.goneMs)} ms\n`);

    clients = new ClientPool(endpoint);
    const pool = clients;
    const rounds: RoundFigures[] = [];
    for (round = 1; round <= ROUNDS; round++) {
      const loadavgStart = loads();
      phase = 'idle';
      const idle: Boot[] = [];
      for (let i = 0; i < IDLE_BOOTS; i++) idle.push(await boot(0));
      const idleStats = new CallStats();
      await pool.probeGets(IDLE_GETS, idleStats);
      const idleGetMs = idleStats.ms.get;

      phase = 'load';
      const stats = new CallStats();
      const cpu0 = cpuMs(pid);
      const t0 = now();
      const until = t0 + SECONDS * 1000;
      const progress = setInterval(() => {
        const s = sample();
        console.log(`  r${round} t=${((s.t - t0) / 1000).toFixed(0).padStart(3)}s  RSS ${mb(s.rssKb)} MB  fds ${s.fds}  loadavg ${loads()}`);
      }, 10_000);
      const bootsDone = (async (): Promise<Boot[]> => {
        const loaded: Boot[] = [];
        for (let i = 0; i < BOOTS; i++) {
          const at = t0 + ((i + 1) * SECONDS * 750) / (BOOTS + 1);
          await sleep(Math.max(0, at - now()));
          loaded.push(await boot(until));
        }
        return loaded;
      })();
      const ran = await pool.run(SECONDS * 1000, stats);
      const loadSeconds = (now() - t0) / 1000;
      const daemonCpuPercent = ((cpuMs(pid) - cpu0) / (loadSeconds * 1000)) * 100;
      const clientCpuPercent = (ran.cpuMs / (loadSeconds * 1000)) * 100;
      const clientLagP99Ms = ran.lagP99Ms;
      clearInterval(progress);
      const loaded = await bootsDone;
      const listed = await control.list('');
      const vmsAtEnd = listed.length;

      phase = 'cleanup';
      const tc = now();
      const cleanupStats = new CallStats();
      await pool.deleteAll(cleanupStats);
      for (;;) {
        const left = await control.list('');
        if (left.length === 0) break;
        if (now() - tc > CLEANUP_DEADLINE_MS) {
          // What the calls answered, and what is left: the evidence for whoever reads this.
          for (const rpc of RPCS) console.log(`${rpc.padEnd(7)} load ${codesOf(stats, rpc)}; cleanup ${codesOf(cleanupStats, rpc)}`);
          const shown = left
            .slice(0, 5)
            .map((vm) => `${vm.spec?.namespace}/${vm.spec?.id} ${State[vm.status?.state ?? 0]} deleting=${vm.status?.state === State.DELETING}`);
          throw new Error(`${left.length} VMs still stored ${CLEANUP_DEADLINE_MS} ms after the load: ${shown.join(', ')}`);
        }
        await sleep(500);
      }
      const cleanupMs = now() - tc;
      phase = 'settled';
      await sleep(SETTLE_MS);
      const end = sample();
      const inRound = samples.filter((s) => s.round === round);
      rounds.push({
        round,
        stats,
        idle,
        idleGetMs,
        loaded,
        loadSeconds,
        daemonCpuPercent,
        vmsAtEnd,
        cleanupMs,
        endRssKb: end.rssKb,
        endFds: end.fds,
        peakRssKb: Math.max(...inRound.map((s) => s.rssKb)),
        peakFds: Math.max(...inRound.map((s) => s.fds)),
        loadavgStart,
        loadavgEnd: loads(),
        clientLagP99Ms,
        clientCpuPercent,
      });
      console.log(
        `round ${round}: ${RPCS.map((rpc) => `${rpc} ${stats.ms[rpc].length}`).join(', ')}; ${vmsAtEnd} VMs at load end, all gone ${(cleanupMs / 1000).toFixed(1)} s later; RSS ${mb(end.rssKb)} MB, fds ${end.fds}\n`,
      );
    }
    clearInterval(sampler);
    if (SAMPLES_FILE !== undefined) {
      writeFileSync(
        SAMPLES_FILE,
        ['t_s,round,phase,rss_kb,fds', ...samples.map((s) => `${(s.t / 1000).toFixed(1)},${s.round},${s.phase},${s.rssKb},${s.fds}`)].join('\n') + '\n',
      );
      console.log(`samples: ${SAMPLES_FILE}`);
    }
    watch.close();
    const met = report(rounds);
    console.log(`\nload average at the end: ${loads()}`);
    if (!met) process.exitCode = 2;
  } catch (e) {
    const log = join(dir, 'daemon.log'); // still there: removed in finally
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n') : '(no log)';
    console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    console.error(
      `daemon (exit ${String(daemon?.process.exitCode ?? daemon?.process.signalCode)}) output:\n${daemon?.output() ?? ''}\ndaemon log (last lines):\n${tail}`,
    );
    throw e;
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    // Orderly where possible: the VMs deleted through the API, then the daemon stopped.
    if (daemon !== undefined && control !== undefined && daemon.process.exitCode === null) {
      const c = control;
      const stats = new CallStats();
      await Promise.race([
        Promise.all([clients?.deleteAll(stats).catch(() => undefined), ...healthyUids.map((uid) => c.delete(uid).catch(() => undefined))]),
        sleep(15_000),
      ]);
    }
    clients?.close();
    control?.close();
    if (daemon !== undefined) {
      const d = daemon;
      const timer = setTimeout(() => void d.kill(), 15_000);
      await d.stop();
      clearTimeout(timer);
    }
    // The rest (VMMs naming the state dir, cgroups, registry, namespace, temp dir) by the exit cleanups, now.
    removeLab();
  }
}

if (process.argv[2] === '--client-process') {
  clientProcessMain();
} else {
  main().catch((e: unknown) => {
    console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  });
}
