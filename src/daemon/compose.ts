// The composition root: the one place that knows every adapter and wires them to the core.
import { ulidIds } from '../adapters/ids/ulid-ids.js';
import { startGrpcServer, type RunningGrpcServer } from '../adapters/api/grpc/server.js';
import { startHttpGateway } from '../adapters/api/http/gateway.js';
import { ApiMetrics } from '../adapters/api/metrics.js';
import { DaemonMetrics, ImageMetrics } from '../adapters/metrics/daemon-metrics.js';
import type { TlsSettings } from '../adapters/api/tls.js';
import { prepareStateDir } from '../adapters/fs/state-dir.js';
import { virtiofsHostChecks } from '../adapters/fs/virtiofs-roots.js';
import type { LogOptions } from '../adapters/log/logger.js';
import { LinuxProcessTable } from '../adapters/process/process-table.js';
import { Iproute2NetworkService } from '../adapters/network/iproute2.js';
import { createProviderRegistry } from '../adapters/providers/registry.js';
import { SqliteMicroVMRepository } from '../adapters/store/sqlite-repository.js';
import { claimStateDir } from '../adapters/store/state-dir-claim.js';
import { WriteLock } from '../adapters/store/write-lock.js';
import { stateDirProblem } from '../config/paths.js';
import type { Config } from '../config/config.js';
import type { Clock, IdGenerator, Logger, NetworkService } from '../core/ports.js';
import { MicroVMService } from '../core/service.js';
import { VmCensus } from '../core/vm-census.js';
import type { HostNetworkConfig } from '../core/steps/step.js';
import { startBackground, vmmCgroups, type RunningBackground } from './background.js';
import { startDebugServer, type DebugServer } from './debug-server.js';
import { gatherHostReport } from './host-info.js';
import { checkHostNetwork, checkPrerequisites, PrerequisiteError, SANDBOX_PROGRAMS, VOLUME_PROGRAMS } from './prerequisites.js';
import { ReconcileWorker } from './thread-bridge.js';

export interface RunningDaemon {
  readonly grpcPort: number;
  readonly httpPort?: number;
  readonly debugPort?: number;
  /** Reopens the background thread's log file (SIGHUP); the caller reopens its own. */
  reopenLog(): void;
  stop(): Promise<void>;
}

export interface DaemonOverrides {
  /** Tests substitute nothing by default; kept for benchmarks that run without netlink. The background work then runs on this thread. */
  readonly network?: NetworkService;
  /** The log's settings: with them, the background work runs on a worker thread that logs the same way (flintlockd). */
  readonly workerLog?: LogOptions;
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
  // Here for the start-up checks, validation and host info; the VMs' own are the background's.
  const providers = createProviderRegistry(
    config.defaultProvider,
    { firecracker: config.firecrackerBin, cloudhypervisor: config.cloudHypervisorBin, qemu: config.qemuBin },
    { processes: new LinuxProcessTable(), log: log.child({ component: 'vmm' }) },
    { sandboxed: config.vmmIdRange !== undefined, firecrackerJailer: config.firecrackerJailerBin },
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
  if (config.vmmIdRange === undefined) log.warn({}, 'vmm-uid-range is empty: VMMs run as the daemon user');
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
  const writeLock = new WriteLock();
  const repo = SqliteMicroVMRepository.open(config.stateDir, { writeLock });
  debug?.setReady(false, 'starting: the store is open, the API is not serving yet');
  // The store answers a query: what /healthz reports.
  debug?.setHealthCheck(() => void repo.queueStats(clock.now()));
  const census = new VmCensus(repo);
  const stepObserver = new DaemonMetrics(metrics.registry, { census, repo, clock, providers: providers.names() });
  let background: RunningBackground | ReconcileWorker | undefined;
  const imageMetrics = new ImageMetrics(metrics.registry, () => background?.cacheSize() ?? Promise.reject(new Error('starting')));
  const hostNetwork: HostNetworkConfig = { parentIface: config.parentIface, bridgeName: config.bridgeName, deviceOwner: claim.owner };
  try {
    // The background work (reconciles, VMM supervision, image GC) on a thread of its own, so this
    // event loop does only the API (ADR 0013). In-process tests (a network double) keep it here.
    background =
      overrides.workerLog !== undefined && overrides.network === undefined
        ? await ReconcileWorker.start(
            { config, log: overrides.workerLog, deviceOwner: claim.owner, writeLock: writeLock.buffer },
            repo,
            { steps: stepObserver, images: imageMetrics },
            log,
            (reason) => {
              // VMMs are detached and outlive this process; a restart (systemd's Restart=always)
              // adopts them. Running on without reconciles and supervision would only hide that.
              log.error({ error: reason }, `flintlockd stops: ${reason}`);
              process.exit(70);
            },
          )
        : await startBackground({ config, log, repo, network, deviceOwner: claim.owner, stepObserver, imageObserver: imageMetrics });
  } catch (e) {
    census.close();
    repo.close();
    claim.release();
    throw e;
  }
  const running = background;
  const limits = {
    minVcpu: 1,
    maxVcpu: 64,
    minMemoryMb: config.minimumMemoryMb,
    maxMemoryMb: config.maximumMemoryMb,
    maxMetadataBytes: config.maximumMetadataKb * 1024,
  };
  const service = new MicroVMService({
    repo,
    reconciler: { trigger: (uid) => running.trigger(uid) },
    providers,
    limits,
    clock,
    ids,
    log,
    hostChecks: virtiofsHostChecks(config.virtiofsAllowedRoots),
    hostNetwork,
  });
  const stopBackground = async (): Promise<void> => {
    await running.stop();
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
      hostReport: () => gatherHostReport({ providers, network, hostNetwork, census }),
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
      reopenLog: () => {
        if (running instanceof ReconcileWorker) running.reopenLog();
      },
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
