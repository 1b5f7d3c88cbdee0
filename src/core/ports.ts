// Ports: the interfaces the core depends on. Adapters in src/adapters implement them and the
// composition root (src/daemon/compose.ts) wires them together. Nothing here imports an adapter.
import type { IfaceType, MicroVM, MicroVMSpec, MicroVMStatus, VmId } from './model.js';

// ---------------------------------------------------------------------------------------------
// Store

export interface ListQuery {
  /** Empty or undefined: every namespace. */
  readonly namespace?: string;
  /** Filters by the spec's id (the VM name). */
  readonly name?: string;
}

/** A host network device the daemon created (or is about to create) for a VM. */
export interface HostDeviceRecord {
  readonly name: string;
  readonly vmUid: string;
  readonly kind: IfaceType;
  readonly deviceId: string;
  readonly createdAt: number;
}

export interface QueueEntry {
  readonly uid: string;
  /** Epoch ms when the entry becomes due. */
  readonly dueAt: number;
}

export type InsertOutcome = { readonly inserted: true; readonly vm: MicroVM } | { readonly inserted: false; readonly existing: MicroVM };

export type VmChange = { readonly kind: 'upsert'; readonly vm: MicroVM } | { readonly kind: 'removed'; readonly id: VmId };

/**
 * Durable state. Every method is one transaction: a write that returned is on disk, and a crash
 * between two calls leaves a state the reconciler can finish from.
 */
export interface MicroVMRepository {
  /**
   * Inserts a new VM and enqueues it for reconcile, unless a live VM (not deleting) with the same
   * namespace and name exists; then returns that one instead.
   */
  insertUnlessExists(vm: MicroVM): InsertOutcome;
  get(uid: string): MicroVM | undefined;
  list(query: ListQuery): MicroVM[];
  /** Marks the VM deleting (keeping its status otherwise), resets retries, makes it due now. */
  markDeleting(uid: string, now: number): MicroVM | undefined;
  /** Stores a new status; bumps the version only when something changed. */
  saveStatus(uid: string, status: MicroVMStatus, now: number): MicroVM | undefined;
  /** Removes the VM, its queue entry and its device records. */
  remove(uid: string): void;

  /** The durable work queue. */
  enqueue(uid: string, dueAt: number): void;
  dequeue(uid: string): void;
  queue(): QueueEntry[];

  recordDevice(device: HostDeviceRecord): void;
  forgetDevice(name: string): void;
  devices(vmUid?: string): HostDeviceRecord[];

  /** Called after each committed change. Returns an unsubscribe function. */
  onChange(listener: (change: VmChange) => void): () => void;
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Host networking

export interface LinkInfo {
  readonly name: string;
  readonly ifindex: number;
  /** `macvtap`, `tun`, `bridge`, `veth`, ... (`ip -d link` linkinfo kind). */
  readonly kind: string;
  readonly mac: string;
  readonly mtu: number;
  readonly txqlen: number;
  /** Administratively up. */
  readonly up: boolean;
  readonly master?: string;
  readonly alias?: string;
  /** For macvtap/macvlan: `bridge`, `vepa`, ... */
  readonly macvtapMode?: string;
  /** For macvtap: the parent device name. */
  readonly parent?: string;
}

export interface MacvtapRequest {
  readonly name: string;
  readonly parent: string;
  /** Locally set MAC; the kernel picks one when absent. */
  readonly mac?: string;
  readonly alias: string;
}

export interface TapRequest {
  readonly name: string;
  readonly bridge: string;
  readonly alias: string;
}

export interface CharDeviceNumbers {
  readonly major: number;
  readonly minor: number;
}

/**
 * Host network devices. `ensure*` are idempotent: they create what is missing and correct what
 * differs (master, up state, alias, MAC), and fail with a message naming a missing parent/bridge.
 */
export interface NetworkService {
  ensureMacvtap(req: MacvtapRequest): Promise<LinkInfo>;
  ensureTap(req: TapRequest): Promise<LinkInfo>;
  getLink(name: string): Promise<LinkInfo | undefined>;
  listLinks(): Promise<LinkInfo[]>;
  /** Deletes the link; a link that does not exist is not an error. */
  deleteLink(name: string): Promise<void>;
  /** major:minor of a macvtap's tap character device, read from sysfs (never /dev/tapN). */
  macvtapDeviceNumbers(name: string): Promise<CharDeviceNumbers>;
}

// ---------------------------------------------------------------------------------------------
// VMM providers

export type ProviderCapability = 'macvtap' | 'tap' | 'metadata-service' | 'virtiofs' | 'vsock' | 'pause';

export type VmmState = 'stopped' | 'running';

export interface ProviderAvailability {
  readonly available: boolean;
  /** Why not, when unavailable. */
  readonly reason?: string;
}

export interface VmmProvider {
  readonly name: string;
  readonly capabilities: ReadonlySet<ProviderCapability>;
  availability(): ProviderAvailability;
  /** Starts the VMM for the VM (idempotent: a running VMM is left alone). */
  start(vm: MicroVM, vmDir: string): Promise<void>;
  /** Stops the VMM gracefully, then forcibly; a stopped VMM is not an error. */
  stop(vm: MicroVM, vmDir: string): Promise<void>;
  state(vm: MicroVM, vmDir: string): Promise<VmmState>;
}

export interface ProviderRegistry {
  /** Provider names this daemon knows, whether available or not. */
  names(): string[];
  get(name: string): VmmProvider | undefined;
  /** The configured default, with `auto` already resolved. */
  defaultName(): string;
}

// ---------------------------------------------------------------------------------------------
// Small system ports

export interface Clock {
  now(): number;
}

export interface IdGenerator {
  /** A fresh ULID. */
  next(): string;
}

export interface Logger {
  trace(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  child(bindings: Record<string, string | number>): Logger;
}

/** The VM state directory layout `<state-dir>/vm/<ns>/<name>/<uid>/`. */
export interface VmFilesystem {
  vmDir(id: VmId): string;
  ensureVmDir(id: VmId): Promise<boolean>;
  vmDirExists(id: VmId): Promise<boolean>;
  removeVmDir(id: VmId): Promise<void>;
  /** Creates (or replaces when different) a character device node at path. */
  ensureCharDevice(path: string, dev: { major: number; minor: number }): Promise<void>;
  charDevice(path: string): Promise<{ major: number; minor: number } | undefined>;
}

export type { MicroVMSpec };
