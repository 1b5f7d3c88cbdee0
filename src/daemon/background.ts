// The daemon's background work, wired: the reconciler and the steps' ports, the VMM watcher and
// the image janitor, after the start-up sweeps of orphan VMMs and devices. It runs on the
// reconcile worker thread (reconcile-worker.ts), so that the API's event loop does only the API
// (ADR 0013); in-process tests run it on the main thread with test doubles.
import { FatCidataDiskBuilder } from '../adapters/cloud-init/cidata-disk.js';
import { detectCgroupLayout, HostVmmCgroups, NoVmmCgroups } from '../adapters/cgroups/cgroups.js';
import { NodeVmFilesystem } from '../adapters/fs/vm-filesystem.js';
import { ulidIds } from '../adapters/ids/ulid-ids.js';
import { OciImageService, type ImageCacheSize, type ImagePullObserver } from '../adapters/images/oci-image-service.js';
import { silentLogger } from '../adapters/log/logger.js';
import { LinuxProcessTable } from '../adapters/process/process-table.js';
import { createProviderRegistry } from '../adapters/providers/registry.js';
import type { SqliteMicroVMRepository } from '../adapters/store/sqlite-repository.js';
import type { Config } from '../config/config.js';
import { DEFAULT_STABLE_RUN_MS } from '../core/crash-loop.js';
import { ImageJanitor } from '../core/image-janitor.js';
import { sweepOrphanDevices } from '../core/orphans.js';
import { sweepOrphanVmms } from '../core/orphan-vmms.js';
import type { Clock, Logger, NetworkService, StepObserver, VmmCgroups } from '../core/ports.js';
import { Reconciler } from '../core/reconciler.js';
import type { StepPorts } from '../core/steps/step.js';
import { DEFAULT_WATCHER_OPTIONS, VmmWatcher } from '../core/vmm-watcher.js';
import { VmmUidIndex } from '../core/vmm-uid-index.js';

export interface BackgroundDeps {
  readonly config: Config;
  readonly log: Logger;
  /** This thread's connection to the store. */
  readonly repo: SqliteMicroVMRepository;
  readonly network: NetworkService;
  /** This daemon's owner id (the state dir claim's), carried in every device alias. */
  readonly deviceOwner: string;
  readonly stepObserver?: StepObserver;
  readonly imageObserver?: ImagePullObserver;
}

export interface RunningBackground {
  trigger(uid: string): void;
  cacheSize(): Promise<ImageCacheSize>;
  stop(): Promise<void>;
}

export async function startBackground(deps: BackgroundDeps): Promise<RunningBackground> {
  const { config, log, repo, network } = deps;
  const clock: Clock = { now: () => Date.now() };
  const processes = new LinuxProcessTable();
  const images = new OciImageService({
    stateDir: config.stateDir,
    insecureRegistries: config.insecureRegistries,
    credentials: config.registryAuth,
    keepMs: config.imageKeepTimeMs,
    maxUnpackedBytes: config.imageMaxUnpackedBytes,
    // One VM's kernel and initrd come from one image: resolve its tag once, not per step.
    tagTtlMs: 5000,
    log: log.child({ component: 'images' }),
    ...(deps.imageObserver !== undefined ? { observer: deps.imageObserver } : {}),
  });
  const sandboxed = config.vmmIdRange !== undefined;
  const providers = createProviderRegistry(
    config.defaultProvider,
    { firecracker: config.firecrackerBin, cloudhypervisor: config.cloudHypervisorBin, qemu: config.qemuBin },
    { processes, log: log.child({ component: 'vmm' }) },
    { sandboxed, firecrackerJailer: config.firecrackerJailerBin },
  );
  // Told once, by the main thread's start-up checks.
  const cgroups = await vmmCgroups(config, silentLogger());
  // The main thread refused to start on this already; here it can only be a host that changed since.
  if ('error' in cgroups) throw new Error(cgroups.error);
  const vmmUids = new VmmUidIndex(repo);
  const ports: StepPorts = {
    repo,
    network,
    fs: new NodeVmFilesystem(config.stateDir),
    providers,
    clock,
    ids: ulidIds(),
    hostNetwork: { parentIface: config.parentIface, bridgeName: config.bridgeName, deviceOwner: deps.deviceOwner },
    images,
    processes,
    cidata: new FatCidataDiskBuilder(),
    deleteVmTimeoutMs: config.deleteVmTimeoutMs,
    sandbox: {
      ...(config.vmmIdRange !== undefined ? { idRange: config.vmmIdRange, vmmUids } : {}),
      cgroups,
      limits: { memoryOverheadMb: config.vmmMemoryOverheadMb, pidsMax: config.vmmPidsMax },
    },
    networkConfig: { dhcp6: config.networkConfigDhcp6 },
    ...(deps.stepObserver !== undefined ? { stepObserver: deps.stepObserver } : {}),
  };
  const reconciler = new Reconciler(ports, repo, clock, log.child({ component: 'reconciler' }), {
    concurrency: config.reconcileConcurrency,
    maxRetry: config.maximumRetry,
    backoffBaseMs: config.retryBackoffBaseMs,
    backoffMaxMs: config.retryBackoffMaxMs,
    resyncPeriodMs: config.resyncPeriodMs,
  });

  // VMMs first: a killed one lets go of its devices, which the device sweep may then remove.
  const killed = await sweepOrphanVmms({ repo, processes, fs: ports.fs, log });
  if (killed.length > 0) log.info({ pids: killed.map((p) => p.pid) }, `killed ${killed.length} orphan VMM processes`);
  const removed = await sweepOrphanDevices(repo, network, deps.deviceOwner, log);
  if (removed.length > 0) log.info({ devices: removed }, `removed ${removed.length} orphan host devices`);
  reconciler.start();
  const watcher = new VmmWatcher(repo, processes, network, reconciler, clock, log.child({ component: 'watcher' }), {
    ...DEFAULT_WATCHER_OPTIONS,
    // VMM restarts back off as failed reconciles do (retry-backoff-base/-max).
    crashLoop: { backoffBaseMs: config.retryBackoffBaseMs, backoffMaxMs: config.retryBackoffMaxMs, stableMs: DEFAULT_STABLE_RUN_MS },
  });
  watcher.start();
  const janitor = new ImageJanitor(repo, images, log.child({ component: 'images' }));
  janitor.start();
  return {
    trigger: (uid) => reconciler.trigger(uid),
    cacheSize: () => images.cacheSize(),
    stop: async () => {
      watcher.stop();
      await janitor.stop();
      await reconciler.stop();
      vmmUids.close();
    },
  };
}

/** The VMMs' cgroups (ADR 0009): on the hierarchy found at `vmm-cgroup-root`, none when `vmm-cgroup-parent` is empty. */
export async function vmmCgroups(config: Config, log: Logger): Promise<VmmCgroups | { error: string }> {
  if (config.vmmCgroupParent === '') {
    log.warn({}, 'vmm-cgroup-parent is empty: VMMs run without memory and pids limits');
    return new NoVmmCgroups();
  }
  const layout = await detectCgroupLayout(config.vmmCgroupRoot);
  if ('error' in layout) return { error: `${layout.error}; VMMs need their own cgroup (or set vmm-cgroup-parent to "" to run them without limits)` };
  log.info({ version: layout.version, parent: config.vmmCgroupParent }, `VMMs get cgroups (v${layout.version}) under ${config.vmmCgroupParent}`);
  return new HostVmmCgroups(layout, config.vmmCgroupParent);
}
