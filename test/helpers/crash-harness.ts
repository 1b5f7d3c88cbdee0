// The crash harness behind test/e2e/crash.test.ts (a few iterations) and bench/crash.ts (100):
// the real daemon (bin/flintlockd) in a test namespace (bridge br0 for taps, veth eth0 as the
// macvtap parent), creating and deleting real QEMU guests (the test guest, from Debian's
// docker-registry in the namespace), SIGKILLed at a random moment or the moment a new VMM process
// appears, restarted on the same state dir; after it converges, the invariants of issue 9:
//   - each acknowledged create is there and CREATED (the API allows FAILED with a reason, but in
//     this lab nothing should fail: a FAILED VM is a violation too);
//   - each acknowledged delete is gone (Get answers NOT_FOUND);
//   - exactly one VMM process per CREATED VM (the one its status names), at most one for a FAILED
//     one, none for a VM that is gone (processes counted by the VM dir their command line names);
//   - no tap or macvtap in the namespace, and no VM dir, without a live VM;
//   - the database passes PRAGMA integrity_check (opened read-only while the daemon runs).
// A request the kill cut off (no answer) may or may not have happened: a create then counts if
// the VM turns up, a delete if the VM is gone.
//
// The plan of every iteration (kill kind, delay, operations) comes from fast-check's generator
// with the given seed, so a run is replayed by passing its seed (timing still varies).
import { chmodSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import type { ServiceError } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { DB_FILE_NAME } from '../../src/adapters/store/sqlite-repository.js';
import {
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState as State,
  NetworkInterface_IfaceType as IfaceType,
  type MicroVM,
} from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from './daemon.js';
import { ensureGuestImage, pushGuest, startRegistry } from './guest-lab.js';
import { TestClient } from './grpc-client.js';
import { createTestNetns, type TestNetns } from './netns.js';
import { atExit, processesMentioning } from './processes.js';
import { waitFor } from './wait.js';

const GUEST = '127.0.0.1:5000/flintlock/guest:crash';
const NAMESPACE = 'crash';
/** Live VMs the plan aims for at most (TCG guests on a shared 2-core machine). */
const MAX_LIVE = 3;
/** How long a restarted daemon gets to converge. */
const CONVERGE_DEADLINE_MS = 120_000;
/** How long a spawn-moment kill waits for a new VMM process before it kills anyway. */
const SPAWN_WAIT_MS = 15_000;

const DAEMON_CONFIG = {
  'parent-iface': 'eth0',
  'bridge-name': 'br0',
  'default-provider': 'qemu',
  'maximum-retry': 3,
  'retry-backoff-base': '200ms',
  'delete-vm-timeout': '2s',
};

export type KillKind = 'random' | 'spawn';

interface PlannedOp {
  readonly kind: 'create' | 'delete';
  readonly nic: 'tap' | 'macvtap';
  /** Which live VM a delete picks (modulo their number). */
  readonly pick: number;
}

export interface IterationPlan {
  readonly kill: KillKind;
  /**
   * A random kill: how long after the operations start. A spawn-moment kill: at once for an even
   * delay (mostly before the pid file is written), else a tenth of it later (0-300 ms: mostly
   * after the pid file, before the status records the VMM).
   */
  readonly delayMs: number;
  readonly ops: readonly PlannedOp[];
}

export function crashPlans(seed: number, iterations: number): IterationPlan[] {
  const op = fc.record({
    kind: fc.constantFrom<'create' | 'delete'>('create', 'delete'),
    nic: fc.constantFrom<'tap' | 'macvtap'>('tap', 'macvtap'),
    pick: fc.nat(),
  });
  const plan = fc.record({ delayMs: fc.noBias(fc.integer({ min: 0, max: 3000 })), ops: fc.array(op, { minLength: 1, maxLength: 3 }) });
  // Both kinds of kill in turn, so even a short run has each.
  return fc.sample(plan, { seed, numRuns: iterations }).map((p, i) => ({ ...p, kill: i % 2 === 0 ? 'random' : 'spawn' }));
}

export interface Violation {
  readonly iteration: number;
  readonly kind: string;
  readonly detail: string;
}

export interface IterationResult {
  readonly iteration: number;
  /** What killed the daemon: at a random moment, at a VMM's spawn, or (spawn-missed) no VMM process appeared in time. */
  readonly kill: KillKind | 'spawn-missed';
  readonly convergeMs: number;
  /** What the restarted daemon logged doing about VMMs: adopted from a pid file, killed by the start-up sweep. */
  readonly adopted: number;
  readonly swept: number;
  readonly violations: readonly Violation[];
}

export interface CrashRunOptions {
  readonly seed: number;
  readonly iterations: number;
  readonly log?: (line: string) => void;
}

export interface CrashRun {
  readonly seed: number;
  readonly results: readonly IterationResult[];
  /** Violations found after the last iteration, once every VM was deleted and the daemon stopped. */
  readonly finalViolations: readonly Violation[];
  readonly totalMs: number;
}

function guestSpec(name: string, nic: 'tap' | 'macvtap'): ReturnType<typeof create<typeof MicroVMSpecSchema>> {
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: NAMESPACE,
    vcpu: 1,
    memoryInMb: 256,
    kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig: false, cmdline: {} },
    initrd: { image: GUEST, filename: 'boot/initrd' },
    interfaces: [{ deviceId: 'eth1', type: nic === 'tap' ? IfaceType.TAP : IfaceType.MACVTAP }],
  });
}

const isNotFound = (e: unknown): boolean => (e as ServiceError).code === GrpcStatus.NOT_FOUND;

/** What the harness knows of the VMs it asked for. */
class Ledger {
  /** Acknowledged (or found after an unanswered create): must converge. */
  readonly live = new Map<string, string>();
  /** Acknowledged deletes: must be gone. */
  readonly deleted = new Set<string>();
  /** Creates without an answer: name -> kind of NIC. */
  readonly unansweredCreates = new Set<string>();
  /** Deletes without an answer. */
  readonly unansweredDeletes = new Set<string>();
}

/**
 * Every VMM process (its command line runs qemu-system-*, at any stage of the launch chain) that
 * names a path under `vmsDir`, by the VM uid it names. Not the tools the daemon runs on VM dir
 * files (qemu-img, mkfs.ext4).
 */
export function vmmProcessesByUid(vmsDir: string): Map<string, number[]> {
  const byUid = new Map<string, number[]>();
  const re = new RegExp(`${vmsDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^/]+/[^/]+/([^/,\\s\\0]+)`);
  for (const { pid, cmdline } of processesMentioning(`${vmsDir}/`)) {
    if (!cmdline.includes('qemu-system-')) continue;
    const uid = re.exec(cmdline)?.[1];
    if (uid !== undefined) byUid.set(uid, [...(byUid.get(uid) ?? []), pid]);
  }
  return byUid;
}

const allPids = (byUid: Map<string, number[]>): Set<number> => new Set([...byUid.values()].flat());

/** The lab: namespace, registry with the guest, one daemon directory kept across restarts. */
export class CrashLab {
  private daemon: DaemonHandle | undefined;
  private client: TestClient | undefined;
  private readonly ledger = new Ledger();
  private created = 0;

  private constructor(
    readonly netns: TestNetns,
    readonly dir: string,
    private readonly stopRegistry: () => void,
  ) {}

  static async open(): Promise<CrashLab> {
    ensureGuestImage();
    const dir = makeTempDir('fl-crash-');
    chmodSync(dir, 0o755); // the VMMs run as uids of their own and must reach their VM dirs below it
    const netns = createTestNetns('flcrash');
    // Also when the run is interrupted (a bench stopped with ^C or by timeout).
    atExit(() => netns.destroy());
    let stopRegistry: () => void = () => undefined;
    try {
      stopRegistry = (await startRegistry(netns.name, dir)).stop;
      pushGuest(netns.name, GUEST);
    } catch (e) {
      stopRegistry();
      netns.destroy();
      throw e;
    }
    return new CrashLab(netns, dir, stopRegistry);
  }

  get stateDir(): string {
    return join(this.dir, 'daemon', 'state');
  }
  private get vmsDir(): string {
    return join(this.stateDir, 'vm');
  }

  private async start(): Promise<void> {
    this.daemon = await startDaemon({ netns: this.netns.name, dir: join(this.dir, 'daemon'), config: DAEMON_CONFIG });
    this.client = new TestClient(this.daemon.endpoint);
    // The helper returns once the daemon announces its server, which may be just before it listens.
    await waitFor(
      'the daemon to answer',
      () =>
        this.list().then(
          () => true,
          (e: unknown) => {
            if ((e as ServiceError).code !== GrpcStatus.UNAVAILABLE) throw e;
            return false;
          },
        ),
      15_000,
      20,
    );
  }

  private async kill(): Promise<void> {
    await this.daemon?.kill();
    this.client?.close();
  }

  /** The daemon's output (for a failure report). */
  output(): string {
    return this.daemon?.output() ?? '';
  }

  async run(options: CrashRunOptions): Promise<CrashRun> {
    const log = options.log ?? ((): void => undefined);
    const started = Date.now();
    const results: IterationResult[] = [];
    await this.start();
    const plans = crashPlans(options.seed, options.iterations);
    for (const [i, plan] of plans.entries()) {
      const { result, ops } = await this.iteration(i, plan);
      results.push(result);
      log(
        `iteration ${i + 1}/${plans.length}: ${ops}, kill ${result.kill}` +
          `${plan.kill === 'random' ? ` after ${plan.delayMs} ms` : ''}, converged in ${result.convergeMs} ms, ${this.ledger.live.size} live, ` +
          `${result.adopted > 0 ? `${result.adopted} VMM adopted, ` : ''}${result.swept > 0 ? `${result.swept} VMM swept, ` : ''}` +
          `${result.violations.length} violations${result.violations.map((v) => `\n  ${v.kind}: ${v.detail}`).join('')}`,
      );
    }
    const finalViolations = await this.drain();
    return { seed: options.seed, results, finalViolations, totalMs: Date.now() - started };
  }

  private async iteration(iteration: number, plan: IterationPlan): Promise<{ result: IterationResult; ops: string }> {
    const before = allPids(vmmProcessesByUid(this.vmsDir));
    const ops = this.concreteOps(plan);
    const described = ops.map((o) => (o.kind === 'create' ? `create ${o.name} (${o.nic})` : `delete ${this.ledger.live.get(o.uid)}`)).join(', ');
    const requests = ops.map((op) => this.perform(op));
    let kill: IterationResult['kill'] = plan.kill;
    if (plan.kill === 'random') await sleep(plan.delayMs);
    else {
      const spawned = await waitFor(
        'a new VMM process',
        () => [...allPids(vmmProcessesByUid(this.vmsDir))].some((pid) => !before.has(pid)),
        SPAWN_WAIT_MS,
        2,
      ).catch(() => false);
      if (!spawned) kill = 'spawn-missed';
      else if (plan.delayMs % 2 === 1) await sleep(plan.delayMs / 10);
    }
    await this.kill();
    await Promise.all(requests);
    const restarted = Date.now();
    await this.start();
    const violations = await this.converge(iteration);
    const convergeMs = Date.now() - restarted;
    violations.push(...(await this.check(iteration)));
    const logged = (message: string): number =>
      this.output()
        .split('\n')
        .filter((l) => l.includes(message)).length;
    const adopted = logged('adopted a VMM that was started but not recorded');
    const swept = logged('killed a VMM process');
    return { result: { iteration, kill, convergeMs, adopted, swept, violations }, ops: described };
  }

  /** The plan against the ledger: at most MAX_LIVE live VMs; a spawn-moment kill needs a create. */
  private concreteOps(plan: IterationPlan): Array<{ kind: 'create'; name: string; nic: 'tap' | 'macvtap' } | { kind: 'delete'; uid: string }> {
    const live = [...this.ledger.live.keys()];
    const ops: Array<{ kind: 'create'; name: string; nic: 'tap' | 'macvtap' } | { kind: 'delete'; uid: string }> = [];
    let count = live.length;
    for (const op of plan.ops) {
      const remaining = live.filter((uid) => !ops.some((o) => o.kind === 'delete' && o.uid === uid));
      const create = op.kind === 'create' ? count < MAX_LIVE : remaining.length === 0;
      if (create) {
        ops.push({ kind: 'create', name: `vm${++this.created}`, nic: op.nic });
        count++;
      } else {
        ops.push({ kind: 'delete', uid: remaining[op.pick % remaining.length] ?? '' });
        count--;
      }
    }
    if (plan.kill === 'spawn' && !ops.some((o) => o.kind === 'create'))
      ops.push({ kind: 'create', name: `vm${++this.created}`, nic: plan.ops[0]?.nic ?? 'tap' });
    return ops;
  }

  private async perform(op: { kind: 'create'; name: string; nic: 'tap' | 'macvtap' } | { kind: 'delete'; uid: string }): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    if (op.kind === 'create') {
      try {
        const vm = await client.create(guestSpec(op.name, op.nic));
        this.ledger.live.set(vm.spec?.uid ?? '', op.name);
      } catch {
        this.ledger.unansweredCreates.add(op.name);
      }
      return;
    }
    try {
      await client.delete(op.uid);
      this.ledger.live.delete(op.uid);
      this.ledger.deleted.add(op.uid);
    } catch (e) {
      if (isNotFound(e)) {
        // Gone already: an earlier unanswered delete did happen.
        this.ledger.live.delete(op.uid);
        this.ledger.deleted.add(op.uid);
      } else this.ledger.unansweredDeletes.add(op.uid);
    }
  }

  private async list(): Promise<MicroVM[]> {
    const exited = this.daemon?.process.exitCode;
    if (exited !== null && exited !== undefined) throw new Error(`the daemon exited with ${exited}:\n${this.output().split('\n').slice(-30).join('\n')}`);
    return (await this.client?.list(NAMESPACE)) ?? [];
  }

  /** Waits until no VM is pending or deleting and every acknowledged delete is gone; settles the unanswered requests. */
  private async converge(iteration: number): Promise<Violation[]> {
    let last: MicroVM[] = [];
    try {
      await waitFor(
        'the restarted daemon to converge',
        async () => {
          last = await this.list();
          const settled = last.every((vm) => vm.status?.state === State.CREATED || vm.status?.state === State.FAILED);
          return settled && last.every((vm) => !this.ledger.deleted.has(vm.spec?.uid ?? ''));
        },
        CONVERGE_DEADLINE_MS,
        100,
      );
    } catch {
      const states = last.map((vm) => `${vm.spec?.id}:${State[vm.status?.state ?? 0]}`).join(' ');
      return [{ iteration, kind: 'not-converged', detail: `after ${CONVERGE_DEADLINE_MS} ms: ${states}` }];
    }
    const byName = new Map(last.map((vm) => [vm.spec?.id ?? '', vm.spec?.uid ?? '']));
    for (const name of this.ledger.unansweredCreates) {
      const uid = byName.get(name);
      if (uid !== undefined) this.ledger.live.set(uid, name);
    }
    this.ledger.unansweredCreates.clear();
    const present = new Set(byName.values());
    for (const uid of this.ledger.unansweredDeletes) {
      if (!present.has(uid)) {
        this.ledger.live.delete(uid);
        this.ledger.deleted.add(uid);
      }
    }
    this.ledger.unansweredDeletes.clear();
    return [];
  }

  private async check(iteration: number): Promise<Violation[]> {
    const violations: Violation[] = [];
    const violation = (kind: string, detail: string): void => void violations.push({ iteration, kind, detail });
    const client = this.client;
    if (client === undefined) return [{ iteration, kind: 'no-daemon', detail: 'no client' }];
    const vms = await this.list();
    const byUid = new Map(vms.map((vm) => [vm.spec?.uid ?? '', vm]));
    for (const [uid, name] of this.ledger.live) {
      try {
        const vm = await client.get(uid);
        const state = vm.status?.state;
        // Nothing in this lab should fail (the guest, registry and host devices are there): a
        // FAILED VM, even with a reason, is a crash the daemon did not recover from.
        if (state === State.FAILED) violation('failed', `${name} ${uid}: ${vm.status?.failureReason || '(no reason)'}`);
        else if (state !== State.CREATED) violation('not-converged', `${name} ${uid} is ${State[state ?? 0]}`);
      } catch (e) {
        violation(isNotFound(e) ? 'lost-create' : 'get-failed', `${name} ${uid}: ${String(e)}`);
      }
    }
    for (const uid of this.ledger.deleted) {
      try {
        await client.get(uid);
        violation('delete-not-gone', uid);
      } catch (e) {
        if (!isNotFound(e)) violation('get-failed', `${uid}: ${String(e)}`);
      }
    }
    for (const uid of byUid.keys()) if (!this.ledger.live.has(uid) && !this.ledger.deleted.has(uid)) violation('unknown-vm', uid);
    violations.push(...this.hostViolations(iteration, vms));
    const integrity = this.integrity();
    if (integrity !== 'ok') violation('db-integrity', integrity);
    return violations;
  }

  /** VMM processes, devices and VM dirs against the VMs the daemon has (none after the drain). */
  private hostViolations(iteration: number, vms: readonly MicroVM[]): Violation[] {
    const violations: Violation[] = [];
    const violation = (kind: string, detail: string): void => void violations.push({ iteration, kind, detail });
    const byUid = new Map(vms.map((vm) => [vm.spec?.uid ?? '', vm]));
    const processes = vmmProcessesByUid(this.vmsDir);
    for (const [uid, vm] of byUid) {
      const pids = processes.get(uid) ?? [];
      const state = vm.status?.state;
      if (state === State.CREATED && (pids.length !== 1 || pids[0] !== vm.status?.vmmPid)) {
        violation('vmm-count', `${vm.spec?.id} ${uid} CREATED with status pid ${vm.status?.vmmPid} and VMM processes [${pids.join(',')}]`);
      }
      if (state === State.FAILED && pids.length > 1) violation('vmm-count', `${vm.spec?.id} ${uid} FAILED with VMM processes [${pids.join(',')}]`);
    }
    for (const [uid, pids] of processes) if (!byUid.has(uid)) violation('orphan-vmm', `VM ${uid} is gone, VMM processes [${pids.join(',')}] run`);
    const devicesInStatus = new Map(
      vms.flatMap((vm) => Object.values(vm.status?.networkInterfaces ?? {}).map((i) => [i.hostDeviceName, vm.spec?.uid ?? ''] as const)),
    );
    const links = this.netns.links();
    for (const link of links) {
      const kind = link.linkinfo?.info_kind;
      if (kind !== 'tun' && kind !== 'macvtap') continue;
      const aliasUid = link.ifalias?.startsWith('flintlock:') === true ? link.ifalias.split('/').at(-1) : undefined;
      const owner = aliasUid ?? devicesInStatus.get(link.ifname);
      if (owner === undefined || !byUid.has(owner)) violation('orphan-device', `${kind} ${link.ifname} (alias ${link.ifalias ?? 'none'})`);
    }
    for (const vm of vms) {
      if (vm.status?.state !== State.CREATED) continue;
      for (const [id, iface] of Object.entries(vm.status.networkInterfaces)) {
        if (!links.some((l) => l.ifname === iface.hostDeviceName)) violation('missing-device', `${vm.spec?.id} ${id}: ${iface.hostDeviceName}`);
      }
    }
    for (const dir of vmDirs(this.vmsDir)) if (!byUid.has(dir.uid)) violation('orphan-vm-dir', dir.path);
    return violations;
  }

  /** PRAGMA integrity_check on a read-only connection (the daemon may be running: WAL readers don't block it). */
  private integrity(): string {
    const db = new Database(join(this.stateDir, DB_FILE_NAME), { readonly: true, fileMustExist: true });
    try {
      return (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check).join('; ');
    } finally {
      db.close();
    }
  }

  /** Deletes every VM, stops the daemon, and checks that nothing is left: no VMM, device or VM dir. */
  private async drain(): Promise<Violation[]> {
    const client = this.client;
    const violations: Violation[] = [];
    if (client !== undefined) {
      for (const vm of await this.list()) await client.delete(vm.spec?.uid ?? '').catch(() => undefined);
      try {
        await waitFor('every VM deleted', async () => (await this.list()).length === 0, CONVERGE_DEADLINE_MS, 200);
      } catch (e) {
        violations.push({ iteration: -1, kind: 'not-converged', detail: String(e) });
      }
      client.close();
    }
    await this.daemon?.stop();
    violations.push(...this.hostViolations(-1, []));
    const integrity = this.integrity();
    if (integrity !== 'ok') violations.push({ iteration: -1, kind: 'db-integrity', detail: integrity });
    return violations;
  }

  async close(): Promise<void> {
    this.client?.close();
    await this.daemon?.kill();
    this.stopRegistry();
    this.netns.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `<vmsDir>/<ns>/<name>/<uid>` directories. */
function vmDirs(vmsDir: string): Array<{ uid: string; path: string }> {
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return list(vmsDir).flatMap((ns) =>
    list(join(vmsDir, ns)).flatMap((name) => list(join(vmsDir, ns, name)).map((uid) => ({ uid, path: join(vmsDir, ns, name, uid) }))),
  );
}

/** Violations by kind, over a run. */
export function violationsByKind(run: CrashRun): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of [...run.results.flatMap((r) => r.violations), ...run.finalViolations]) counts.set(v.kind, (counts.get(v.kind) ?? 0) + 1);
  return counts;
}

/** CRASH_SEED when set (a replay), else a fresh one. */
export function crashSeed(): number {
  const fromEnv = process.env.CRASH_SEED;
  return fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
}
