// The start-up sweep of VMM processes (src/core/orphan-vmms.ts) over the in-memory process table,
// alone and followed by the reconciler, as a restarted daemon runs them: every VM ends with
// exactly the one VMM it is known by, and no VMM outlives its VM.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { monotonicFactory } from 'ulid';
import { NodeVmFilesystem } from '../../src/adapters/fs/vm-filesystem.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { LinuxProcessTable } from '../../src/adapters/process/process-table.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { VMM_PID_FILE } from '../../src/core/launch.js';
import type { MicroVM } from '../../src/core/model.js';
import { sweepOrphanVmms } from '../../src/core/orphan-vmms.js';
import type { VmmProcess } from '../../src/core/ports.js';
import { Reconciler } from '../../src/core/reconciler.js';
import type { StepPorts } from '../../src/core/steps/step.js';
import { MemoryCgroups, MemoryCidata, MemoryFilesystem, MemoryImages, MemoryNetwork, MemoryProcesses, MemoryProvider } from '../helpers/doubles.js';
import { sampleVm } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/wait.js';

describe('start-up sweep of VMM processes', () => {
  let dir: string;
  let repo: SqliteMicroVMRepository;
  let fs: MemoryFilesystem;
  let processes: MemoryProcesses;
  let provider: MemoryProvider;
  let reconciler: Reconciler | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fl-vmm-sweep-'));
    repo = SqliteMicroVMRepository.open(dir);
    fs = new MemoryFilesystem();
    processes = new MemoryProcesses();
    provider = new MemoryProvider(processes);
  });

  afterEach(async () => {
    await reconciler?.stop();
    reconciler = undefined;
    repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const sweep = (): Promise<VmmProcess[]> => sweepOrphanVmms({ repo, processes, fs, log: silentLogger() });
  const stored = (vm: MicroVM): MicroVM => {
    assert.ok(repo.insertUnlessExists(vm).inserted);
    const got = repo.get(vm.id.uid);
    assert.ok(got);
    return got;
  };
  /** A VMM process of the VM, as QEMU's command line names its VM dir. */
  const vmmOf = (vm: MicroVM): VmmProcess => processes.start(['qemu-system-x86_64', '-chardev', `file,id=console,path=${fs.vmDir(vm.id)}/console.log`]);
  const alive = (p: VmmProcess): boolean => processes.alive.has(p.pid);
  const pidFileOf = (vm: MicroVM): string => join(fs.vmDir(vm.id), VMM_PID_FILE);

  /** The reconciler of the restarted daemon, after the sweep. */
  function startReconciler(): void {
    const nextUlid = monotonicFactory();
    const ports: StepPorts = {
      repo,
      network: new MemoryNetwork(),
      images: new MemoryImages(fs),
      fs,
      providers: new StaticProviderRegistry([provider], 'qemu'),
      clock: { now: () => Date.now() },
      ids: { next: () => nextUlid() },
      hostNetwork: { parentIface: 'eth0', bridgeName: 'br0', deviceOwner: '0123456789ab' },
      processes,
      cidata: new MemoryCidata(fs),
      deleteVmTimeoutMs: 1000,
      sandbox: { cgroups: new MemoryCgroups(), limits: { memoryOverheadMb: 64, pidsMax: 512 } },
    };
    reconciler = new Reconciler(ports, repo, ports.clock, silentLogger(), {
      concurrency: 2,
      maxRetry: 3,
      backoffBaseMs: 10,
      backoffMaxMs: 40,
      resyncPeriodMs: 60_000,
    });
    reconciler.start();
  }

  it('kills a VMM whose VM the store does not have, and leaves processes naming other directories alone', async () => {
    const gone = sampleVm();
    const orphan = vmmOf(gone);
    const elsewhere = processes.start(['tail', '-f', '/other-state/vm/ns1/vm1/x/console.log']);
    const killed = await sweep();
    assert.deepEqual(
      killed.map((p) => p.pid),
      [orphan.pid],
    );
    assert.equal(alive(orphan), false);
    assert.equal(alive(elsewhere), true);
    assert.deepEqual(processes.signals, [`SIGKILL ${orphan.pid}`]);
  });

  it('keeps the VMM the status records and kills a second one of the same VM', async () => {
    const vm = sampleVm();
    const recorded = vmmOf(vm);
    const second = vmmOf(vm);
    stored({ ...vm, status: { ...vm.status, state: 'created', vmm: { ...recorded, provider: 'qemu' } } });
    await sweep();
    assert.equal(alive(recorded), true);
    assert.equal(alive(second), false);
  });

  it('keeps a VMM the status never learned of but its pid file names; vmm_start then adopts it (no second VMM)', async () => {
    const vm = stored(sampleVm({ spec: { interfaces: [] } }));
    const spawned = vmmOf(vm);
    processes.pidFiles.set(pidFileOf(vm), spawned);
    assert.deepEqual(await sweep(), []);
    startReconciler();
    await waitFor('CREATED', () => repo.get(vm.id.uid)?.status.state === 'created');
    assert.equal(repo.get(vm.id.uid)?.status.vmm?.pid, spawned.pid);
    assert.equal(provider.starts.length, 0, 'no VMM started');
    assert.deepEqual([...processes.alive.keys()], [spawned.pid]);
  });

  it('kills a VMM spawned just before its pid file was written; vmm_start then starts the only one', async () => {
    const vm = stored(sampleVm({ spec: { interfaces: [] } }));
    const unrecorded = vmmOf(vm); // neither in the status nor in a pid file
    assert.equal((await sweep()).length, 1);
    assert.equal(alive(unrecorded), false);
    startReconciler();
    await waitFor('CREATED', () => repo.get(vm.id.uid)?.status.state === 'created');
    const vmm = repo.get(vm.id.uid)?.status.vmm;
    assert.ok(vmm);
    assert.deepEqual([...processes.alive.keys()], [vmm.pid], 'exactly one VMM, the recorded one');
  });

  it('kills a VMM that a stale pid file does not name, when the recorded one is dead', async () => {
    const vm = sampleVm({ spec: { interfaces: [] } });
    const dead = vmmOf(vm);
    processes.exit(dead.pid, 'killed');
    processes.pidFiles.set(pidFileOf(vm), dead);
    const newer = vmmOf(vm); // restarted, killed before its pid file replaced the old one
    stored({ ...vm, status: { ...vm.status, state: 'created', vmm: { ...dead, provider: 'qemu' } } });
    await sweep();
    assert.equal(alive(newer), false);
  });

  it('a deleting VM: the sweep keeps its pid-file VMM, the delete plan stops it; nothing outlives the VM', async () => {
    const vm = stored(sampleVm({ spec: { interfaces: [] } }));
    const spawned = vmmOf(vm);
    processes.pidFiles.set(pidFileOf(vm), spawned);
    repo.markDeleting(vm.id.uid, Date.now());
    await sweep();
    assert.equal(alive(spawned), true);
    startReconciler();
    await waitFor('deleted', () => repo.get(vm.id.uid) === undefined);
    assert.equal(processes.alive.size, 0);
  });
});

describe('start-up sweep of VMM processes, over real processes', () => {
  let dir: string;
  let repo: SqliteMicroVMRepository;
  const table = new LinuxProcessTable();
  const started: VmmProcess[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fl-vmm-sweep-'));
    repo = SqliteMicroVMRepository.open(join(dir, 'state'));
  });

  afterEach(async () => {
    for (const p of started.splice(0)) await table.signal(p, 'SIGKILL');
    repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('kills the VMM of a VM the store lost (and waits until it is gone), keeps the one a pid file names', async () => {
    const fs = new NodeVmFilesystem(join(dir, 'state'));
    const kept = sampleVm({ id: { name: 'kept' } });
    const lost = sampleVm({ id: { name: 'lost' } });
    assert.ok(repo.insertUnlessExists(kept).inserted);
    const vmm = async (vm: MicroVM, pidFile?: string): Promise<VmmProcess> => {
      await fs.ensureVmDir(vm.id);
      // Named like QEMU's console; `; :` keeps sh from exec-ing sleep in its place.
      const p = await table.spawn('sh', ['-c', 'sleep 30; :', `${fs.vmDir(vm.id)}/console.log`], {
        logPath: join(fs.vmDir(vm.id), 'vmm.log'),
        ...(pidFile !== undefined ? { pidFile } : {}),
      });
      started.push(p);
      return p;
    };
    const adoptable = await vmm(kept, join(fs.vmDir(kept.id), VMM_PID_FILE));
    const orphan = await vmm(lost);
    const killed = await sweepOrphanVmms({ repo, processes: table, fs, log: silentLogger() });
    assert.deepEqual(
      killed.map((p) => p.pid),
      [orphan.pid],
    );
    assert.equal(await table.isAlive(orphan), false, 'gone when the sweep returns');
    assert.equal(table.exitReason(orphan), 'killed by SIGKILL');
    assert.equal(await table.isAlive(adoptable), true);
  });
});
