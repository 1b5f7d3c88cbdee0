// In-memory doubles of the host-facing ports, for unit tests of the core's plans and reconciler.
// The real adapters have their own tests against the kernel (test/net) and the filesystem.
import type { VmId } from '../../src/core/model.js';
import type {
  CharDeviceNumbers,
  CloudInitDiskBuilder,
  CloudInitFiles,
  FileInRoot,
  ImageProgress,
  ImageService,
  LocalImage,
  LinkInfo,
  MacvtapRequest,
  NetworkService,
  ProviderAvailability,
  ProviderCapability,
  PullOptions,
  TapRequest,
  FileAccess,
  VmFilesystem,
  VmmAccess,
  VmmCgroupLimits,
  VmmCgroups,
  VmmProvider,
  VmmProcess,
  ProcessMention,
  ProcessTable,
  LaunchSpec,
  SpawnOptions,
} from '../../src/core/ports.js';

export class MemoryNetwork implements NetworkService {
  readonly links = new Map<string, LinkInfo>();
  readonly calls: string[] = [];
  private nextIndex = 10;
  /** Names of parents/bridges that exist. */
  constructor(readonly existing: Set<string> = new Set(['eth0', 'br0'])) {}

  private put(name: string, link: Omit<LinkInfo, 'name' | 'ifindex'>): LinkInfo {
    const info: LinkInfo = { name, ifindex: this.links.get(name)?.ifindex ?? this.nextIndex++, ...link };
    this.links.set(name, info);
    return info;
  }

  ensureMacvtap(req: MacvtapRequest): Promise<LinkInfo> {
    this.calls.push(`macvtap ${req.name}`);
    if (!this.existing.has(req.parent)) return Promise.reject(new Error(`parent network device "${req.parent}" does not exist`));
    return Promise.resolve(
      this.put(req.name, {
        kind: 'macvtap',
        macvtapMode: 'bridge',
        parent: req.parent,
        mac: req.mac ?? '02:00:00:00:00:aa',
        mtu: 1500,
        txqlen: 500,
        up: true,
        alias: req.alias,
      }),
    );
  }

  /** The owner uid each tap was created with. */
  readonly tapOwners = new Map<string, number | undefined>();

  ensureTap(req: TapRequest): Promise<LinkInfo> {
    this.calls.push(`tap ${req.name}`);
    if (!this.links.has(req.name)) this.tapOwners.set(req.name, req.owner);
    if (req.bridge !== undefined && !this.existing.has(req.bridge)) return Promise.reject(new Error(`bridge "${req.bridge}" does not exist`));
    const master = req.bridge !== undefined ? { master: req.bridge } : {};
    return Promise.resolve(this.put(req.name, { kind: 'tun', ...master, mac: '02:00:00:00:00:bb', mtu: 1500, txqlen: 1000, up: true, alias: req.alias }));
  }

  getLink(name: string): Promise<LinkInfo | undefined> {
    return Promise.resolve(this.links.get(name));
  }

  listLinks(): Promise<LinkInfo[]> {
    return Promise.resolve([...this.links.values()]);
  }

  deleteLink(name: string): Promise<void> {
    this.calls.push(`delete ${name}`);
    this.links.delete(name);
    return Promise.resolve();
  }

  readonly neighbourTable: Array<{ ip: string; mac: string }> = [];
  neighbours(): Promise<Array<{ ip: string; mac: string }>> {
    return Promise.resolve(this.neighbourTable);
  }

  macvtapDeviceNumbers(name: string): Promise<CharDeviceNumbers> {
    const link = this.links.get(name);
    if (link?.kind !== 'macvtap') return Promise.reject(new Error(`${name} is not a macvtap`));
    return Promise.resolve({ major: 246, minor: link.ifindex });
  }
}

/** Images "pulled" into memory: each ref has a rootfs whose files the MemoryFilesystem knows. */
export class MemoryImages implements ImageService {
  readonly pulls: string[] = [];
  failWith: string | undefined;
  /** When set, only pulls of these refs fail with `failWith`. */
  failOnly: Set<string> | undefined;
  /** Awaited before a pull answers (a slow registry). */
  delay: ((ref: string) => Promise<void>) | undefined;
  /** Progress each pull reports (to its onProgress) before its delay. */
  progress: ((ref: string) => ImageProgress[]) | undefined;
  constructor(private readonly fs: MemoryFilesystem) {}

  /** The signal of each pull, in order. */
  readonly signals: (AbortSignal | undefined)[] = [];

  async pull(ref: string, options: PullOptions = {}): Promise<LocalImage> {
    this.pulls.push(ref);
    this.signals.push(options.signal);
    for (const p of this.progress?.(ref) ?? []) options.onProgress?.(p);
    if (this.delay !== undefined) await untilAborted(this.delay(ref), options.signal);
    if (this.failWith !== undefined && (this.failOnly === undefined || this.failOnly.has(ref))) throw new Error(this.failWith);
    const rootfs = `/images/rootfs/${ref.replace(/[^a-z0-9]/g, '_')}`;
    for (const file of ['boot/vmlinux', 'boot/initrd']) this.fs.files.set(`${rootfs}/${file}`, ref);
    return { ref, digest: `sha256:${Buffer.from(ref).toString('hex').padEnd(64, '0').slice(0, 64)}`, rootfs };
  }
  ext4(image: LocalImage, sizeMb?: number): Promise<string> {
    const path = `/images/ext4/${image.digest.slice(7, 19)}-${sizeMb ?? 'auto'}.img`;
    this.fs.files.set(path, image.ref);
    return Promise.resolve(path);
  }
  vmmFile(image: LocalImage, path: string): Promise<string> {
    const copy = `/images/files/${image.digest.slice(7, 19)}-${path.replaceAll('/', '_')}`;
    this.fs.files.set(copy, `copy of ${image.rootfs}/${path}`);
    return Promise.resolve(copy);
  }
  collectGarbage(): Promise<string[]> {
    return Promise.resolve([]);
  }
}

export class MemoryFilesystem implements VmFilesystem {
  readonly dirs = new Set<string>();
  readonly nodes = new Map<string, { major: number; minor: number }>();

  vmsDir(): string {
    return '/state/vm';
  }
  vmDir(id: VmId): string {
    return `${this.vmsDir()}/${id.namespace}/${id.name}/${id.uid}`;
  }
  /** Owner group and mode of paths (the VM dirs, files granted to VMMs). */
  readonly modes = new Map<string, { gid: number; mode: number }>();
  ensureVmDir(id: VmId, gid?: number): Promise<boolean> {
    const had = this.dirs.has(this.vmDir(id));
    this.dirs.add(this.vmDir(id));
    this.modes.set(this.vmDir(id), gid !== undefined ? { gid, mode: 0o1770 } : { gid: 0, mode: 0o700 });
    return Promise.resolve(!had);
  }
  vmDirAccess(id: VmId): Promise<FileAccess | undefined> {
    return this.access(this.vmDir(id));
  }
  access(path: string): Promise<FileAccess | undefined> {
    const kind = this.dirs.has(path) || [...this.files.keys()].some((f) => f.startsWith(`${path}/`)) ? 'dir' : this.files.has(path) ? 'file' : undefined;
    if (kind === undefined) return Promise.resolve(undefined);
    const m = this.modes.get(path) ?? { gid: 0, mode: kind === 'dir' ? 0o755 : 0o644 };
    return Promise.resolve({ kind, uid: 0, ...m });
  }
  grantVmmAccess(path: string, gid: number, access: VmmAccess): Promise<void> {
    this.modes.set(path, { gid, mode: { read: 0o640, 'read-write': 0o660, dir: 0o750 }[access] });
    return Promise.resolve();
  }
  ensureFile(path: string): Promise<void> {
    if (!this.files.has(path)) this.files.set(path, '');
    return Promise.resolve();
  }
  vmDirExists(id: VmId): Promise<boolean> {
    return Promise.resolve(this.dirs.has(this.vmDir(id)));
  }
  removeVmDir(id: VmId): Promise<void> {
    const dir = this.vmDir(id);
    this.dirs.delete(dir);
    for (const path of this.nodes.keys()) if (path.startsWith(`${dir}/`)) this.nodes.delete(path);
    return Promise.resolve();
  }
  ensureCharDevice(path: string, dev: { major: number; minor: number }): Promise<void> {
    this.nodes.set(path, dev);
    return Promise.resolve();
  }
  charDevice(path: string): Promise<{ major: number; minor: number } | undefined> {
    return Promise.resolve(this.nodes.get(path));
  }
  readonly files = new Map<string, string>();
  cloneFile(source: string, target: string): Promise<void> {
    this.files.set(target, `copy of ${source}`);
    return Promise.resolve();
  }
  overlayFile(backing: string, target: string): Promise<void> {
    this.files.set(target, `overlay on ${backing}`);
    return Promise.resolve();
  }
  fileExists(path: string): Promise<boolean> {
    return Promise.resolve(this.files.has(path));
  }
  /** No symlinks in memory: a file is there under `<root>/<path>` or it is missing. */
  fileInRoot(root: string, path: string): Promise<FileInRoot> {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    const hostPath = `${root}/${parts.join('/')}`;
    if (this.files.has(hostPath)) return Promise.resolve({ ok: true, hostPath });
    return Promise.resolve({ ok: false, problem: 'missing', path, reason: `${path} does not exist` });
  }
  listDirInRoot(root: string, path: string): Promise<string[]> {
    const prefix = `${root}/${path}/`;
    const names = [...this.files.keys()].filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length).split('/')[0] ?? '');
    return Promise.resolve([...new Set(names)].sort());
  }
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts (as the real adapters do). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Processes that "run" in memory: a test ends one with `exit(pid, reason)`. */
export class MemoryProcesses implements ProcessTable {
  private nextPid = 1000;
  readonly alive = new Map<number, VmmProcess>();
  readonly reasons = new Map<number, string>();
  readonly signals: string[] = [];
  readonly pidFiles = new Map<string, VmmProcess>();

  /** The paths each live process names (its arguments and cwd), for listMentioning(). */
  readonly names = new Map<number, readonly string[]>();

  spawn(_bin?: string, args: readonly string[] = [], options?: SpawnOptions): Promise<VmmProcess> {
    const process = this.start([...args, ...(options?.cwd !== undefined ? [options.cwd] : [])]);
    if (options?.pidFile !== undefined) this.pidFiles.set(options.pidFile, process);
    return Promise.resolve(process);
  }
  /** A process that runs without the daemon having recorded it anywhere (no pid file). */
  start(names: readonly string[]): VmmProcess {
    const process = { pid: this.nextPid++, startTime: 4242 };
    this.alive.set(process.pid, process);
    this.names.set(process.pid, names);
    return process;
  }
  listMentioning(dir: string): Promise<ProcessMention[]> {
    const mentions = [...this.alive.values()].map((p) => ({ ...p, names: this.names.get(p.pid) ?? [] }));
    return Promise.resolve(mentions.filter((p) => p.names.some((n) => n.includes(`${dir}/`))));
  }
  async recorded(pidFile: string): Promise<VmmProcess | undefined> {
    const process = this.pidFiles.get(pidFile);
    return process !== undefined && (await this.isAlive(process)) ? process : undefined;
  }
  isAlive(process: VmmProcess): Promise<boolean> {
    return Promise.resolve(this.alive.get(process.pid)?.startTime === process.startTime);
  }
  exitReason(process: VmmProcess): string | undefined {
    return this.reasons.get(process.pid);
  }
  signal(process: VmmProcess, signal: NodeJS.Signals): Promise<void> {
    this.signals.push(`${signal} ${process.pid}`);
    if (signal === 'SIGKILL') this.exit(process.pid, 'killed by SIGKILL');
    return Promise.resolve();
  }
  exit(pid: number, reason: string): void {
    this.alive.delete(pid);
    this.reasons.set(pid, reason);
  }
}

/** A provider whose VMM "runs" as a MemoryProcesses entry; failures and delays are scriptable. */
export class MemoryProvider implements VmmProvider {
  readonly starts: LaunchSpec[] = [];
  readonly stops: number[] = [];
  available: ProviderAvailability = { available: true };
  failStarts = 0;
  startDelayMs = 0;
  readonly capabilities: ReadonlySet<ProviderCapability>;

  constructor(
    readonly processes: MemoryProcesses = new MemoryProcesses(),
    readonly name = 'qemu',
    capabilities: ProviderCapability[] = ['macvtap', 'tap', 'pause'],
  ) {
    this.capabilities = new Set(capabilities);
  }

  availability(): ProviderAvailability {
    return this.available;
  }
  defaultCmdline(): Readonly<Record<string, string>> {
    return { console: 'ttyS0' };
  }
  /** start() spawns, then never returns (a daemon killed while its VMM boots). */
  hangAfterSpawn = false;

  async start(launch: LaunchSpec, signal?: AbortSignal): Promise<VmmProcess> {
    this.starts.push(launch);
    if (this.startDelayMs > 0) await untilAborted(new Promise((r) => setTimeout(r, this.startDelayMs)), signal);
    if (this.failStarts > 0) {
      this.failStarts -= 1;
      throw new Error('vmm exited during boot');
    }
    const process = await this.processes.spawn('vmm', ['-serial', launch.consoleLogPath], { logPath: `${launch.vmDir}/vmm.log`, pidFile: launch.pidFile });
    if (this.hangAfterSpawn) {
      try {
        await untilAborted(new Promise<never>(() => undefined), signal);
      } catch (e) {
        await this.processes.signal(process, 'SIGKILL'); // an aborted start leaves no VMM (the port's contract)
        throw e;
      }
    }
    return process;
  }
  async stop(_vmDir: string, process: VmmProcess): Promise<void> {
    this.stops.push(process.pid);
    await this.processes.signal(process, 'SIGKILL');
  }
  /** Pause and resume calls, as `pause <pid>` / `resume <pid>`. */
  readonly powerCalls: string[] = [];
  pause(_vmDir: string, process: VmmProcess): Promise<void> {
    this.powerCalls.push(`pause ${process.pid}`);
    return Promise.resolve();
  }
  resume(_vmDir: string, process: VmmProcess): Promise<void> {
    this.powerCalls.push(`resume ${process.pid}`);
    return Promise.resolve();
  }
  /** uids with a live VMM. */
  running(): string[] {
    return this.starts.filter((l) => l.vm.status.vmm === undefined).map((l) => l.vm.id.uid);
  }
}

/** Records the cidata disks it "builds" as files of the MemoryFilesystem. */
export class MemoryCidata implements CloudInitDiskBuilder {
  readonly built = new Map<string, CloudInitFiles>();
  constructor(private readonly fs: MemoryFilesystem) {}
  build(path: string, files: CloudInitFiles): Promise<void> {
    this.built.set(path, files);
    this.fs.files.set(path, 'cidata');
    return Promise.resolve();
  }
}

/** cgroups in memory: which exist, with what limits. */
export class MemoryCgroups implements VmmCgroups {
  readonly groups = new Map<string, VmmCgroupLimits>();
  readonly removed: string[] = [];
  ensure(name: string, limits: VmmCgroupLimits): Promise<readonly string[]> {
    this.groups.set(name, limits);
    return Promise.resolve([`/cgroup/flintlock/${name}/cgroup.procs`]);
  }
  remove(name: string): Promise<void> {
    if (this.groups.delete(name)) this.removed.push(name);
    return Promise.resolve();
  }
  exists(name: string): Promise<boolean> {
    return Promise.resolve(this.groups.has(name));
  }
}
