// Watches running VMs. Within a second of a VMM process ending on its own, the VM stops being
// CREATED (it no longer runs its guest), the exit is recorded and logged, and the reconciler
// restarts it. Every few seconds it also reports the guest addresses the host has seen (the
// neighbour table entries for the guests' MACs).
import { vmIdString, type MicroVM } from './model.js';
import type { Clock, Logger, MicroVMRepository, NetworkService, ProcessTable } from './ports.js';
import type { ReconcileTrigger } from './reconciler.js';
import { errorMessage } from './result.js';

export interface VmmWatcherOptions {
  readonly intervalMs: number;
  /** Guest addresses are refreshed every this many checks (one `ip neigh` per refresh). */
  readonly addressEvery: number;
}

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
    private readonly options: VmmWatcherOptions = { intervalMs: 500, addressEvery: 4 },
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
      if (alive.length > 0 && this.ticks % this.options.addressEvery === 0) await this.refreshAddresses(alive);
    } catch (e) {
      this.log.warn({ error: errorMessage(e) }, 'vmm watcher check failed');
    } finally {
      this.checking = false;
    }
  }

  private async vmmAlive(vm: MicroVM): Promise<boolean> {
    const vmm = vm.status.vmm;
    if (vmm === undefined || (await this.processes.isAlive(vmm))) return true;
    const lastExitReason = `vmm process ${vmm.pid} ended: ${this.processes.exitReason(vmm) ?? 'exit status unknown'}`;
    this.repo.saveStatus(vm.id.uid, { ...vm.status, state: 'pending', lastExitReason }, this.clock.now());
    this.log.warn({ vmid: vmIdString(vm.id), pid: vmm.pid, reason: lastExitReason }, 'vmm exited; reconciling to restart it');
    this.reconciler.trigger(vm.id.uid);
    return false;
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
      this.repo.saveStatus(vm.id.uid, { ...current.status, guestIps: ips }, this.clock.now());
    }
  }
}

/** A VM whose VMM should be running the guest. */
function shouldRun(vm: MicroVM): boolean {
  return vm.status.state === 'created' && vm.deletedAt === undefined && vm.status.vmm !== undefined;
}
