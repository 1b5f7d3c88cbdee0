// MicroVM boot figures of issue 4, against the real daemon (bin/flintlockd, the built code) and
// real QEMU guests under TCG, all inside one network namespace this bench makes and deletes:
//
//   node --import tsx bench/vm-boot.ts                (BENCH_VMS=20; needs root, like test/e2e)
//
// Setup as in test/e2e/daemon-boot.test.ts: namespace with bridge br0 (10.77.0.1/24) and dnsmasq
// --no-ping on it, Debian's docker-registry on the namespace's loopback holding the test guest
// (scripts/build-guest-image.sh), the daemon in the namespace (`bridge-name: br0`,
// `default-provider: qemu`, debug logs for the timestamps). One warm-up VM (create, CREATED,
// delete) fills the image cache and gives the QEMU command line the baseline replays.
//
// 1. Sequential, BENCH_VMS rounds, each: our VM, then one baseline launch (interleaved, so host
//    noise hits both alike).
//    ours:     t0 = before CreateMicroVM; "running" = the first GetMicroVM (polled every 10 ms)
//              that says CREATED (QEMU runs the guest: QMP query-status says running); "lease" =
//              the guest MAC in dnsmasq's lease file (polled every 20 ms); then Delete and wait
//              until Get says NOT_FOUND.
//    spawn:    three clocks for create -> QEMU process: the daemon's own log ("QEMU spawned":
//              pino time, taken right after child_process.spawn returned, i.e. after exec, and
//              its spawnMs); the vmm.log header line (written just before the spawn); and this
//              bench seeing the pid in /proc (polled every 5 ms; fork time, not exec time). All
//              are CLOCK_REALTIME ms, compared with t0 in the same clock.
//    baseline: the warm-up VM's real QEMU command line (/proc/<pid>/cmdline) with its VM dir
//              paths, tap name and MAC rewritten; a tap made on br0 first (`ip tuntap add`,
//              `ip link set master br0 up`, timed apart), then t0 and
//              `ip netns exec <ns> sh -c 'exec qemu-system-x86_64 ...'`; lease as above; SIGKILL
//              by pid; tap deleted. BENCH_BASELINE_CIDATA=copy (default) keeps the cidata drive
//              (a copy of the warm-up VM's image, made before timing), so the guest does exactly
//              the same work as ours; =none drops the drive (a cidata-less launch).
// 2. Concurrent: BENCH_VMS creates in flight at once; time until every guest has a lease, the
//    daemon's CPU time in that window (utime+stime of /proc/<pid>/stat), its peak RSS in the
//    window (VmHWM after resetting it through /proc/<pid>/clear_refs) and QEMU's totals; then
//    delete all and time until all are gone.
//
// Everything is bounded (a watchdog ends the run after BENCH_BUDGET_S, default 290 s) and cleaned
// up on success, error or Ctrl-C: every process this run started (daemon, QEMUs, dnsmasq,
// registry) names this run's private temp dir on its command line and is ended by pid after that
// check; the namespace (and so every tap) is deleted, the temp dir removed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { create } from '@bufbuild/protobuf';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { MicroVMSpecSchema, MicroVMStatus_MicroVMState as State, NetworkInterface_IfaceType as IfaceType } from '../src/gen/flintlock/types/microvm_pb.js';
import type { WatchEvent } from '../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { makeTempDir, REPO_ROOT, startDaemon, type DaemonHandle } from '../test/helpers/daemon.js';
import { TestClient } from '../test/helpers/grpc-client.js';
import { ensureGuestImage, pushGuest, startDnsmasq, startRegistry } from '../test/helpers/guest-lab.js';
import { GUEST_LAB, missingPrerequisites } from '../test/helpers/prerequisites.js';
import { createTestNetns, type TestNetns } from '../test/helpers/netns.js';
import { envInt } from './env.js';
import { ratioOf, writeBenchJson } from './report-json.js';

const REQUESTED_VMS = envInt('BENCH_VMS', 20, 1, 60);
const BUDGET_MS = envInt('BENCH_BUDGET_S', 290, 30, 3600) * 1000;
const BASELINE_CIDATA = process.env.BENCH_BASELINE_CIDATA === 'none' ? 'none' : 'copy';
const GUEST = '127.0.0.1:5000/flintlock/guest:bench';
const NAMESPACE = 'bench';
const GUEST_MEMORY_MB = 256;
/** What one TCG guest of GUEST_MEMORY_MB takes on the host (measured ~220 MB) plus headroom. */
const HOST_MB_PER_GUEST = 300;
const BOOT_DEADLINE_MS = 30_000;
const CONCURRENT_DEADLINE_MS = 150_000;
const DELETE_DEADLINE_MS = 30_000;
const GET_POLL_MS = 10;
const LEASE_POLL_MS = 20;
const PROC_POLL_MS = 5;
/** Issue 11's goals: create -> QEMU spawned p50, daemon CPU per booted VM, create -> lease overhead. */
const SPAWN_GOAL_MS = 15;
const CPU_GOAL_MS = 10;
const OVERHEAD_GOAL = 0.03;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Wall clock (CLOCK_REALTIME) in ms with sub-ms resolution: comparable with the daemon's log times. */
const now = (): number => performance.timeOrigin + performance.now();
const pad = (i: number): string => String(i).padStart(2, '0');
const hex = (i: number): string => (i & 0xff).toString(16).padStart(2, '0');
/** Unique guest MACs per phase (0 warm-up, 1 sequential, 2 baseline, 3 concurrent). */
const macFor = (phase: number, i: number): string => `02:b0:0${phase}:00:${hex(i >> 8)}:${hex(i)}`;

let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // 100 on every Linux this runs on
}

// ---------------------------------------------------------------------------------------------
// /proc

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** utime + stime of a process in ms. */
function cpuMs(pid: number): number {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return Number.NaN;
  const fields = text
    .slice(text.lastIndexOf(')') + 2)
    .trim()
    .split(/\s+/);
  // Fields 14 and 15 (utime, stime) are indexes 11 and 12 after the comm.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = readText(`/proc/${pid}/status`) ?? '';
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
}

function argvOf(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/cmdline`);
  return text === undefined || text === '' ? undefined : text.replace(/\0$/, '').split('\0');
}

function isQemu(pid: number): boolean {
  return readText(`/proc/${pid}/comm`)?.startsWith('qemu-system') === true;
}

function numericPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

/** Every process whose command line names `dir` (this run's private temp dir), not this one. */
function processesNaming(dir: string): number[] {
  return numericPids().filter((pid) => pid !== process.pid && (argvOf(pid)?.some((a) => a.includes(dir)) ?? false));
}

/**
 * Watches /proc (every PROC_POLL_MS) for the QEMU process of one VM (`-name bench/<name>`):
 * `firstSeen` is when its pid first showed up (the daemon's fork, before exec), `identified`
 * when its command line was QEMU's.
 */
class QemuSpotter {
  private readonly seen = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  found: { pid: number; firstSeen: number; identified: number } | undefined;

  constructor(private readonly vmName: string) {
    for (const pid of numericPids()) this.seen.set(pid, Number.NaN);
  }

  start(): void {
    const tick = (): void => {
      this.scan();
      if (this.found === undefined) this.timer = setTimeout(tick, PROC_POLL_MS);
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private scan(): void {
    const t = now();
    for (const pid of numericPids()) {
      const first = this.seen.get(pid);
      if (first === undefined) this.seen.set(pid, t);
      else if (Number.isNaN(first)) continue; // there before the create
      const argv = argvOf(pid);
      if (argv?.[0]?.includes('qemu-system') === true && argv.includes(`${NAMESPACE}/${this.vmName}`)) {
        this.found = { pid, firstSeen: this.seen.get(pid) ?? t, identified: t };
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// dnsmasq leases

/** MACs (lower case) in the lease file. dnsmasq lines: <expiry> <mac> <ip> <hostname> <client-id>. */
function leasedMacs(file: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (readText(file) ?? '').split('\n')) {
    const f = line.split(' ');
    if (f[1] !== undefined && f[2] !== undefined) out.set(f[1].toLowerCase(), f[2]);
  }
  return out;
}

/** Resolves with the time the MAC first appears in the lease file. */
async function waitLease(file: string, mac: string, deadline: number, abort: { stop: boolean }): Promise<number> {
  for (;;) {
    const t = now();
    if (leasedMacs(file).has(mac)) return t;
    if (abort.stop) throw new Error('aborted');
    if (t > deadline) throw new Error(`no DHCP lease for ${mac} within the deadline`);
    await sleep(LEASE_POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// statistics and output

function percentile(values: readonly number[], p: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  // Nearest rank: with 20 samples p50 is the 10th, p99 the 20th (the maximum).
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

const ms = (v: number, digits = 0): string => (Number.isFinite(v) ? `${v.toFixed(digits)} ms` : 'n/a');
const p5099 = (values: readonly number[], digits = 0): string => {
  const finite = values.filter((v) => Number.isFinite(v));
  return `${ms(percentile(finite, 50), digits)} / ${ms(percentile(finite, 99), digits)}  (min ${ms(Math.min(...finite), digits)}, n=${finite.length})`;
};
const mb = (kb: number): string => (Number.isFinite(kb) ? `${(kb / 1024).toFixed(1)} MB` : 'n/a');

function printTable(title: string, rows: Array<[string, string]>): void {
  console.log(`\n${title}`);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
}

/** A POSIX shell word. */
function shQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------
// the daemon's JSON log

interface LogRecord {
  readonly time: number;
  readonly msg: string;
  readonly vm?: string;
  readonly vmid?: string;
  readonly step?: string;
  readonly ms?: number;
  readonly pid?: number;
  readonly spawnMs?: number;
}

function parseLog(output: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as Omit<Partial<LogRecord>, 'time'> & { time?: unknown };
      // The daemon writes ISO-8601 times (ms precision), as epoch ms here.
      const time = typeof rec.time === 'string' ? Date.parse(rec.time) : rec.time;
      if (typeof time === 'number' && !Number.isNaN(time) && typeof rec.msg === 'string') out.push({ ...rec, time, msg: rec.msg });
    } catch {
      // not a log line
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface OursSample {
  name: string;
  uid: string;
  t0: number;
  rpc: number;
  running: number;
  lease: number;
  vmmPid: number;
  /** vmm.log header: the daemon about to spawn QEMU. */
  vmmLogHeader: number;
  /** /proc poll: pid first visible; its command line first QEMU's. */
  pidSeen: number;
  pidQemu: number;
  deleteMs: number;
  /** CPU ms from CREATED to the lease (the guest booting): the daemon's, and this bench's. */
  bootDaemonCpu: number;
  bootBenchCpu: number;
}

interface BaselineSample {
  tapMs: number;
  exec: number;
  lease: number;
  killMs: number;
  /** CPU ms from launch to the lease: the (idle) daemon's, and this bench's. */
  bootDaemonCpu: number;
  bootBenchCpu: number;
}

function guestSpec(name: string, mac: string): ReturnType<typeof create<typeof MicroVMSpecSchema>> {
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: NAMESPACE,
    vcpu: 1,
    memoryInMb: GUEST_MEMORY_MB,
    kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig: false, cmdline: {} },
    initrd: { image: GUEST, filename: 'boot/initrd' },
    interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP, guestMac: mac }],
  });
}

async function main(): Promise<void> {
  const missing = missingPrerequisites(GUEST_LAB);
  if (missing.length > 0) throw new Error(`cannot run, missing: ${missing.join('; ')}`);
  if (!existsSync(join(REPO_ROOT, 'dist/cli/flintlockd/main.js'))) {
    console.log('dist/ is missing: npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  }
  ensureGuestImage();

  const availableMb = Number(/^MemAvailable:\s+(\d+) kB/m.exec(readText('/proc/meminfo') ?? '')?.[1] ?? freemem() / 1024) / 1024;
  const fit = Math.max(1, Math.floor((availableMb - 1024) / HOST_MB_PER_GUEST));
  const VMS = Math.min(REQUESTED_VMS, fit);
  const tStart = now();
  const abort = { stop: false };

  const dir = makeTempDir('fl-bench-vm-');
  chmodSync(dir, 0o755); // dnsmasq drops to nobody
  let netns: TestNetns | undefined;
  let daemon: DaemonHandle | undefined;
  let client: TestClient | undefined;
  const stops: Array<() => void> = [];
  const baselineChildren = new Set<ChildProcess>();
  /** Timers and streams that would keep the event loop alive after an error. */
  const disposers = new Set<() => void>();

  // Once: a signal's or the watchdog's cleanup and the main flow's must not race.
  let cleaning: Promise<void> | undefined;
  const cleanupSync = (): void => {
    // Last resort (process exit): everything that names the temp dir, by pid; then the namespace.
    for (const pid of processesNaming(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    netns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  let cleaned = false;
  const attempt = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      console.error(`cleanup: ${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      abort.stop = true;
      for (const dispose of disposers) await attempt('timers and streams', dispose);
      await attempt('client', () => client?.close());
      const d = daemon;
      if (d !== undefined) {
        await attempt('daemon', async () => {
          const timer = setTimeout(() => void d.kill(), 10_000);
          await d.stop();
          clearTimeout(timer);
        });
      }
      for (const child of baselineChildren)
        await attempt('baseline QEMU', () => child.pid !== undefined && isQemu(child.pid) && process.kill(child.pid, 'SIGKILL'));
      for (const stop of stops) await attempt('dnsmasq/registry', stop);
      // VMMs outlive the daemon by design: every QEMU (and anything else) of this run, by pid.
      await attempt('processes', async () => {
        const deadline = Date.now() + 5000;
        for (let left = processesNaming(dir); left.length > 0 && Date.now() < deadline; left = processesNaming(dir)) {
          for (const pid of left) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // gone meanwhile
            }
          }
          await sleep(50);
        }
      });
      await attempt('namespace', () => netns?.destroy());
      await attempt('temp dir', () => rmSync(dir, { recursive: true, force: true }));
      cleaned = true;
    })());
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  const onExit = (): void => {
    if (!cleaned) cleanupSync();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('SIGHUP', onSignal);
  process.once('exit', onExit);
  const watchdog = setTimeout(() => {
    console.error(`\nbench budget of ${BUDGET_MS / 1000} s exceeded: cleaning up`);
    void cleanup().finally(() => process.exit(1));
  }, BUDGET_MS);

  try {
    const [l1] = loadavg();
    console.log(`MicroVM boot bench: ${VMS} VMs${VMS < REQUESTED_VMS ? ` (asked ${REQUESTED_VMS}; ${availableMb.toFixed(0)} MB available fits ${fit})` : ''}`);
    console.log(
      `host: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM (${availableMb.toFixed(0)} MB available), load ${l1?.toFixed(2)}, node ${process.version}, ` +
        `${execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? ''}, CLK_TCK ${CLK_TCK}`,
    );

    // --- setup --------------------------------------------------------------------------------
    netns = createTestNetns('flbvm');
    const ns = netns.name;
    netns.ip('addr', 'add', '10.77.0.1/24', 'dev', 'br0');
    const dns = startDnsmasq(ns, 'br0', '10.77.0.10,10.77.0.250', join(dir, 'dnsmasq'));
    stops.push(dns.stop);
    const leases = dns.leases;
    const registry = await startRegistry(ns, dir);
    stops.push(registry.stop);
    pushGuest(ns, GUEST);
    daemon = await startDaemon({
      netns: ns,
      dir: join(dir, 'daemon'),
      config: { 'parent-iface': 'eth0', 'bridge-name': 'br0', 'default-provider': 'qemu', 'delete-vm-timeout': '2s' },
    });
    const daemonPid = daemon.process.pid ?? 0;
    // `ip netns exec` execs the daemon in place: the pid is the daemon's own.
    if (!(argvOf(daemonPid)?.some((a) => a.endsWith('flintlockd')) ?? false)) throw new Error(`pid ${daemonPid} is not the daemon`);
    const c = new TestClient(daemon.endpoint);
    client = c;
    const stateDir = daemon.stateDir;
    console.log(`namespace ${ns}, temp dir ${dir}, daemon pid ${daemonPid}; setup took ${ms(now() - tStart)}`);

    const waitState = async (uid: string, deadline: number): Promise<{ at: number; vmmPid: number; consoleLog: string }> => {
      for (;;) {
        const got = await c.get(uid);
        const t = now();
        if (got.status?.state === State.CREATED) return { at: t, vmmPid: got.status.vmmPid, consoleLog: got.status.consoleLogPath };
        if (got.status?.state === State.FAILED) throw new Error(`${got.spec?.id ?? uid} FAILED: ${got.status.failureReason}`);
        if (abort.stop) throw new Error('aborted');
        if (t > deadline) throw new Error(`${got.spec?.id ?? uid} not CREATED within the deadline (state ${got.status?.state})`);
        await sleep(GET_POLL_MS);
      }
    };
    const isGone = async (uid: string): Promise<boolean> => {
      try {
        await c.get(uid);
        return false;
      } catch (e) {
        if ((e as ServiceError).code === GrpcStatus.NOT_FOUND) return true;
        throw e;
      }
    };
    const deleteAndWait = async (uid: string): Promise<number> => {
      const t = now();
      await c.delete(uid);
      const deadline = t + DELETE_DEADLINE_MS;
      while (!(await isGone(uid))) {
        if (abort.stop) throw new Error('aborted');
        if (now() > deadline) throw new Error(`${uid} not deleted within ${DELETE_DEADLINE_MS} ms`);
        await sleep(LEASE_POLL_MS);
      }
      return now() - t;
    };

    // --- warm-up: images into the cache, the real QEMU command line -----------------------------
    const tWarm = now();
    const warm = await c.create(guestSpec('warm', macFor(0, 0)));
    const warmUid = warm.spec?.uid ?? '';
    const warmRun = await waitState(warmUid, now() + 60_000);
    const warmArgv = argvOf(warmRun.vmmPid);
    if (warmArgv === undefined || !isQemu(warmRun.vmmPid)) throw new Error(`warm-up VMM pid ${warmRun.vmmPid} is not a running QEMU`);
    const warmDir = join(stateDir, 'vm', NAMESPACE, 'warm', warmUid);
    const baseDir = join(dir, 'baseline');
    mkdirSync(baseDir, { recursive: true });
    // The files QEMU reads, copied (the image cache and VM dir may go away); outputs per round.
    const arg = (flag: string): string => warmArgv[warmArgv.indexOf(flag) + 1] ?? '';
    const cidataPath = join(warmDir, 'cidata.img');
    copyFileSync(arg('-kernel'), join(baseDir, 'vmlinuz'));
    copyFileSync(arg('-initrd'), join(baseDir, 'initrd'));
    copyFileSync(cidataPath, join(baseDir, 'cidata.img'));
    const warmTap = /ifname=([^,]+)/.exec(warmArgv.find((a) => a.startsWith('tap,')) ?? '')?.[1] ?? '';
    const warmMac = macFor(0, 0);
    const warmDeleteMs = await deleteAndWait(warmUid);
    console.log(`warm-up VM: CREATED after ${ms(warmRun.at - tWarm)}, deleted in ${ms(warmDeleteMs)}`);

    /** The warm-up VM's command line for baseline round i. */
    const baselineArgv = (i: number, tap: string, mac: string, roundDir: string): string[] => {
      const out: string[] = [];
      for (let k = 0; k < warmArgv.length; k++) {
        let a = warmArgv[k] ?? '';
        if (BASELINE_CIDATA === 'none' && warmArgv[k - 1] === '-drive' && a.includes(cidataPath)) {
          // Drop `-drive <cidata>` and its `-device virtio-blk-device,drive=<id>`.
          out.pop();
          k += 2;
          continue;
        }
        if (warmArgv[k - 1] === '-name') a = `baseline/round-${pad(i)}`;
        if (warmArgv[k - 1] === '-kernel') a = join(baseDir, 'vmlinuz');
        if (warmArgv[k - 1] === '-initrd') a = join(baseDir, 'initrd');
        a = a.replaceAll(cidataPath, join(baseDir, 'cidata.img')).replaceAll(warmDir, roundDir);
        // The daemon hands QEMU its tap as an open fd (the sandbox opens it: ADR 0009); a shell
        // launch has no such fd, so the baseline names the tap instead.
        if (a.startsWith('tap,')) a = a.replace(`ifname=${warmTap}`, `ifname=${tap}`).replace(/(^|,)fd=\d+/, `$1ifname=${tap},script=no,downscript=no`);
        if (a.startsWith('virtio-net-device,')) a = a.replace(`mac=${warmMac}`, `mac=${mac}`);
        out.push(a);
      }
      return out;
    };
    let baselineCommand = '';

    // --- sequential: ours and the baseline, interleaved ----------------------------------------
    const ours: OursSample[] = [];
    const base: BaselineSample[] = [];

    const oursRound = async (i: number): Promise<OursSample> => {
      const name = `seq-${pad(i)}`;
      const mac = macFor(1, i);
      const spotter = new QemuSpotter(name);
      spotter.start();
      try {
        const t0 = now();
        const lease = waitLease(leases, mac, t0 + BOOT_DEADLINE_MS, abort);
        lease.catch(() => undefined); // awaited below; not unhandled if the create fails first
        const vm = await c.create(guestSpec(name, mac));
        const rpc = now();
        const uid = vm.spec?.uid ?? '';
        const run = await waitState(uid, t0 + BOOT_DEADLINE_MS);
        const daemonCpu0 = cpuMs(daemonPid);
        const benchCpu0 = process.cpuUsage();
        const header = /^--- (\S+) starting/m.exec(readText(join(stateDir, 'vm', NAMESPACE, name, uid, 'vmm.log')) ?? '')?.[1];
        const tLease = await lease;
        const bootDaemonCpu = cpuMs(daemonPid) - daemonCpu0;
        const benchCpu = process.cpuUsage(benchCpu0);
        const found = spotter.found;
        const deleteMs = await deleteAndWait(uid);
        if (isQemu(run.vmmPid) && argvOf(run.vmmPid)?.includes(`${NAMESPACE}/${name}`) === true) throw new Error(`${name}: QEMU ${run.vmmPid} outlived its VM`);
        return {
          name,
          uid,
          t0,
          rpc,
          running: run.at,
          lease: tLease,
          vmmPid: run.vmmPid,
          vmmLogHeader: header !== undefined ? Date.parse(header) : Number.NaN,
          pidSeen: found?.pid === run.vmmPid ? found.firstSeen : Number.NaN,
          pidQemu: found?.pid === run.vmmPid ? found.identified : Number.NaN,
          deleteMs,
          bootDaemonCpu,
          bootBenchCpu: (benchCpu.user + benchCpu.system) / 1000,
        };
      } finally {
        spotter.stop();
      }
    };

    const baselineRound = async (i: number): Promise<BaselineSample> => {
      const tap = `tb${i}`;
      const mac = macFor(2, i);
      const roundDir = join(baseDir, `round-${pad(i)}`);
      mkdirSync(roundDir);
      const tTap = now();
      execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
      execFileSync('ip', ['-n', ns, 'link', 'set', 'dev', tap, 'master', 'br0', 'up']);
      const tapMs = now() - tTap;
      const argv = baselineArgv(i, tap, mac, roundDir);
      const script = `exec ${argv.map(shQuote).join(' ')}`;
      if (i === 0) baselineCommand = `ip netns exec ${ns} sh -c ${shQuote(script)}`;
      const logFd = openSync(join(roundDir, 'vmm.log'), 'a');
      const t0 = now();
      const lease = waitLease(leases, mac, t0 + BOOT_DEADLINE_MS, abort);
      lease.catch(() => undefined); // awaited below
      const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script], { cwd: roundDir, detached: true, stdio: ['ignore', logFd, logFd] });
      closeSync(logFd);
      baselineChildren.add(child);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      try {
        const pid = child.pid ?? 0;
        // ip -> sh -> qemu all exec in place: the same pid becomes QEMU.
        let exec = Number.NaN;
        for (let k = 0; k < 2000 && child.exitCode === null; k++) {
          if (isQemu(pid)) {
            exec = now();
            break;
          }
          await sleep(1);
        }
        const daemonCpu0 = cpuMs(daemonPid);
        const benchCpu0 = process.cpuUsage();
        const tLease = await lease.catch((e: unknown) => {
          throw new Error(`baseline round ${i}: ${(e as Error).message}; vmm.log: ${readText(join(roundDir, 'vmm.log')) ?? ''}`);
        });
        const bootDaemonCpu = cpuMs(daemonPid) - daemonCpu0;
        const benchCpu = process.cpuUsage(benchCpu0);
        const tKill = now();
        if (isQemu(pid)) process.kill(pid, 'SIGKILL');
        await exited;
        const killMs = now() - tKill;
        return { tapMs, exec: exec - t0, lease: tLease - t0, killMs, bootDaemonCpu, bootBenchCpu: (benchCpu.user + benchCpu.system) / 1000 };
      } finally {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined && isQemu(child.pid)) process.kill(child.pid, 'SIGKILL');
        await exited;
        baselineChildren.delete(child);
        execFileSync('ip', ['-n', ns, 'link', 'del', 'dev', tap]);
      }
    };

    const tSeq = now();
    for (let i = 0; i < VMS; i++) {
      const o = await oursRound(i);
      ours.push(o);
      const b = await baselineRound(i);
      base.push(b);
      const line = `sequential round ${i + 1}/${VMS}: ours create->running ${ms(o.running - o.t0)}, create->lease ${ms(o.lease - o.t0)}; baseline launch->lease ${ms(b.lease)}`;
      if (process.stdout.isTTY) process.stdout.write(`\r  ${line}   `);
      else console.log(`  ${line}`);
    }
    if (process.stdout.isTTY) process.stdout.write('\n');
    const seqMs = now() - tSeq;
    const [seqLoad1] = loadavg();

    // The daemon's side of each sequential create, from its log.
    const records = parseLog(daemon.output());
    const spawnedAt = new Map<string, { time: number; spawnMs: number; pid: number }>();
    const deleteStepMs = new Map<string, number[]>();
    const createdAt = new Map<string, number>();
    /** Per sequential VM: the create's log events (until "microvm reconciled"), ms after t0. */
    const timeline = new Map<string, Map<string, number>>();
    const timelineOrder: string[] = [];
    const t0Of = new Map(ours.map((o) => [o.uid, o.t0]));
    for (const r of records) {
      const uid = (r.vm ?? r.vmid ?? '').split('/')[2];
      if (uid === undefined) continue;
      if (r.msg === 'QEMU spawned') spawnedAt.set(uid, { time: r.time, spawnMs: r.spawnMs ?? Number.NaN, pid: r.pid ?? 0 });
      if (r.msg === 'microvm create accepted') createdAt.set(uid, r.time);
      const t0 = t0Of.get(uid);
      if (t0 === undefined) continue;
      const events = timeline.get(uid) ?? new Map<string, number>();
      timeline.set(uid, events);
      if (events.has('microvm reconciled')) {
        // The delete: step durations only.
        if (r.msg === 'step done' && r.step !== undefined && r.ms !== undefined) {
          const key = r.step.replace(/\[.*\]$/, '[tap]');
          deleteStepMs.set(key, [...(deleteStepMs.get(key) ?? []), r.ms]);
        }
        continue;
      }
      const label = r.msg === 'step starting' || r.msg === 'step done' ? `${r.step ?? '?'} ${r.msg === 'step done' ? 'done' : 'starting'}` : r.msg;
      if (!events.has(label)) events.set(label, r.time - t0);
      if (!timelineOrder.includes(label)) timelineOrder.push(label);
    }
    const timelineRows = timelineOrder.map((label, k): [string, string] => {
      const p50 = percentile(
        [...timeline.values()].map((e) => e.get(label) ?? Number.NaN),
        50,
      );
      const prev =
        k > 0
          ? percentile(
              [...timeline.values()].map((e) => e.get(timelineOrder[k - 1] ?? '') ?? Number.NaN),
              50,
            )
          : 0;
      return [`  ${label}`, `${ms(p50)}  (+${ms(p50 - prev)})`];
    });
    const spawned = ours.map((o) => spawnedAt.get(o.uid));
    if (spawned.some((s, i) => s === undefined || s.pid !== ours[i]?.vmmPid))
      throw new Error('daemon log lacks a "QEMU spawned" record for a sequential VM (verbosity >= 2?)');

    // --- concurrent -------------------------------------------------------------------------------
    const lifetimeHwmKb = statusKb(daemonPid, 'VmHWM');
    let hwmReset = true;
    try {
      writeFileSync(`/proc/${daemonPid}/clear_refs`, '5'); // resets VmHWM to the current RSS
    } catch {
      hwmReset = false;
    }
    const rssBeforeKb = statusKb(daemonPid, 'VmRSS');
    const macs = Array.from({ length: VMS }, (_, i) => macFor(3, i));
    const createdTimes = new Map<string, { at: number; vmmPid: number }>();
    // MicroVMWatch (snapshot, then every stored change); ListMicroVMsStream only lists and ends.
    const stream = c.watch({ namespace: NAMESPACE });
    const cancelStream = (): void => stream.cancel();
    disposers.add(cancelStream);
    stream.on('data', (m: WatchEvent) => {
      const vm = m.microvm;
      const uid = vm?.spec?.uid ?? '';
      if (vm?.status?.state === State.CREATED && !createdTimes.has(uid)) createdTimes.set(uid, { at: now(), vmmPid: vm.status.vmmPid });
    });
    stream.on('error', (e: ServiceError) => {
      if (e.code !== GrpcStatus.CANCELLED) console.error(`watch stream: ${e.message}`);
    });
    let rssPeakKb = rssBeforeKb;
    const rssSampler = setInterval(() => (rssPeakKb = Math.max(rssPeakKb, statusKb(daemonPid, 'VmRSS') || 0)), 100);
    disposers.add(() => clearInterval(rssSampler));

    const cpu0 = cpuMs(daemonPid);
    const t0 = now();
    const created = await Promise.all(macs.map((mac, i) => c.create(guestSpec(`par-${pad(i)}`, mac))));
    const tAccepted = now();
    const uids = created.map((v) => v.spec?.uid ?? '');
    const leaseAt = new Map<string, number>();
    let cpuAllCreated = Number.NaN;
    let tAllCreated = Number.NaN;
    for (;;) {
      const t = now();
      const leased = leasedMacs(leases);
      for (const mac of macs) if (!leaseAt.has(mac) && leased.has(mac)) leaseAt.set(mac, t);
      if (Number.isNaN(tAllCreated) && uids.every((u) => createdTimes.has(u))) {
        tAllCreated = Math.max(...uids.map((u) => createdTimes.get(u)?.at ?? t));
        cpuAllCreated = cpuMs(daemonPid);
      }
      if (leaseAt.size === macs.length) break;
      if (abort.stop) throw new Error('aborted');
      if (t - t0 > CONCURRENT_DEADLINE_MS) throw new Error(`only ${leaseAt.size}/${VMS} leases after ${CONCURRENT_DEADLINE_MS} ms`);
      await sleep(LEASE_POLL_MS);
    }
    const tAllLeases = Math.max(...leaseAt.values());
    const cpu1 = cpuMs(daemonPid);
    clearInterval(rssSampler);
    const windowHwmKb = statusKb(daemonPid, 'VmHWM');
    rssPeakKb = Math.max(rssPeakKb, statusKb(daemonPid, 'VmRSS'));
    const vmmPids = uids.map((u) => createdTimes.get(u)?.vmmPid ?? 0);
    const qemuCpuMs = vmmPids.reduce((sum, pid) => sum + cpuMs(pid), 0);
    const qemuRssKb = vmmPids.reduce((sum, pid) => sum + statusKb(pid, 'VmRSS'), 0);
    const qemuHwmKb = vmmPids.reduce((sum, pid) => sum + statusKb(pid, 'VmHWM'), 0);
    const perVmLease = macs.map((mac) => (leaseAt.get(mac) ?? Number.NaN) - t0);
    const perVmCreated = uids.map((u) => (createdTimes.get(u)?.at ?? Number.NaN) - t0);
    // From the daemon log: when each QEMU was spawned, and how long vmm_start (spawn + QMP running) took.
    const parUids = new Set(uids);
    const parSpawned: number[] = [];
    const parVmmStart: number[] = [];
    for (const r of parseLog(daemon.output())) {
      const uid = (r.vm ?? r.vmid ?? '').split('/')[2] ?? '';
      if (!parUids.has(uid)) continue;
      if (r.msg === 'QEMU spawned') parSpawned.push(r.time - t0);
      if (r.msg === 'step done' && r.step === 'vmm_start' && r.ms !== undefined) parVmmStart.push(r.ms);
    }

    const cpuDel0 = cpuMs(daemonPid);
    const tDel = now();
    await Promise.all(uids.map((u) => c.delete(u)));
    for (;;) {
      const left = await c.list(NAMESPACE);
      if (left.length === 0) break;
      if (abort.stop) throw new Error('aborted');
      if (now() - tDel > DELETE_DEADLINE_MS + 10_000) throw new Error(`${left.length} VMs not deleted after ${DELETE_DEADLINE_MS + 10_000} ms`);
      await sleep(50);
    }
    const deleteAllMs = now() - tDel;
    const cpuDelete = cpuMs(daemonPid) - cpuDel0;
    stream.cancel();
    const leftoverQemu = processesNaming(dir).filter(isQemu).length;

    // --- report -----------------------------------------------------------------------------------
    const createToRunning = ours.map((o) => o.running - o.t0);
    const createToLease = ours.map((o) => o.lease - o.t0);
    const runningToLease = ours.map((o) => o.lease - o.running);
    const baseLease = base.map((b) => b.lease);
    const toSpawned = spawned.map((s, i) => (s?.time ?? Number.NaN) - (ours[i]?.t0 ?? Number.NaN));
    const toHeader = ours.map((o) => o.vmmLogHeader - o.t0);
    const toPidSeen = ours.map((o) => o.pidSeen - o.t0);
    const toPidQemu = ours.map((o) => o.pidQemu - o.t0);
    const spawnCall = spawned.map((s) => s?.spawnMs ?? Number.NaN);
    const toCreatedLog = ours.map((o) => (createdAt.get(o.uid) ?? Number.NaN) - o.t0);
    const spawnedToRunning = ours.map((o, i) => o.running - (spawned[i]?.time ?? Number.NaN));
    const ratio = percentile(createToLease, 50) / percentile(baseLease, 50);
    const overhead = percentile(createToLease, 50) - percentile(baseLease, 50);
    const spawnP50 = percentile(toSpawned, 50);

    printTable(`Sequential, ${VMS} VMs one at a time (ours and baseline interleaved; p50 / p99 ms)`, [
      [
        'ours: create -> RPC answered',
        p5099(
          ours.map((o) => o.rpc - o.t0),
          1,
        ),
      ],
      ['ours: create -> Get says CREATED (VMM running the guest)', p5099(createToRunning)],
      ['ours: create -> DHCP lease', p5099(createToLease)],
      ['ours: CREATED -> DHCP lease', p5099(runningToLease)],
      ['ours: delete -> NOT_FOUND', p5099(ours.map((o) => o.deleteMs))],
      [
        `baseline: tap add + master br0 up (2 x ip, not in launch->lease)`,
        p5099(
          base.map((b) => b.tapMs),
          1,
        ),
      ],
      [
        'baseline: launch -> QEMU exec (ip netns exec, sh, exec)',
        p5099(
          base.map((b) => b.exec),
          1,
        ),
      ],
      [`baseline: launch -> DHCP lease (cidata drive: ${BASELINE_CIDATA})`, p5099(baseLease)],
      [
        'baseline: SIGKILL -> reaped',
        p5099(
          base.map((b) => b.killMs),
          1,
        ),
      ],
      ['ours: QEMU exec (daemon log) -> lease', p5099(ours.map((o, i) => o.lease - (spawned[i]?.time ?? Number.NaN)))],
      ['baseline: QEMU exec -> lease', p5099(base.map((b) => b.lease - b.exec))],
      [
        'pre-exec: ours create->exec - baseline (tap + launch->exec), p50',
        ms(
          percentile(toSpawned, 50) -
            percentile(
              base.map((b) => b.tapMs + b.exec),
              50,
            ),
        ),
      ],
      ['paired: ours create->lease - baseline launch->lease, same round', p5099(ours.map((o, i) => o.lease - o.t0 - (base[i]?.lease ?? Number.NaN)))],
      ['CPU while the guest boots: daemon, ours (CREATED->lease)', p5099(ours.map((o) => o.bootDaemonCpu))],
      ['CPU while the guest boots: daemon, baseline (exec->lease)', p5099(base.map((b) => b.bootDaemonCpu))],
      ['CPU while the guest boots: this bench, ours / baseline', `${p5099(ours.map((o) => o.bootBenchCpu))}  /  ${p5099(base.map((b) => b.bootBenchCpu))}`],
      ['ratio ours/baseline, create->lease at p50', Number.isFinite(ratio) ? ratio.toFixed(3) : 'n/a'],
      [
        `our overhead at p50 (ours - baseline) [goal <= ${OVERHEAD_GOAL * 100}% of lease]`,
        `${ms(overhead)} = ${((overhead / percentile(baseLease, 50)) * 100).toFixed(1)}% of the baseline's lease time  ${overhead / percentile(baseLease, 50) <= OVERHEAD_GOAL ? 'MET' : 'MISSED'}`,
      ],
      ['sequential phase wall time', ms(seqMs)],
      [
        'host load average (1 min): at start / after the phase',
        `${l1?.toFixed(2)} / ${seqLoad1?.toFixed(2)}  (one guest + the daemon account for ~1; more is other work on the host)`,
      ],
    ]);
    printTable('Spawn: create -> QEMU process (p50 / p99 ms)', [
      ['create -> "microvm create accepted" logged (API stored + triggered)', p5099(toCreatedLog)],
      ['create -> vmm.log header (daemon about to spawn)', p5099(toHeader)],
      [
        `create -> QEMU spawned (daemon log, after exec) [goal <= ${SPAWN_GOAL_MS} ms]`,
        `${p5099(toSpawned)}  ${spawnP50 <= SPAWN_GOAL_MS ? 'MET' : 'MISSED'} at p50`,
      ],
      ['  of which child_process.spawn (spawnMs)', p5099(spawnCall, 1)],
      [`create -> pid visible in /proc (bench poll every ${PROC_POLL_MS} ms, fork)`, p5099(toPidSeen)],
      [`create -> pid runs QEMU (bench poll, exec)`, p5099(toPidQemu)],
      ['QEMU spawned -> Get says CREATED (QMP running + status poll)', p5099(spawnedToRunning)],
    ]);
    printTable('Create timeline from the daemon log (ms after create, p50 over the sequential VMs; +delta from the previous line)', timelineRows);
    printTable('Delete steps (ms, p50 / p99)', [...[...deleteStepMs.entries()].map(([step, values]): [string, string] => [`  ${step}`, p5099(values)])]);
    printTable(`Concurrent: ${VMS} creates in flight at once`, [
      ['all create RPCs answered', ms(tAccepted - t0)],
      ['all QEMUs spawned (daemon log)', `${ms(Math.max(...parSpawned))}  (per VM p50 / p99 ${p5099(parSpawned)})`],
      ['  vmm_start step (spawn + wait for QMP running)', p5099(parVmmStart)],
      ['all CREATED (from the watch stream)', `${ms(tAllCreated - t0)}  (per VM p50 / p99 ${p5099(perVmCreated)})`],
      ['all DHCP leases', `${ms(tAllLeases - t0)}  (per VM p50 / p99 ${p5099(perVmLease)})`],
      [
        'daemon CPU (utime+stime), create -> all leases',
        `${ms(cpu1 - cpu0)}  (${ms(cpuAllCreated - cpu0)} until all CREATED; ${((cpu1 - cpu0) / VMS).toFixed(1)} ms/VM)`,
      ],
      [
        `daemon peak RSS in the window (VmHWM${hwmReset ? ' after clear_refs' : ', lifetime'})`,
        `${mb(windowHwmKb)}  (sampled VmRSS: before ${mb(rssBeforeKb)}, peak ${mb(rssPeakKb)}; lifetime VmHWM before the window ${mb(lifetimeHwmKb)})`,
      ],
      ['QEMU total CPU (utime+stime), at all leases', `${ms(qemuCpuMs)}  (${(qemuCpuMs / VMS).toFixed(0)} ms/VM)`],
      ['QEMU total RSS at all leases (VmRSS / VmHWM)', `${mb(qemuRssKb)} / ${mb(qemuHwmKb)}  (${mb(qemuRssKb / VMS)} per VM)`],
      ['delete all -> List empty', `${ms(deleteAllMs)}  (daemon CPU ${ms(cpuDelete)})`],
      ['QEMU processes left after the deletes', String(leftoverQemu)],
    ]);
    const envs = ['BENCH_VMS', 'BENCH_BASELINE_CIDATA', 'BENCH_BUDGET_S'].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]} `);
    console.log(`\ncommand: ${envs.join('')}node --import tsx bench/vm-boot.ts`);
    console.log(`daemon config: bridge-name br0, default-provider qemu, delete-vm-timeout 2s, verbosity 2 (debug, for the spawn timestamps), else defaults`);
    console.log(`ours (QEMU command line of the warm-up VM, as spawned by the daemon):\n  ${warmArgv.map(shQuote).join(' ')}`);
    console.log(`baseline round 0:\n  ${baselineCommand}`);
    console.log(`total wall time ${ms(now() - tStart)}`);

    const cpuPerVm = (cpu1 - cpu0) / VMS;
    const leaseP50 = percentile(createToLease, 50);
    const baseLeaseP50 = percentile(baseLease, 50);
    const leaseRatio = ratioOf(leaseP50, baseLeaseP50);
    writeBenchJson(
      'vm-boot',
      [
        {
          id: 'create-to-spawn',
          label: `create -> QEMU spawned (daemon log, after exec), p50 of ${VMS} sequential creates`,
          value: spawnP50,
          unit: 'ms',
          goal: `<= ${SPAWN_GOAL_MS} ms`,
          met: spawnP50 <= SPAWN_GOAL_MS,
        },
        {
          id: 'daemon-cpu-per-vm',
          label: `daemon CPU (utime+stime) per booted VM, ${VMS} created at once, create -> all leases`,
          value: cpuPerVm,
          unit: 'ms',
          goal: `<= ${CPU_GOAL_MS} ms`,
          met: cpuPerVm <= CPU_GOAL_MS,
        },
        {
          id: 'lease-overhead',
          label: `create -> DHCP lease, p50 of ${VMS} (ours and the shell launch alternating)`,
          value: leaseP50,
          unit: 'ms',
          baseline: baseLeaseP50,
          baselineLabel: `the same QEMU command line from a shell (cidata drive: ${BASELINE_CIDATA})`,
          ...(leaseRatio !== undefined ? { ratio: leaseRatio } : {}),
          goal: `<= ${(1 + OVERHEAD_GOAL).toFixed(2)} (overhead <= ${OVERHEAD_GOAL * 100}%)`,
          met: leaseRatio !== undefined && leaseRatio <= 1 + OVERHEAD_GOAL,
        },
        { id: 'create-to-created', label: 'create -> Get says CREATED (QEMU runs the guest), p50', value: percentile(createToRunning, 50), unit: 'ms' },
      ],
      [
        `${VMS} sequential rounds, each one of ours then one shell launch; then ${VMS} creates at once. Guests of ${GUEST_MEMORY_MB} MB, 1 vCPU (TCG unless KVM is usable: see the machine line); host load average ${l1?.toFixed(2)} at the start, ${seqLoad1?.toFixed(2)} after the sequential phase.`,
        `create -> DHCP lease overhead ${ms(overhead)} at p50 = ${((overhead / baseLeaseP50) * 100).toFixed(1)}% (ours ${ms(leaseP50)}, shell ${ms(baseLeaseP50)}); paired per round p50 ${ms(
          percentile(
            ours.map((o, i) => o.lease - o.t0 - (base[i]?.lease ?? Number.NaN)),
            50,
          ),
        )}.`,
        `Before the spawn, ours vs the shell launch's own pre-exec (its tap made with 2 ip runs + ip netns exec/sh): ${ms(spawnP50)} vs ${ms(
          percentile(
            base.map((b) => b.tapMs + b.exec),
            50,
          ),
        )} (tap ${ms(
          percentile(
            base.map((b) => b.tapMs),
            50,
          ),
          1,
        )}).`,
        `Create timeline p50 (ms after the create; + the step's share): ${timelineRows.map(([label, v]) => `${label.trim()} ${v.replace(/\s+/g, ' ')}`).join('; ')}.`,
        `Spawn clocks p50: vmm.log header ${ms(percentile(toHeader, 50))}, child_process.spawn itself ${ms(percentile(spawnCall, 50), 1)}, pid seen in /proc ${ms(percentile(toPidSeen, 50))}, QEMU spawned -> CREATED ${ms(percentile(spawnedToRunning, 50))}.`,
        `${VMS} at once: all RPCs answered ${ms(tAccepted - t0)}, all CREATED ${ms(tAllCreated - t0)}, all leases ${ms(tAllLeases - t0)}; daemon CPU ${ms(cpu1 - cpu0)} (${ms(cpuAllCreated - cpu0)} until all CREATED), peak RSS ${mb(windowHwmKb)}; QEMU CPU ${(qemuCpuMs / VMS).toFixed(0)} ms/VM; delete all ${ms(deleteAllMs)}.`,
      ],
    );
  } finally {
    clearTimeout(watchdog);
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('exit', onExit);
  }
}

main().catch((e: unknown) => {
  console.error(`\nbench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
