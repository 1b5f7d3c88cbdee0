// Control-plane rate of issue 11: creates reaching CREATED per second with real taps and a stand-in
// VMM process (no guest), against the real daemon (bin/flintlockd, the built code; built first when
// dist/ is missing). As root (like test/e2e):
//
//   node --import tsx bench/control-plane.ts
//   BENCH_VMS=300 BENCH_CLIENTS=16 BENCH_RECONCILE_CONCURRENCY=4,16 node --import tsx bench/control-plane.ts   (the defaults)
//
// Other knobs: BENCH_CPU_PROF=<dir> (each daemon runs under `node --cpu-prof`; its main thread's
// self time is summarized per phase, with the daemon code calling each top function),
// BENCH_BUDGET_S (the watchdog, 900), BENCH_JSON=<file> (the figures of bench-contract: rate,
// rate-cpu-bound, created-p50/p99, cpu-per-vm, delete-rate, and rate-cN / delete-rate-cN for each
// further reconcile-concurrency).
//
// Lab (as bench/load.ts): a network namespace of this run's with a bridge br0, Debian's
// docker-registry on its loopback holding the test guest (its kernel and initrd are only files
// here: nothing boots them), and for each reconcile-concurrency in BENCH_RECONCILE_CONCURRENCY a
// daemon of its own in the namespace (`bridge-name: br0`, `default-provider: qemu`, `qemu-bin`: the
// stand-in, the VMM sandbox and cgroups as by default, log at info level to a file, the debug
// endpoint on the namespace's loopback for the step histograms).
//
// The stand-in (test/helpers/qemu-standin.pl; test/e2e/qemu-standin.test.ts checks it) is started
// by the real QEMU provider with the real command line through the real launch chain (cgroup join,
// tap stage, setpriv): it checks its tap fds with TUNGETIFF and keeps them (the tap is attached,
// carrier on), answers QMP (the provider's "running" check, system_powerdown on delete), and
// waits. So a VM reaches CREATED exactly as with QEMU, minus QEMU's own start-up and the guest.
//
// For each daemon: one warm-up VM (create -> CREATED -> delete: fills the image cache, checks the
// stand-in holds the tap); then
//  1. creates: BENCH_VMS CreateMicroVM calls, BENCH_CLIENTS at a time (each client its own gRPC
//     connection, issuing its next create when the last one answered); each VM's CREATED seen on
//     one WatchMicroVMs stream (our extension service). Rate = VMs / (first create sent -> last
//     CREATED seen); p50/p99 of create sent -> CREATED; the daemon's CPU (utime+stime of
//     /proc/<pid>/stat) and its reaped children's (cutime+cstime: ip, mkfs, the launch chain...)
//     per VM; the host's busy CPU (/proc/stat) in the window; where the time goes: the daemon's
//     step duration histograms (flintlock_reconcile_step_duration_seconds, /metrics) over the window.
//     Then every VM is checked: one stand-in process per VM, each holding its VM's tap.
//  2. deletes: every VM deleted, BENCH_CLIENTS at a time; rate = VMs / (first delete -> last
//     DELETED event); CPU and steps as above; then no stand-in left and no tap left on br0.
// The bench's own clients run on the same 2 cores (their CPU is reported): the rate is the
// daemon's on a machine it shares with a small controller.
//
// Cleanup on success, error or Ctrl-C: the VMs deleted through the API, the daemon stopped
// (SIGTERM, SIGKILL by PID after 15 s); whatever remains is ended by PID at exit
// (test/helpers/processes.ts: the daemon, every process naming its state dir, the registry), the
// cgroups removed, the namespace (and every tap in it) deleted, the temp dir removed. A watchdog
// ends the run after BENCH_BUDGET_S (default 900).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { WatchEvent_Type as EventType, type WatchEvent } from '../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { MicroVMSpecSchema, MicroVMStatus_MicroVMState as State, NetworkInterface_IfaceType as IfaceType } from '../src/gen/flintlock/types/microvm_pb.js';
import { REPO_ROOT, startDaemon } from '../test/helpers/daemon.js';
import { TestClient } from '../test/helpers/grpc-client.js';
import { createBenchLab, ensureGuestImage, pushGuest } from '../test/helpers/guest-lab.js';
import { type TestNetns } from '../test/helpers/netns.js';
import { GUEST_LAB, missingPrerequisites } from '../test/helpers/prerequisites.js';
import { atExit } from '../test/helpers/processes.js';
import { attachedTaps, QEMU_STANDIN, standinPids } from '../test/helpers/qemu-standin.js';
import { envInt } from './env.js';
import { writeBenchJson, type BenchFigure } from './report-json.js';

const VMS = envInt('BENCH_VMS', 300, 1, 5000);
const CLIENTS = envInt('BENCH_CLIENTS', 16, 1, 256);
const CONCURRENCIES = (process.env.BENCH_RECONCILE_CONCURRENCY ?? '4,16')
  .split(',')
  .map((s) => Number.parseInt(s, 10))
  .filter((n) => Number.isInteger(n) && n >= 1 && n <= 64);
/** BENCH_CPU_PROF=<dir>: each daemon runs under `node --cpu-prof`; its profile's top self time is printed. */
const CPU_PROF = process.env.BENCH_CPU_PROF;
const BUDGET_MS = envInt('BENCH_BUDGET_S', 900, 30, 7200) * 1000;
const GOAL_PER_S = 150;

const GUEST = '127.0.0.1:5000/flintlock/guest:cprate';
const NAMESPACE = 'cprate';
const DEBUG_ENDPOINT = '127.0.0.1:9464';
/** Per phase: every VM CREATED (or gone) within this. */
const PHASE_DEADLINE_MS = 300_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();

// --- /proc ------------------------------------------------------------------------------------------

const CLK_TCK = 100;
/** The process's own CPU ms and its reaped children's. */
function cpuMs(pid: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command (which may hold spaces) start at state (3): utime 14, stime 15, cutime 16, cstime 17.
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const at = (n: number): number => f[n - 3] ?? Number.NaN;
  return { self: ((at(14) + at(15)) * 1000) / CLK_TCK, children: ((at(16) + at(17)) * 1000) / CLK_TCK };
}

/** The host's busy and total CPU time (all cores), in ticks. */
function hostCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU ms of each running `ip` child of `pid` (found by their stat's ppid). */
function ipChildrenCpuMs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === 'ip' && ppid === pid) out.set(Number(entry), cpuMs(Number(entry)).self);
    } catch {
      // gone
    }
  }
  return out;
}

/** Busy cores on the host over 2 s while this bench's daemon is idle: the other sessions' load. */
async function backgroundLoad(): Promise<number> {
  const a = hostCpu();
  await sleep(2000);
  const b = hostCpu();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cpus().length;
}

const loads = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// --- the daemon's step histograms ----------------------------------------------------------------------

type Steps = Map<string, { sum: number; count: number }>;

function stepMetrics(ns: string): Steps {
  const text = execFileSync('ip', ['netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', `http://${DEBUG_ENDPOINT}/metrics`], { encoding: 'utf8' });
  const steps: Steps = new Map();
  for (const m of text.matchAll(/^flintlock_reconcile_step_duration_seconds_(sum|count)\{step="([^"]+)"\} (\S+)$/gm)) {
    const [, what, step, value] = m as unknown as [string, 'sum' | 'count', string, string];
    const s = steps.get(step) ?? { sum: 0, count: 0 };
    s[what] = Number(value);
    steps.set(step, s);
  }
  return steps;
}

function stepDelta(after: Steps, before: Steps): Steps {
  const out: Steps = new Map();
  for (const [step, a] of after) {
    const b = before.get(step) ?? { sum: 0, count: 0 };
    if (a.count - b.count > 0) out.set(step, { sum: a.sum - b.sum, count: a.count - b.count });
  }
  return out;
}

// --- the watch ------------------------------------------------------------------------------------------

/** When each VM of the namespace reached CREATED, or was deleted, as seen on one WatchMicroVMs stream. */
class Watch {
  readonly created = new Map<string, number>();
  readonly deleted = new Map<string, number>();
  readonly failed = new Map<string, string>();
  private readonly stream: grpc.ClientReadableStream<WatchEvent>;
  private broken: Error | undefined;

  constructor(client: TestClient) {
    this.stream = client.watch({ namespace: NAMESPACE });
    this.stream.on('data', (e: WatchEvent) => {
      const t = now();
      const uid = e.microvm?.spec?.uid ?? '';
      if (e.type === EventType.DELETED) this.deleted.set(uid, t);
      else if (e.microvm?.status?.state === State.CREATED && !this.created.has(uid)) this.created.set(uid, t);
      else if (e.microvm?.status?.state === State.FAILED) this.failed.set(uid, e.microvm.status.failureReason);
    });
    this.stream.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) this.broken = new Error(`the watch broke: ${e.message}`);
    });
  }

  /** Waits until every uid is in `what`; the latest time seen. */
  async all(uids: readonly string[], what: 'created' | 'deleted', deadlineMs: number): Promise<number> {
    const deadline = now() + deadlineMs;
    const seen = what === 'created' ? this.created : this.deleted;
    for (;;) {
      if (this.broken !== undefined) throw this.broken;
      if (what === 'created') {
        const failed = uids.find((u) => this.failed.has(u));
        if (failed !== undefined) throw new Error(`VM ${failed} FAILED: ${this.failed.get(failed)}`);
      }
      const missing = uids.filter((u) => !seen.has(u));
      if (missing.length === 0) return Math.max(...uids.map((u) => seen.get(u) ?? 0));
      if (now() > deadline) throw new Error(`${missing.length} of ${uids.length} VMs not ${what} within ${deadlineMs} ms`);
      await sleep(5);
    }
  }

  close(): void {
    this.stream.cancel();
  }
}

// --- one daemon, one reconcile-concurrency ------------------------------------------------------------------

const spec = (name: string): ReturnType<typeof create<typeof MicroVMSpecSchema>> =>
  create(MicroVMSpecSchema, {
    id: name,
    namespace: NAMESPACE,
    vcpu: 1,
    memoryInMb: 128,
    kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig: false },
    initrd: { image: GUEST, filename: 'boot/initrd' },
    interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP }],
  });

interface Phase {
  readonly vms: number;
  readonly wallMs: number;
  readonly ratePerS: number;
  readonly latencyMs: number[];
  readonly daemonCpuMs: number;
  readonly childrenCpuMs: number;
  readonly benchCpuMs: number;
  /** Busy share of all cores, 0..1. */
  readonly hostBusy: number;
  readonly steps: Steps;
  /** All of the host's busy CPU in the window (every process, the kernel), ms. */
  readonly hostBusyMs: number;
  /** CPU of the daemon's `ip` children still running (the long-lived `ip -batch` co-processes), ms. */
  readonly ipCpuMs: number;
  /** Cores the rest of the host kept busy while the daemon was idle just before (other sessions). */
  readonly backgroundCores: number;
  readonly window: Window;
}

interface RunResult {
  readonly concurrency: number;
  readonly create: Phase;
  /** CPU of each VMM pid by the time its VM is CREATED: the launch chain (sh, perl, setpriv) and the stand-in, exec'd under one pid. */
  readonly vmmCpuMs: number;
  /** The daemon's CPU profile, summarized (BENCH_CPU_PROF). */
  readonly profile?: { readonly lines: string[]; readonly notes: string[] };
  readonly delete: Phase;
  readonly loadavg: string;
}

/** Runs `count` calls, `clients` at a time, each client its own connection. */
async function fanOut(clients: readonly TestClient[], count: number, call: (client: TestClient, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    clients.map(async (c) => {
      for (let i = next++; i < count; i = next++) await call(c, i);
    }),
  );
}

async function measure(name: string, pid: number, ns: string, body: () => Promise<{ t0: number; tEnd: number; latencyMs: number[] }>): Promise<Phase> {
  const backgroundCores = await backgroundLoad();
  const cpu0 = cpuMs(pid);
  const ip0 = ipChildrenCpuMs(pid);
  const host0 = hostCpu();
  const bench0 = process.cpuUsage();
  const steps0 = stepMetrics(ns);
  const fromUs = monoUs();
  const { t0, tEnd, latencyMs } = await body();
  const toUs = monoUs();
  const bench1 = process.cpuUsage(bench0);
  const host1 = hostCpu();
  const cpu1 = cpuMs(pid);
  const ip1 = ipChildrenCpuMs(pid);
  const steps = stepDelta(stepMetrics(ns), steps0);
  const wallMs = tEnd - t0;
  return {
    vms: latencyMs.length,
    wallMs,
    ratePerS: (latencyMs.length * 1000) / wallMs,
    latencyMs,
    daemonCpuMs: cpu1.self - cpu0.self,
    ipCpuMs: [...ip1.entries()].reduce((sum, [p, ms]) => sum + ms - (ip0.get(p) ?? 0), 0),
    backgroundCores,
    childrenCpuMs: cpu1.children - cpu0.children,
    benchCpuMs: (bench1.user + bench1.system) / 1000,
    hostBusy: (host1.busy - host0.busy) / Math.max(1, host1.total - host0.total),
    hostBusyMs: ((host1.busy - host0.busy) * 1000) / CLK_TCK,
    window: { name, fromUs, toUs, vms: latencyMs.length },
    steps,
  };
}

async function runOne(lab: TestNetns, dir: string, concurrency: number, started: () => void): Promise<RunResult> {
  const profDir = CPU_PROF !== undefined ? resolve(CPU_PROF, `c${concurrency}`) : undefined;
  if (profDir !== undefined) mkdirSync(profDir, { recursive: true });
  const daemon = await startDaemon({
    netns: lab.name,
    dir: join(dir, `daemon-c${concurrency}`),
    ...(profDir !== undefined ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}),
    config: {
      'bridge-name': 'br0',
      'default-provider': 'qemu',
      'qemu-bin': QEMU_STANDIN,
      'reconcile-concurrency': concurrency,
      'delete-vm-timeout': '5s',
      'debug-endpoint': DEBUG_ENDPOINT,
      verbosity: 0,
      'log-output': join(dir, `daemon-c${concurrency}.log`),
    },
  });
  started();
  const uids: string[] = [];
  let stopped = false;
  const stopDaemon = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const timer = setTimeout(() => void daemon.kill(), 15_000);
    await daemon.stop();
    clearTimeout(timer);
  };
  const pid = daemon.process.pid ?? 0;
  if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('flintlockd')) throw new Error(`PID ${pid} is not the daemon`);
  const control = new TestClient(daemon.endpoint);
  const watch = new Watch(control);
  // A connection per client, as separate controllers would have.
  const clients = Array.from({ length: CLIENTS }, () => new TestClient(daemon.endpoint, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } }));
  try {
    // Warm-up: the image cache, and the stand-in really holding the tap.
    const warm = await control.create(spec('warm-up'));
    const warmUid = warm.spec?.uid ?? '';
    uids.push(warmUid);
    await watch.all([warmUid], 'created', 60_000);
    const tap = (await control.get(warmUid)).status?.networkInterfaces.eth1?.hostDeviceName ?? '';
    const [standin] = standinPids(daemon.stateDir);
    if (standin === undefined || !attachedTaps(standin).includes(tap)) throw new Error(`warm-up: no stand-in holding tap ${tap}`);
    await control.delete(warmUid);
    await watch.all([warmUid], 'deleted', 60_000);
    uids.length = 0;

    const sent = new Map<string, number>();
    const created = await measure('create', pid, lab.name, async () => {
      const t0 = now();
      await fanOut(clients, VMS, async (c, i) => {
        const ts = now();
        const uid = (await c.create(spec(`vm-${i}`))).spec?.uid ?? '';
        sent.set(uid, ts);
        uids.push(uid);
      });
      const tEnd = await watch.all(uids, 'created', PHASE_DEADLINE_MS);
      return { t0, tEnd, latencyMs: uids.map((u) => (watch.created.get(u) ?? Number.NaN) - (sent.get(u) ?? Number.NaN)) };
    });

    // Every VM has its stand-in, holding its tap.
    const byTap = new Map<string, number>();
    let vmmCpu = 0;
    for (const p of standinPids(daemon.stateDir)) {
      vmmCpu += cpuMs(p).self;
      for (const t of attachedTaps(p)) byTap.set(t, p);
    }
    const listed = await control.list(NAMESPACE);
    const unattached = listed.filter((vm) => !byTap.has(vm.status?.networkInterfaces.eth1?.hostDeviceName ?? ''));
    if (listed.length !== VMS || unattached.length > 0)
      throw new Error(`${listed.length} VMs listed, ${unattached.length} without a stand-in holding their tap`);
    const onBridge = lab.links().filter((l) => l.master === 'br0' && byTap.has(l.ifname) && l.flags.includes('LOWER_UP')).length;
    if (onBridge !== VMS) throw new Error(`${onBridge} of ${VMS} taps on br0 with carrier`);

    const deleteSent = new Map<string, number>();
    const deleted = await measure('delete', pid, lab.name, async () => {
      const t0 = now();
      await fanOut(clients, uids.length, async (c, i) => {
        const uid = uids[i] ?? '';
        deleteSent.set(uid, now());
        await c.delete(uid);
      });
      const tEnd = await watch.all(uids, 'deleted', PHASE_DEADLINE_MS);
      return { t0, tEnd, latencyMs: uids.map((u) => (watch.deleted.get(u) ?? Number.NaN) - (deleteSent.get(u) ?? Number.NaN)) };
    });
    uids.length = 0;
    const left = standinPids(daemon.stateDir).length;
    const taps = lab.links().filter((l) => l.master === 'br0').length;
    if (left > 0 || taps > 0) throw new Error(`after the deletes: ${left} stand-ins, ${taps} taps on br0`);
    const result = { concurrency, create: created, delete: deleted, vmmCpuMs: vmmCpu / VMS, loadavg: loads() };
    await stopDaemon();
    return profDir !== undefined ? { ...result, profile: summarizeProfile(profDir, [created.window, deleted.window]) } : result;
  } finally {
    // On a failure: the VMs deleted through the API before the daemon stops (what remains is ended
    // by PID at exit).
    if (uids.length > 0 && daemon.process.exitCode === null) {
      await Promise.race([Promise.all(uids.map((uid) => control.delete(uid).catch(() => undefined))), sleep(30_000)]);
    }
    watch.close();
    for (const c of clients) c.close();
    control.close();
    await stopDaemon();
  }
}

/** A phase's window on CLOCK_MONOTONIC (µs), the clock V8's profiler stamps samples with. */
interface Window {
  readonly name: string;
  readonly fromUs: number;
  readonly toUs: number;
  readonly vms: number;
}
const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

/**
 * The daemon's .cpuprofile files, one per thread (`CPU.<date>.<time>.<pid>.<thread>.<seq>`: 0 is
 * the main thread, the API's; the reconcile worker is another, ADR 0013), each summarized.
 */
function summarizeProfile(profDir: string, windows: readonly Window[]): { lines: string[]; notes: string[] } {
  const files = readdirSync(profDir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort();
  if (files.length === 0) return { lines: ['(no profile written)'], notes: [] };
  const lines: string[] = [];
  const notes: string[] = [];
  for (const file of files) {
    const tid = /^CPU\.\d+\.\d+\.\d+\.(\d+)\./.exec(file)?.[1] ?? '?';
    const one = summarizeThreadProfile(join(profDir, file), tid === '0' ? 'main thread' : `thread ${tid}`, windows);
    lines.push(...one.lines);
    notes.push(...one.notes);
  }
  return { lines, notes };
}

/**
 * Self time of one thread's profile in each window: by source file, by function, and for the top
 * functions the daemon's own code that called them.
 */
function summarizeThreadProfile(path: string, thread: string, windows: readonly Window[]): { lines: string[]; notes: string[] } {
  interface Node {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly children?: readonly number[];
  }
  const prof = JSON.parse(readFileSync(path, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const where = (cf: Node['callFrame']): string => {
    const url = cf.url.replace(/^file:\/\//, '').replace(`${REPO_ROOT}/`, '');
    return url === '' ? `(${cf.functionName || 'native'})` : url.replace(/.*node_modules\//, 'node_modules/');
  };
  const fnName = (cf: Node['callFrame']): string => `${cf.functionName || '(anonymous)'} ${where(cf)}:${cf.lineNumber + 1}`;
  /** The nearest two frames of the daemon's own code (dist/) above a sample. */
  const ownCallers = (id: number): string => {
    const chain: string[] = [];
    for (let p = parent.get(id); p !== undefined && chain.length < 2; p = parent.get(p)) {
      const cf = byId.get(p)?.callFrame;
      if (cf !== undefined && cf.url.includes('/dist/')) chain.push(fnName(cf).replace('dist/', ''));
    }
    return chain.join(' <- ') || '(no daemon frame)';
  };
  const out: string[] = [`profile ${path} (the daemon's ${thread})`];
  const notes: string[] = [];
  for (const w of windows) {
    const byFile = new Map<string, number>();
    const byFn = new Map<string, number>();
    const callers = new Map<string, Map<string, number>>();
    let total = 0;
    let t = prof.startTime;
    prof.samples.forEach((id, i) => {
      const us = prof.timeDeltas[i] ?? 0;
      t += us;
      if (t < w.fromUs || t > w.toUs) return;
      const cf = byId.get(id)?.callFrame;
      if (cf === undefined || cf.functionName === '(idle)' || cf.functionName === '(program)') return;
      total += us;
      byFile.set(where(cf), (byFile.get(where(cf)) ?? 0) + us);
      const fn = fnName(cf);
      byFn.set(fn, (byFn.get(fn) ?? 0) + us);
      const c = callers.get(fn) ?? new Map<string, number>();
      const k = ownCallers(id);
      c.set(k, (c.get(k) ?? 0) + us);
      callers.set(fn, c);
    });
    const sorted = (m: Map<string, number>, n: number): Array<[string, number]> => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
    const line = (k: string, us: number, indent: string): string =>
      `${indent}${((us / Math.max(1, total)) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`;
    const head = `${w.name}: ${(total / 1000).toFixed(0)} ms on the ${thread} (${f(total / 1000 / Math.max(1, w.vms))} ms/VM, ${((total / Math.max(1, w.toUs - w.fromUs)) * 100).toFixed(0)}% of the window)`;
    out.push(head);
    notes.push(
      `profile, ${head}; top: ${sorted(byFn, 6)
        .map(
          ([k, us]) =>
            `${k.replace(/ \S+:\d+$/, '')} ${((us / Math.max(1, total)) * 100).toFixed(0)}% (${sorted(callers.get(k) ?? new Map<string, number>(), 1)[0]?.[0] ?? ''})`,
        )
        .join('; ')}`,
    );
    out.push('  by file:', ...sorted(byFile, 12).map(([k, us]) => line(k, us, '  ')));
    out.push('  by function (and the daemon code that called it):');
    for (const [k, us] of sorted(byFn, 15)) {
      out.push(line(k, us, '  '));
      for (const [ck, cus] of sorted(callers.get(k) ?? new Map<string, number>(), 2)) if (cus >= us * 0.1) out.push(line(`<- ${ck}`, cus, '        '));
    }
  }
  return { lines: out, notes };
}

// --- the report ----------------------------------------------------------------------------------------------

function percentile(values: readonly number[], p: number): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}
const f = (ms: number): string => (Number.isNaN(ms) ? '-' : ms < 10 ? ms.toFixed(2) : ms.toFixed(0));

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')).join('\n');
}

function phaseLine(what: string, p: Phase): string {
  return (
    `${what}: ${p.vms} in ${f(p.wallMs)} ms = ${p.ratePerS.toFixed(1)} /s; latency p50 ${f(percentile(p.latencyMs, 50))} ms, p99 ${f(percentile(p.latencyMs, 99))} ms; ` +
    `daemon CPU ${f(p.daemonCpuMs / p.vms)} ms/VM (${((p.daemonCpuMs / p.wallMs) * 100).toFixed(0)}% of a core; + reaped children ${f(p.childrenCpuMs / p.vms)} ms/VM, + ip co-processes ${f(p.ipCpuMs / p.vms)} ms/VM), bench clients ${f(p.benchCpuMs / p.vms)} ms/VM, host busy ${(p.hostBusy * 100).toFixed(0)}% (${f(p.hostBusyMs / p.vms)} ms/VM of all CPU on the host; ${p.backgroundCores.toFixed(2)} cores busy before it, daemon idle)`
  );
}

function stepsLines(p: Phase): string[] {
  const rows = [...p.steps.entries()].sort((a, b) => b[1].sum - a[1].sum);
  const total = rows.reduce((a, [, s]) => a + s.sum, 0);
  return [
    table([
      ['step', 'runs', 'mean ms', 'ms per VM', 'share'],
      ...rows.map(([step, s]) => [step, String(s.count), f((s.sum * 1000) / s.count), f((s.sum * 1000) / p.vms), `${((s.sum / total) * 100).toFixed(0)}%`]),
    ]),
    `step time ${f((total * 1000) / p.vms)} ms per VM; wall per VM at the measured rate ${f(p.wallMs / p.vms)} ms`,
  ];
}

function report(results: readonly RunResult[]): { figures: BenchFigure[]; notes: string[] } {
  const notes: string[] = [];
  const say = (line: string): void => {
    console.log(line);
    notes.push(line);
  };
  const bounds = new Map<number, number>();
  for (const r of results) {
    console.log(`\n=== reconcile-concurrency ${r.concurrency} (${VMS} VMs, ${CLIENTS} clients; load average after ${r.loadavg}) ===`);
    say(`c${r.concurrency} ${phaseLine('create -> CREATED', r.create)}`);
    console.log(stepsLines(r.create).join('\n'));
    notes.push(
      `c${r.concurrency} create steps (mean ms): ${[...r.create.steps.entries()]
        .sort((a, b) => b[1].sum - a[1].sum)
        .map(([s, v]) => `${s} ${f((v.sum * 1000) / v.count)}`)
        .join(', ')}`,
    );
    say(`c${r.concurrency} ${phaseLine('delete -> gone', r.delete)}`);
    console.log(stepsLines(r.delete).join('\n'));
    say(`c${r.concurrency} VMM pid CPU by CREATED (launch chain sh+perl+setpriv, then the stand-in): ${f(r.vmmCpuMs)} ms/VM`);
    const c = r.create;
    const rest = c.hostBusyMs / c.vms - (c.daemonCpuMs + c.childrenCpuMs + c.benchCpuMs + c.ipCpuMs) / c.vms - r.vmmCpuMs;
    const background = (c.backgroundCores * c.wallMs) / c.vms;
    say(
      `c${r.concurrency} create, host CPU per VM: daemon ${f(c.daemonCpuMs / c.vms)} + VMM launch chain and stand-in ${f(r.vmmCpuMs)} + ip co-processes ${f(c.ipCpuMs / c.vms)} + reaped children ${f(c.childrenCpuMs / c.vms)} + bench clients ${f(c.benchCpuMs / c.vms)} + the rest ${f(rest)} ms; ` +
        `the host was ${c.backgroundCores.toFixed(2)} cores busy with the daemon idle just before (other sessions: ~${f(background)} ms per VM of the rest at that pace; what remains is kernel work for the daemon and contention)`,
    );
    // What this CPU per VM allows on a host with nothing else running: everything accounted for
    // shares the machine's cores (the daemon's threads among them: with BENCH_CPU_PROF, the
    // busiest thread's ms per VM is a second bound, on its one core).
    const accounted = (c.daemonCpuMs + c.childrenCpuMs + c.benchCpuMs + c.ipCpuMs) / c.vms + r.vmmCpuMs;
    const bound = (cpus().length * 1000) / accounted;
    bounds.set(r.concurrency, bound);
    say(
      `c${r.concurrency} projection for a quiet ${cpus().length}-core host from these CPU costs: <= ${bound.toFixed(0)} /s (all accounted ${f(accounted)} ms/VM over the cores; the daemon alone, ${f(c.daemonCpuMs / c.vms)} ms/VM over its threads)`,
    );
    if (r.profile !== undefined) {
      console.log(r.profile.lines.join('\n'));
      notes.push(...r.profile.notes.map((n) => `c${r.concurrency} ${n}`));
    }
  }
  const figures: BenchFigure[] = [];
  const first = results[0];
  if (first !== undefined) {
    figures.push({
      id: 'rate',
      label: 'control-plane rate: creates reaching CREATED per second, real taps, a stand-in VMM process (no guest)',
      value: Number(first.create.ratePerS.toFixed(1)),
      unit: '/s',
      goal: `>= ${GOAL_PER_S} /s`,
      met: first.create.ratePerS >= GOAL_PER_S,
    });
    figures.push({
      id: 'rate-cpu-bound',
      label: 'the rate the measured CPU per VM allows on a quiet host (all accounted CPU per VM over the cores)',
      value: Number((bounds.get(first.concurrency) ?? Number.NaN).toFixed(1)),
      unit: '/s',
      goal: `>= ${GOAL_PER_S} /s`,
      met: (bounds.get(first.concurrency) ?? 0) >= GOAL_PER_S,
    });
    figures.push({
      id: 'created-p50',
      label: 'create -> CREATED p50 (in the rate run)',
      value: Number(percentile(first.create.latencyMs, 50).toFixed(1)),
      unit: 'ms',
    });
    figures.push({
      id: 'created-p99',
      label: 'create -> CREATED p99 (in the rate run)',
      value: Number(percentile(first.create.latencyMs, 99).toFixed(1)),
      unit: 'ms',
    });
    figures.push({
      id: 'cpu-per-vm',
      label: 'daemon CPU per VM created (utime+stime)',
      value: Number((first.create.daemonCpuMs / first.create.vms).toFixed(2)),
      unit: 'ms',
    });
    figures.push({ id: 'delete-rate', label: 'deletes gone per second', value: Number(first.delete.ratePerS.toFixed(1)), unit: '/s' });
  }
  for (const r of results.slice(1)) {
    figures.push({
      id: `rate-c${r.concurrency}`,
      label: `control-plane rate with reconcile-concurrency ${r.concurrency}`,
      value: Number(r.create.ratePerS.toFixed(1)),
      unit: '/s',
      goal: `>= ${GOAL_PER_S} /s`,
      met: r.create.ratePerS >= GOAL_PER_S,
    });
    figures.push({
      id: `delete-rate-c${r.concurrency}`,
      label: `deletes gone per second, reconcile-concurrency ${r.concurrency}`,
      value: Number(r.delete.ratePerS.toFixed(1)),
      unit: '/s',
    });
  }
  notes.unshift(`rate: reconcile-concurrency ${first?.concurrency ?? '-'} (the default); rate-cN: the same with reconcile-concurrency N`);
  notes.push(`${VMS} VMs, ${CLIENTS} clients, load average at the end ${loads()}; the bench's clients share the daemon's 2 cores`);
  console.log('\n=== goal ===');
  for (const fig of figures.filter((x) => x.goal !== undefined))
    console.log(`${fig.met === true ? 'MET    ' : 'NOT MET'}  ${fig.label}: ${fig.value} ${fig.unit} (goal ${fig.goal})`);
  return { figures, notes };
}

// --- the run ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const missing = missingPrerequisites(GUEST_LAB);
  if (missing.length > 0) throw new Error(`missing: ${missing.join('; ')}`);
  if (CONCURRENCIES.length === 0) throw new Error('BENCH_RECONCILE_CONCURRENCY names no value in 1..64');
  if (!existsSync(join(REPO_ROOT, 'dist/cli/flintlockd/main.js'))) {
    console.log('dist/ is missing: npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  }
  ensureGuestImage();
  const watchdog = setTimeout(() => {
    console.error(`bench: over its budget of ${BUDGET_MS / 1000} s, stopping`);
    process.kill(process.pid, 'SIGTERM');
  }, BUDGET_MS);
  watchdog.unref();

  const benchLab = createBenchLab('fl-cprate');
  const { dir, netns: lab } = benchLab;
  const removeLab = (): void => benchLab.remove();
  // Exit cleanups run in the order registered: the daemon helper's own (the daemon and its VMMs by
  // PID, their cgroups) are registered as each daemon starts, and the lab's again after each, so
  // the lab goes after them (a running daemon still writes into the temp dir).
  let daemons = 0;
  atExit(() => {
    if (daemons === 0) removeLab();
  });
  const daemonStarted = (): void => {
    daemons++;
    atExit(() => removeLab());
  };
  let running = 0;

  try {
    await benchLab.startRegistry();
    pushGuest(lab.name, GUEST);
    console.log(`Control-plane rate: ${VMS} VMs, ${CLIENTS} clients, reconcile-concurrency ${CONCURRENCIES.join(', ')}; stand-in VMM ${QEMU_STANDIN}`);
    console.log(`host: node ${process.version}, load average ${loads()}`);
    const results: RunResult[] = [];
    for (const c of CONCURRENCIES) {
      console.log(`\nreconcile-concurrency ${c} ...`);
      running = c;
      const r = await runOne(lab, dir, c, daemonStarted);
      console.log(`  ${phaseLine('create', r.create)}\n  ${phaseLine('delete', r.delete)}`);
      results.push(r);
    }
    const { figures, notes } = report(results);
    writeBenchJson('control-plane', figures, notes);
    // A goal not met is a figure, not a failure: exit 0, as every bench does (npm run bench reports it).
  } catch (e) {
    const log = join(dir, `daemon-c${running}.log`);
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n') : '(no log)';
    console.error(`daemon log (last lines):\n${tail}`);
    throw e;
  } finally {
    // Each daemon was stopped by runOne, its VMs deleted through the API first. The rest (VMMs naming the state dir, cgroups, registry, namespace, temp dir) by the exit cleanups, now.
    removeLab();
  }
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
