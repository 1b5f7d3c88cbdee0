// In-memory doubles of the host-facing ports, for unit tests of the core's plans and reconciler.
// The real adapters have their own tests against the kernel (test/net) and the filesystem.
import type { MicroVM, VmId } from '../../src/core/model.js';
import type {
  CharDeviceNumbers,
  LinkInfo,
  MacvtapRequest,
  NetworkService,
  ProviderAvailability,
  ProviderCapability,
  TapRequest,
  VmFilesystem,
  VmmProvider,
  VmmState,
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

  ensureTap(req: TapRequest): Promise<LinkInfo> {
    this.calls.push(`tap ${req.name}`);
    if (!this.existing.has(req.bridge)) return Promise.reject(new Error(`bridge "${req.bridge}" does not exist`));
    return Promise.resolve(
      this.put(req.name, { kind: 'tun', master: req.bridge, mac: '02:00:00:00:00:bb', mtu: 1500, txqlen: 1000, up: true, alias: req.alias }),
    );
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

  macvtapDeviceNumbers(name: string): Promise<CharDeviceNumbers> {
    const link = this.links.get(name);
    if (link?.kind !== 'macvtap') return Promise.reject(new Error(`${name} is not a macvtap`));
    return Promise.resolve({ major: 246, minor: link.ifindex });
  }
}

export class MemoryFilesystem implements VmFilesystem {
  readonly dirs = new Set<string>();
  readonly nodes = new Map<string, { major: number; minor: number }>();

  vmDir(id: VmId): string {
    return `/state/vm/${id.namespace}/${id.name}/${id.uid}`;
  }
  ensureVmDir(id: VmId): Promise<boolean> {
    const had = this.dirs.has(this.vmDir(id));
    this.dirs.add(this.vmDir(id));
    return Promise.resolve(!had);
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
}

/** A provider whose VMM "runs" in memory; failures and delays are scriptable. */
export class MemoryProvider implements VmmProvider {
  readonly running = new Set<string>();
  readonly starts: string[] = [];
  available: ProviderAvailability = { available: true };
  failStarts = 0;
  startDelayMs = 0;
  readonly capabilities: ReadonlySet<ProviderCapability>;

  constructor(
    readonly name = 'qemu',
    capabilities: ProviderCapability[] = ['macvtap', 'tap'],
  ) {
    this.capabilities = new Set(capabilities);
  }

  availability(): ProviderAvailability {
    return this.available;
  }
  async start(vm: MicroVM): Promise<void> {
    this.starts.push(vm.id.uid);
    if (this.startDelayMs > 0) await new Promise((r) => setTimeout(r, this.startDelayMs));
    if (this.failStarts > 0) {
      this.failStarts -= 1;
      throw new Error('vmm exited during boot');
    }
    this.running.add(vm.id.uid);
  }
  stop(vm: MicroVM): Promise<void> {
    this.running.delete(vm.id.uid);
    return Promise.resolve();
  }
  state(vm: MicroVM): Promise<VmmState> {
    return Promise.resolve(this.running.has(vm.id.uid) ? 'running' : 'stopped');
  }
}
