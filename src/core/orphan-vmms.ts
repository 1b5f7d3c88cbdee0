// Start-up sweep of VMM processes, before the reconciler runs: every process started the way VMMs
// are (ProcessTable.listMentioning) that names a path under this daemon's VM dirs must be the one
// VMM its VM is known by, or it is killed. Known means, in this order:
//   1. the status records it (status.vmm, alive): the reconciler re-adopts it as it is;
//   2. otherwise the VM dir's pid file names it (spawned, then the daemon died before the status
//      was written): the vmm_start step adopts it (vmm_stop, for a deleting VM, kills it).
// Everything else is killed: a VMM of a VM the store no longer has (deleted, or its record lost),
// a second VMM of a VM that has one, and one spawned in the instant before its pid file was
// written (the daemon killed between fork and rename): nothing would ever find it again, and
// vmm_start would start a second VMM on the same taps and disks.
//
// Kills go by pid and start time (signal() refuses a reused pid), and the sweep waits for the
// killed to be gone: a dying QEMU still holds its tap, and the VMM started next for the same VM
// would find it busy.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VMM_PID_FILE } from './launch.js';
import type { MicroVM } from './model.js';
import type { Logger, MicroVMRepository, ProcessMention, ProcessTable, VmFilesystem, VmmProcess } from './ports.js';

export interface VmmSweepPorts {
  readonly repo: MicroVMRepository;
  readonly processes: ProcessTable;
  readonly fs: VmFilesystem;
  readonly log: Logger;
}

/** How long the sweep waits for the killed to be gone, and how often it looks. */
export const SWEEP_EXIT_WAIT_MS = 5000;
const SWEEP_POLL_MS = 20;

const same = (a: VmmProcess, b: VmmProcess | undefined): boolean => b !== undefined && a.pid === b.pid && a.startTime === b.startTime;

/** The VM whose dir the process names, if the store has it. */
function vmNamedBy(process: ProcessMention, dirs: ReadonlyArray<{ vm: MicroVM; dir: string }>): { vm: MicroVM; dir: string } | undefined {
  return dirs.find(({ dir }) => process.names.some((name) => name === dir || name.includes(`${dir}/`)));
}

/** The one VMM the VM is known by (see the header), if it is alive. */
async function knownVmm(ports: VmmSweepPorts, vm: MicroVM, dir: string): Promise<VmmProcess | undefined> {
  const recorded = vm.status.vmm;
  if (recorded !== undefined && (await ports.processes.isAlive(recorded))) return recorded;
  return ports.processes.recorded(join(dir, VMM_PID_FILE));
}

/** Kills the VMM processes no VM is known by (see the header); returns them. */
export async function sweepOrphanVmms(ports: VmmSweepPorts): Promise<ProcessMention[]> {
  const { repo, processes, fs, log } = ports;
  const found = await processes.listMentioning(fs.vmsDir());
  if (found.length === 0) return [];
  const dirs = repo.list({}).map((vm) => ({ vm, dir: fs.vmDir(vm.id) }));
  const killed: ProcessMention[] = [];
  for (const process of found) {
    const owner = vmNamedBy(process, dirs);
    if (owner !== undefined && same(process, await knownVmm(ports, owner.vm, owner.dir))) continue;
    await processes.signal(process, 'SIGKILL');
    killed.push(process);
    const why = owner === undefined ? 'its VM is gone' : 'its VM is known by another VMM, or by none (no pid file, not in the status)';
    log.warn({ pid: process.pid, vmUid: owner?.vm.id.uid, command: process.names.slice(0, 1) }, `killed a VMM process: ${why}`);
  }
  await waitGone(ports, killed);
  return killed;
}

async function waitGone(ports: VmmSweepPorts, killed: readonly VmmProcess[]): Promise<void> {
  const deadline = SWEEP_EXIT_WAIT_MS / SWEEP_POLL_MS;
  for (let round = 0; round < deadline; round++) {
    const alive = (await Promise.all(killed.map((p) => ports.processes.isAlive(p)))).some(Boolean);
    if (!alive) return;
    // A timer that holds the process: nothing else does this early in start-up.
    await sleep(SWEEP_POLL_MS);
  }
  ports.log.warn({ pids: killed.map((p) => p.pid) }, `killed VMM processes still there after ${SWEEP_EXIT_WAIT_MS} ms`);
}
