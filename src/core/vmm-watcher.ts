// Watches running VMs. Within a second of a VMM process ending on its own, the VM stops being
// CREATED (it no longer runs its guest), the exit is recorded and logged, and the reconciler
// restarts it. Every few seconds it also checks that the VMs' host devices still exist (one link
// listing for all): a tap or macvtap deleted under a running guest leaves its NIC dead for good, so
// the VMM is stopped and the reconciler makes a new device and starts the VMM again, instead of the
// VM staying CREATED without a network. And it reports the guest addresses the host has seen (the
// neighbour table entries for the guests' MACs). A VMM that keeps ending soon after it starts is
// restarted with crash-loop backoff (crash-loop.ts), the wait shown in the VM's status.
import { crashLoopAfterExit, crashLoopEnded, DEFAULT_STABLE_RUN_MS, type CrashLoopOptions } from './crash-loop.js';
import { vmIdString, type MicroVM } from './model.js';
import type { Clock, Logger, MicroVMRepository, NetworkService, ProcessTable } from './ports.js';
import type { ReconcileTrigger } from './reconciler.js';
import { errorMessage } from './result.js';

export interface VmmWatcherOptions {
  readonly intervalMs: number;
  /** Guest addresses are refreshed every this many checks (one `ip neigh` per refresh). */
  readonly addressEvery: number;
  /** Host devices are checked every this many checks (one link listing per check). */
  readonly devicesEvery?: number;
  /** Crash-loop backoff of VMM restarts. */
  readonly crashLoop?: CrashLoopOptions;
}

const DEFAULT_CRASH_LOOP: CrashLoopOptions = { backoffBaseMs: 5_000, backoffMaxMs: 300_000, stableMs: DEFAULT_STABLE_RUN_MS };

export const DEFAULT_WATCHER_OPTIONS: VmmWatcherOptions = { intervalMs: 500, addressEvery: 4, devicesEvery: 4 };

export class VmmWatcher {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private ticks = 0;
  /**
   * The VMs that should have a running VMM, kept from the store's change events so a check every
   * 500 ms reads no rows (the store would parse every VM's JSON each time).
   */
  private running: Map<string, MicroVM> | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly repo: MicroVMRepository,
    private readonly processes: ProcessTable,
    private readonly network: NetworkService,
    private readonly reconciler: ReconcileTrigger,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly options: VmmWatcherOptions = DEFAULT_WATCHER_OPTIONS,
  ) {}

  start(): void {
    this.track();
    this.timer = setInterval(() => void this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  private track(): Map<string, MicroVM> {
    if (this.running !== undefined) return this.running;
    const running = new Map<string, MicroVM>();
    const follow = (vm: MicroVM): void => {
      if (shouldRun(vm)) running.set(vm.id.uid, vm);
      else running.delete(vm.id.uid);
    };
    this.unsubscribe = this.repo.onChange((change) => (change.kind === 'upsert' ? follow(change.vm) : running.delete(change.id.uid)));
    this.repo.list({}).forEach(follow);
    this.running = running;
    return running;
  }

  /** One pass over the running VMs (exposed for tests). */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const alive: MicroVM[] = [];
      for (const vm of [...this.track().values()]) {
        if (await this.vmmAlive(vm)) alive.push(vm);
      }
      this.ticks += 1;
      const withDevices = alive.length > 0 && this.ticks % (this.options.devicesEvery ?? 4) === 0 ? await this.devicesPresent(alive) : alive;
      if (withDevices.length > 0 && this.ticks % this.options.addressEvery === 0) await this.refreshAddresses(withDevices);
    } catch (e) {
      this.log.warn({ error: errorMessage(e) }, 'vmm watcher check failed');
    } finally {
      this.checking = false;
    }
  }

  private get crashLoop(): CrashLoopOptions {
    return this.options.crashLoop ?? DEFAULT_CRASH_LOOP;
  }

  private async vmmAlive(vm: MicroVM): Promise<boolean> {
    const vmm = vm.status.vmm;
    if (vmm === undefined) return true;
    if (await this.processes.isAlive(vmm)) {
      if (crashLoopEnded(vm.status, this.clock.now(), this.crashLoop)) this.endCrashLoop(vm);
      return true;
    }
    // Decide on fresh state: while isAlive ran, the reconciler may have started a new VMM (writing
    // back this snapshot would record the dead pid and start a duplicate), or the VM moved on.
    const current = this.repo.get(vm.id.uid);
    if (current === undefined || !shouldRun(current) || !sameProcess(current.status.vmm, vmm)) return false;
    const now = this.clock.now();
    const lastExitReason = `vmm process ${vmm.pid} ended: ${this.processes.exitReason(vmm) ?? 'exit status unknown'}`;
    const loop = crashLoopAfterExit(current.status, now, this.crashLoop);
    if (this.repo.saveStatus(vm.id.uid, { ...current.status, state: 'pending', lastExitReason, ...loop }, now, current.version) === undefined) return false;
    const log = { vmid: vmIdString(vm.id), pid: vmm.pid, reason: lastExitReason, crashLoopCount: loop.crashLoopCount };
    if (loop.nextRestartAt === undefined) {
      this.log.warn(log, 'vmm exited; reconciling to restart it');
      this.reconciler.trigger(vm.id.uid);
    } else {
      this.log.warn({ ...log, delayMs: loop.nextRestartAt - now }, 'vmm exited soon after it started again (crash loop); restarting it after a backoff');
      this.reconciler.triggerAt(vm.id.uid, loop.nextRestartAt);
    }
    return false;
  }

  private endCrashLoop(vm: MicroVM): void {
    const { crashLoopCount: _ended, ...status } = vm.status;
    this.repo.saveStatus(vm.id.uid, status, this.clock.now(), vm.version);
  }

  /** The VMs whose host devices all exist; the others are stopped and handed to the reconciler. */
  private async devicesPresent(vms: readonly MicroVM[]): Promise<MicroVM[]> {
    const links = new Map((await this.network.listLinks()).map((l) => [l.name, l.ifindex]));
    const intact: MicroVM[] = [];
    for (const vm of vms) {
      const gone = Object.entries(vm.status.interfaces).filter(([, s]) => s.hostDeviceName !== '' && links.get(s.hostDeviceName) !== s.index);
      if (gone.length === 0) {
        intact.push(vm);
        continue;
      }
      // Re-read: the reconciler may have replaced the device (or the VM) while the listing ran.
      const current = this.repo.get(vm.id.uid);
      const vmm = current?.status.vmm;
      if (current === undefined || !shouldRun(current) || vmm === undefined) continue;
      const devices = gone.map(([deviceId, s]) => `${s.hostDeviceName} (${deviceId})`).join(', ');
      const lastExitReason = `host device ${devices} disappeared under the running guest; the VMM was stopped to start it again with a new one`;
      if (await this.processes.isAlive(vmm)) await this.processes.signal(vmm, 'SIGKILL');
      if (this.repo.saveStatus(vm.id.uid, { ...current.status, state: 'pending', lastExitReason }, this.clock.now(), current.version) === undefined) continue;
      this.log.warn({ vmid: vmIdString(vm.id), devices }, 'host device disappeared; reconciling to repair it');
      this.reconciler.trigger(vm.id.uid);
    }
    return intact;
  }

  private async refreshAddresses(vms: readonly MicroVM[]): Promise<void> {
    const table = await this.network.neighbours();
    for (const vm of vms) {
      const macs = new Set(Object.values(vm.status.interfaces).map((i) => i.macAddress.toLowerCase()));
      const ips = [...new Set(table.filter((n) => macs.has(n.mac)).map((n) => n.ip))].sort();
      const known = vm.status.guestIps ?? [];
      if (ips.length === known.length && ips.every((ip, i) => ip === known[i])) continue;
      // Re-read: the VM may have changed while `ip neigh` ran.
      const current = this.repo.get(vm.id.uid);
      if (current?.status.state !== 'created') continue;
      this.repo.saveStatus(vm.id.uid, { ...current.status, guestIps: ips }, this.clock.now(), current.version);
    }
  }
}

function sameProcess(a: { pid: number; startTime: number } | undefined, b: { pid: number; startTime: number }): boolean {
  return a !== undefined && a.pid === b.pid && a.startTime === b.startTime;
}

/** A VM whose VMM should be running the guest. */
function shouldRun(vm: MicroVM): boolean {
  return vm.status.state === 'created' && vm.deletedAt === undefined && vm.status.vmm !== undefined;
}
