// Notices within a second when a VMM process ends on its own: the VM stops being CREATED (it no
// longer runs its guest), the exit is recorded and logged, and the reconciler restarts it.
import type { Logger, MicroVMRepository, ProcessTable } from './ports.js';
import type { ReconcileTrigger } from './reconciler.js';
import type { Clock } from './ports.js';
import { vmIdString } from './model.js';

export class VmmWatcher {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly repo: MicroVMRepository,
    private readonly processes: ProcessTable,
    private readonly reconciler: ReconcileTrigger,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly intervalMs = 500,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  /** One pass over the running VMs (exposed for tests). */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const vm of this.repo.list({})) {
        const vmm = vm.status.vmm;
        if (vm.status.state !== 'created' || vm.deletedAt !== undefined || vmm === undefined) continue;
        if (await this.processes.isAlive(vmm)) continue;
        const lastExitReason = `vmm process ${vmm.pid} ended: ${this.processes.exitReason(vmm) ?? 'exit status unknown'}`;
        this.repo.saveStatus(vm.id.uid, { ...vm.status, state: 'pending', lastExitReason }, this.clock.now());
        this.log.warn({ vmid: vmIdString(vm.id), pid: vmm.pid, reason: lastExitReason }, 'vmm exited; reconciling to restart it');
        this.reconciler.trigger(vm.id.uid);
      }
    } finally {
      this.checking = false;
    }
  }
}
