// The composition root: the one place that knows every adapter and wires them to the core.
import { ulidIds } from '../adapters/ids/ulid-ids.js';
import { startGrpcServer, type RunningGrpcServer } from '../adapters/api/grpc/server.js';
import { startHttpGateway } from '../adapters/api/http/gateway.js';
import { ApiMetrics } from '../adapters/api/metrics.js';
import { DaemonMetrics, ImageMetrics } from '../adapters/metrics/daemon-metrics.js';
import type { TlsSettings } from '../adapters/api/tls.js';
import { detectCgroupLayout, HostVmmCgroups, NoVmmCgroups } from '../adapters/cgroups/cgroups.js';
import { FatCidataDiskBuilder } from '../adapters/cloud-init/cidata-disk.js';
import { prepareStateDir } from '../adapters/fs/state-dir.js';
import { NodeVmFilesystem } from '../adapters/fs/vm-filesystem.js';
import { virtiofsHostChecks } from '../adapters/fs/virtiofs-roots.js';
import { OciImageService } from '../adapters/images/oci-image-service.js';
import { LinuxProcessTable } from '../adapters/process/process-table.js';
import { Iproute2NetworkService } from '../adapters/network/iproute2.js';
import { createProviderRegistry } from '../adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../adapters/store/sqlite-repository.js';
import { claimStateDir } from '../adapters/store/state-dir-claim.js';
import { stateDirProblem } from '../config/paths.js';
import type { Config } from '../config/config.js';
import { sweepOrphanDevices } from '../core/orphans.js';
import { sweepOrphanVmms } from '../core/orphan-vmms.js';
import type { Clock, IdGenerator, Logger, NetworkService, VmmCgroups } from '../core/ports.js';
import { ImageJanitor } from '../core/image-janitor.js';
import { Reconciler } from '../core/reconciler.js';
import { DEFAULT_WATCHER_OPTIONS, VmmWatcher } from '../core/vmm-watcher.js';
import { DEFAULT_STABLE_RUN_MS } from '../core/crash-loop.js';
import { MicroVMService } from '../core/service.js';
import { VmCensus } from '../core/vm-census.js';
import type { StepPorts } from '../core/steps/step.js';
import { startDebugServer, type DebugServer } from './debug-server.js';
import { gatherHostReport } from './host-info.js';
import { checkHostNetwork, checkPrerequisites, PrerequisiteError, SANDBOX_PROGRAMS, VOLUME_PROGRAMS } from './prerequisites.js';

export interface RunningDaemon {
  readonly grpcPort: number;
  readonly httpPort?: number;
  readonly debugPort?: number;
  stop(): Promise<void>;
}

export interface DaemonOverrides {
  /** Tests substitute nothing by default; kept for benchmarks that run without netlink. */
  readonly network?: NetworkService;
}

export async function startDaemon(config: Config, log: Logger, overrides: DaemonOverrides = {}): Promise<RunningDaemon> {
  for (const { key, why } of config.ignored) log.warn({ key }, `config key ${key} is ignored: ${why}`);
  const metrics = new ApiMetrics();
  // First, so that /readyz answers (503) while the daemon starts.
  let debug: DebugServer | undefined;
  if (config.debugEndpoint !== '') {
    debug = await startDebugServer(config.debugEndpoint, metrics.registry);
    log.info({ endpoint: config.debugEndpoint }, `debug endpoint (metrics, health) listening on ${config.debugEndpoint}`);
  }
  try {
    return await startServing(config, log, overrides, metrics, debug);
  } catch (e) {
    await debug?.close();
    throw e;
  }
}

async function startServing(
  config: Config,
  log: Logger,
  overrides: DaemonOverrides,
  metrics: ApiMetrics,
  debug: DebugServer | undefined,
): Promise<RunningDaemon> {
  const clock: Clock = { now: () => Date.now() };
  const ids: IdGenerator = ulidIds();
  const network = overrides.network ?? new Iproute2NetworkService();
  const processes = new LinuxProcessTable();
  const imageMetrics = new ImageMetrics(metrics.registry, () => images.cacheSize());
  const images: OciImageService = new OciImageService({
    stateDir: config.stateDir,
    insecureRegistries: config.insecureRegistries,
    credentials: config.registryAuth,
    keepMs: config.imageKeepTimeMs,
    maxUnpackedBytes: config.imageMaxUnpackedBytes,
    // One VM's kernel and initrd come from one image: resolve its tag once, not per step.
    tagTtlMs: 5000,
    log: log.child({ component: 'images' }),
    observer: imageMetrics,
  });
  const sandboxed = config.vmmIdRange !== undefined;
  const providers = createProviderRegistry(
    config.defaultProvider,
    { firecracker: config.firecrackerBin, cloudhypervisor: config.cloudHypervisorBin, qemu: config.qemuBin },
    { processes, log: log.child({ component: 'vmm' }) },
    { sandboxed, firecrackerJailer: config.firecrackerJailerBin },
  );
  log.info({ provider: providers.defaultName() }, `default microvm provider is ${providers.defaultName()}`);
  // Before anything is created: a daemon that can't run VMs refuses to start, naming what's missing.
  const prerequisites = checkPrerequisites(providers, [
    ...(overrides.network === undefined ? [{ program: 'ip', for: 'host networking (taps, macvtaps)' }] : []),
    ...VOLUME_PROGRAMS,
    ...SANDBOX_PROGRAMS,
  ]);
  const hostNetworkReport = await checkHostNetwork(network, { parentIface: config.parentIface, bridgeName: config.bridgeName });
  for (const warning of [...prerequisites.warnings, ...hostNetworkReport.warnings]) log.warn({}, warning);
  const cgroups = await vmmCgroups(config, log);
  const refusals = [...prerequisites.errors, ...hostNetworkReport.errors, ...('error' in cgroups ? [cgroups.error] : [])];
  if (refusals.length > 0 || 'error' in cgroups) throw new PrerequisiteError(refusals);
  if (!sandboxed) log.warn({}, 'vmm-uid-range is empty: VMMs run as the daemon user');
  const stateDir = stateDirProblem(config.stateDir);
  if (stateDir !== undefined) throw new Error(stateDir);
  const claim = claimStateDir(config.stateDir);
  // Claimed first (a second daemon on the dir changes nothing); then searchable by the VMMs (0711).
  // The claim's own files (lock, pid, daemon-id) stay 0600.
  try {
    await prepareStateDir(config.stateDir);
  } catch (e) {
    claim.release();
    throw e;
  }
  const repo = SqliteMicroVMRepository.open(config.stateDir);
  debug?.setReady(false, 'starting: the store is open, the API is not serving yet');
  // The store answers a query: what /healthz reports.
  debug?.setHealthCheck(() => void repo.queueStats(clock.now()));
  const census = new VmCensus(repo);
  const stepObserver = new DaemonMetrics(metrics.registry, { census, repo, clock, providers: providers.names() });

  const ports: StepPorts = {
    repo,
    network,
    fs: new NodeVmFilesystem(config.stateDir),
    providers,
    clock,
    ids,
    hostNetwork: { parentIface: config.parentIface, bridgeName: config.bridgeName, deviceOwner: claim.owner },
    images,
    processes,
    cidata: new FatCidataDiskBuilder(),
    deleteVmTimeoutMs: config.deleteVmTimeoutMs,
    sandbox: {
      ...(config.vmmIdRange !== undefined ? { idRange: config.vmmIdRange } : {}),
      cgroups,
      limits: { memoryOverheadMb: config.vmmMemoryOverheadMb, pidsMax: config.vmmPidsMax },
    },
    networkConfig: { dhcp6: config.networkConfigDhcp6 },
    stepObserver,
  };
  const reconciler = new Reconciler(ports, repo, clock, log.child({ component: 'reconciler' }), {
    concurrency: config.reconcileConcurrency,
    maxRetry: config.maximumRetry,
    backoffBaseMs: config.retryBackoffBaseMs,
    backoffMaxMs: config.retryBackoffMaxMs,
    resyncPeriodMs: config.resyncPeriodMs,
  });
  const limits = {
    minVcpu: 1,
    maxVcpu: 64,
    minMemoryMb: config.minimumMemoryMb,
    maxMemoryMb: config.maximumMemoryMb,
    maxMetadataBytes: config.maximumMetadataKb * 1024,
  };
  const service = new MicroVMService({
    repo,
    reconciler,
    providers,
    limits,
    clock,
    ids,
    log,
    hostChecks: virtiofsHostChecks(config.virtiofsAllowedRoots),
    hostNetwork: ports.hostNetwork,
  });

  // VMMs first: a killed one lets go of its devices, which the device sweep may then remove.
  const killed = await sweepOrphanVmms({ repo, processes, fs: ports.fs, log });
  if (killed.length > 0) log.info({ pids: killed.map((p) => p.pid) }, `killed ${killed.length} orphan VMM processes`);
  const removed = await sweepOrphanDevices(repo, network, claim.owner, log);
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
  const stopBackground = async (): Promise<void> => {
    watcher.stop();
    await janitor.stop();
    await reconciler.stop();
    census.close();
  };

  log.info({}, config.basicAuthToken !== '' ? 'basic authentication is enabled' : 'basic authentication is DISABLED');
  log.info({}, config.insecure ? 'TLS is DISABLED' : 'TLS is enabled');
  log.info({ endpoint: config.grpcEndpoint }, `starting grpc server listening on endpoint ${config.grpcEndpoint}`);
  // One set of TLS settings for every API port (COMPAT §2.10).
  const tls: TlsSettings = {
    insecure: config.insecure,
    ...(config.tlsCert !== '' ? { certFile: config.tlsCert } : {}),
    ...(config.tlsKey !== '' ? { keyFile: config.tlsKey } : {}),
    ...(config.tlsClientCa !== '' ? { clientCaFile: config.tlsClientCa } : {}),
    clientValidate: config.tlsClientValidate,
  };
  const closers: Array<() => Promise<void>> = [];
  try {
    const grpcServer: RunningGrpcServer = await startGrpcServer(service, {
      endpoint: config.grpcEndpoint,
      tls,
      basicAuthToken: config.basicAuthToken,
      log,
      metrics,
      watchLimits: { maxMessages: config.watchBufferEvents, maxBytes: config.watchBufferBytes },
      hostReport: () => gatherHostReport({ providers, network, hostNetwork: ports.hostNetwork, census }),
    });
    closers.push(() => grpcServer.close());
    let httpPort: number | undefined;
    if (config.enableHttp) {
      log.info({ endpoint: config.httpEndpoint }, `starting http server listening on endpoint ${config.httpEndpoint}`);
      const gateway = await startHttpGateway(service, { endpoint: config.httpEndpoint, tls, basicAuthToken: config.basicAuthToken, log, metrics });
      closers.push(() => gateway.close());
      httpPort = gateway.port;
    }
    debug?.setReady(true);
    return {
      grpcPort: grpcServer.port,
      ...(httpPort !== undefined ? { httpPort } : {}),
      ...(debug !== undefined ? { debugPort: debug.port } : {}),
      stop: async () => {
        debug?.setReady(false, 'stopping');
        await Promise.all(closers.map((close) => close()));
        await stopBackground();
        repo.close();
        claim.release();
        await debug?.close();
      },
    };
  } catch (e) {
    await Promise.all(closers.map((close) => close()));
    await stopBackground();
    repo.close();
    claim.release();
    throw e;
  }
}

/** The VMMs' cgroups (ADR 0009): on the hierarchy found at `vmm-cgroup-root`, none when `vmm-cgroup-parent` is empty. */
async function vmmCgroups(config: Config, log: Logger): Promise<VmmCgroups | { error: string }> {
  if (config.vmmCgroupParent === '') {
    log.warn({}, 'vmm-cgroup-parent is empty: VMMs run without memory and pids limits');
    return new NoVmmCgroups();
  }
  const layout = await detectCgroupLayout(config.vmmCgroupRoot);
  if ('error' in layout) return { error: `${layout.error}; VMMs need their own cgroup (or set vmm-cgroup-parent to "" to run them without limits)` };
  log.info({ version: layout.version, parent: config.vmmCgroupParent }, `VMMs get cgroups (v${layout.version}) under ${config.vmmCgroupParent}`);
  return new HostVmmCgroups(layout, config.vmmCgroupParent);
}
