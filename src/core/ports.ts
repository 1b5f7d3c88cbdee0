// Ports: the interfaces the core depends on. Adapters in src/adapters implement them and the
// composition root (src/daemon/compose.ts) wires them together. Nothing here imports an adapter.
import type { IfaceType, LifecycleIntent, MicroVM, MicroVMStatus, VmId, VmmIdentity } from './model.js';

export type { VmmIdentity } from './model.js';

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

/** The work queue at a moment: how many entries, how many due, and since when the oldest due one waits. */
export interface QueueStats {
  readonly entries: number;
  readonly due: number;
  /** Epoch ms the oldest due entry became due; absent when none is due. */
  readonly oldestDueAt?: number;
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
  /**
   * Changes a live VM's lifecycle intent (from the current one) and makes it due now, in one
   * transaction; undefined when there is no such VM or it is being deleted.
   */
  setIntent(uid: string, change: (current: LifecycleIntent) => LifecycleIntent, now: number): MicroVM | undefined;
  /** Stores a new status; bumps the version only when something changed. */
  /**
   * Writes the status. With `expectedVersion`, only if the VM is still at that version (a
   * compare-and-swap): undefined when it moved on (or is gone), and the writer must re-read.
   */
  saveStatus(uid: string, status: MicroVMStatus, now: number, expectedVersion?: number): MicroVM | undefined;
  /** Removes the VM, its queue entry and its device records. */
  remove(uid: string): void;

  /** The durable work queue. */
  enqueue(uid: string, dueAt: number): void;
  dequeue(uid: string): void;
  queue(): QueueEntry[];
  /** Counts of the queue, aggregated in the store (cheap whatever its size: metrics scrapes). */
  queueStats(now: number): QueueStats;

  recordDevice(device: HostDeviceRecord): void;
  forgetDevice(name: string): void;
  devices(vmUid?: string): HostDeviceRecord[];
  /** The record of the device with this name, if any (by key: a new NIC's name is checked per create). */
  deviceNamed(name: string): HostDeviceRecord | undefined;

  /**
   * Resolves once every change committed before the call is on disk (fsynced), so it survives a
   * power cut; a returned method's change already survives a crash of the daemon. The API awaits
   * it before acknowledging a Create or Delete; one sync covers every commit made before it.
   */
  durable(): Promise<void>;

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
  /** Absent: a standalone tap (Firecracker's metadata NIC). */
  readonly bridge?: string;
  readonly alias: string;
  /**
   * The uid allowed to attach to the tap by name (TUNSETOWNER), set when the tap is created: an
   * ownerless persistent tap can be attached by any process that can open /dev/net/tun.
   */
  readonly owner?: number;
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
  /** The host's neighbour table (IP -> MAC), for reporting guest addresses. */
  neighbours(): Promise<Array<{ readonly ip: string; readonly mac: string }>>;
  /** major:minor of a macvtap's tap character device, read from sysfs (never /dev/tapN). */
  macvtapDeviceNumbers(name: string): Promise<CharDeviceNumbers>;
}

// ---------------------------------------------------------------------------------------------
// OCI images (kernel, initrd, volumes)

export interface ImageProgress {
  readonly ref: string;
  /** Digest of the layer being fetched. */
  readonly layer: string;
  readonly bytes: number;
  readonly total: number;
  /** Bytes of all the image's layers received so far, and in all (from the manifest), when known. */
  readonly imageBytes?: number;
  readonly imageTotal?: number;
}

/** An image pulled, verified and unpacked in the local cache. */
export interface LocalImage {
  /** The reference it was pulled by. */
  readonly ref: string;
  /** Manifest digest (`sha256:...`): the identity of the content, whatever the tag says later. */
  readonly digest: string;
  /** The unpacked filesystem; shared by every VM using the image, never modified. */
  readonly rootfs: string;
}

export interface PullOptions {
  readonly onProgress?: (progress: ImageProgress) => void;
  /** A delete or a shutdown: stop waiting for the pull. */
  readonly signal?: AbortSignal;
}

export interface ImageService {
  /**
   * Pulls (or finds in the cache) and unpacks an image, logging progress per layer. Concurrent
   * pulls of one image share the work; every blob is digest-verified while streaming; an
   * interrupted pull resumes. Errors carry the registry's message. A caller whose signal aborts
   * stops waiting at once (rejected with the signal's reason); the transfer stops when no caller
   * waits for it any more.
   */
  pull(ref: string, options?: PullOptions): Promise<LocalImage>;
  /**
   * An ext4 filesystem image holding the image's files, built once per (image digest, size) and
   * never modified afterwards (VMs get copies). Refuses a size smaller than the content.
   */
  ext4(image: LocalImage, sizeMb?: number): Promise<string>;
  /**
   * A copy of one regular file of the image (a kernel, an initrd) that VMMs can read, made once
   * per (image, path) and never modified: the unpacked filesystems themselves stay private (they
   * hold the image's setuid binaries). `path` is resolved inside the image by the same lookup as
   * `VmFilesystem.fileInRoot` (symlinks stay inside the image; only a regular file is copied).
   */
  vmmFile(image: LocalImage, path: string): Promise<string>;
  /**
   * Removes cached images (and their blobs) whose manifest digests are not referenced and that
   * were last used longer ago than the keep time; returns the removed images' manifest digests.
   */
  collectGarbage(referenced: ReadonlySet<string>): Promise<string[]>;
}

// ---------------------------------------------------------------------------------------------
// VMM providers

/** `qcow2-overlay`: the VMM opens qcow2 overlays on a raw backing file (VM volumes share blocks). */
export type ProviderCapability = 'macvtap' | 'tap' | 'metadata-service' | 'virtiofs' | 'vsock' | 'pause' | 'qcow2-overlay';

export interface ProviderAvailability {
  readonly available: boolean;
  /** Why not, when unavailable. */
  readonly reason?: string;
}

/** A disk as the guest gets it; the order of `LaunchSpec.disks` is the guest's order (vda, vdb, ...). */
export interface LaunchDisk {
  readonly id: string;
  /** A file (ext4 image, cidata image) or block device on the host. */
  readonly path: string;
  readonly readOnly: boolean;
  readonly root: boolean;
  /** `qcow2`: an overlay on a raw backing file (providers with `qcow2-overlay` only). */
  readonly format: 'raw' | 'qcow2';
}

/** A guest NIC; the order of `LaunchSpec.nics` is the guest's order (eth0, eth1, ...). */
export interface LaunchNic {
  readonly deviceId: string;
  readonly type: IfaceType;
  /** The host tap or macvtap device. */
  readonly hostDevice: string;
  /** The guest NIC's MAC (a macvtap's own MAC). */
  readonly mac: string;
  /** macvtap only: the tap character device node made in the VM dir (open it, pass the fd). */
  readonly tapNode?: string;
  /** Firecracker MMDS: this NIC may reach the metadata service. */
  readonly allowMetadata?: boolean;
}

/** cloud-init NoCloud data as files (decoded text). */
export interface CloudInitFiles {
  readonly 'meta-data': string;
  readonly 'user-data'?: string;
  readonly 'vendor-data'?: string;
  readonly 'network-config'?: string;
}

/** How a VMM is confined (ADR 0009). */
export interface VmmSandbox {
  /** Absent: the VMM keeps the daemon's uid (`vmm-uid-range` empty). */
  readonly identity?: VmmIdentity;
  /** cgroup.procs files the VMM joins before it execs (one per v1 controller, one for v2); may be empty. */
  readonly cgroupProcs: readonly string[];
}

/** Everything a provider needs to run a VM, already resolved by the core (paths, MACs, order). */
export interface LaunchSpec {
  readonly vm: MicroVM;
  readonly vmDir: string;
  readonly vcpu: number;
  readonly memoryMb: number;
  readonly kernelPath: string;
  readonly initrdPath?: string;
  /** The user's kernel command-line entries; the provider merges them over its own defaults. */
  readonly cmdline: Readonly<Record<string, string>>;
  /** Root first, then additional volumes in spec order; the cidata disk last when there is one. */
  readonly disks: readonly LaunchDisk[];
  readonly nics: readonly LaunchNic[];
  readonly cloudInit: CloudInitFiles;
  /** The guest's serial console is written here. */
  readonly consoleLogPath: string;
  /** Absent: no confinement beyond the provider's own (tests of the argument builders). */
  readonly sandbox?: VmmSandbox;
  /** Where the VMM's spawn is recorded (SpawnOptions.pidFile): providers pass it to spawn(). */
  readonly pidFile: string;
}

/** A VMM process, identified so that a reused pid is never mistaken for it. */
export interface VmmProcess {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot). */
  readonly startTime: number;
}

export interface VmmProvider {
  readonly name: string;
  readonly capabilities: ReadonlySet<ProviderCapability>;
  availability(): ProviderAvailability;
  /**
   * Kernel command-line entries this VMM needs (console, root device, ...), before the user's.
   * Also tells the core whether a cidata disk is wanted (metadata-service providers use MMDS).
   */
  defaultCmdline(launch: Omit<LaunchSpec, 'cmdline'>): Readonly<Record<string, string>>;
  /**
   * Starts the VMM detached (own session, survives a daemon restart) and returns once it runs the
   * guest. Fails (and leaves no process) when the VMM can't start. When `signal` aborts (a delete,
   * a shutdown) it stops the VMM it spawned at once and rejects with the signal's reason: a VMM
   * not yet running its guest isn't worth keeping (a daemon killed meanwhile is another matter:
   * launch.pidFile names the VMM for the next start to adopt).
   */
  start(launch: LaunchSpec, signal?: AbortSignal): Promise<VmmProcess>;
  /** Graceful shutdown (ACPI/API), then SIGKILL after timeoutMs; a gone process is not an error. */
  stop(vmDir: string, process: VmmProcess, timeoutMs: number): Promise<void>;
  /** Stops the guest's vCPUs, the VMM kept (providers with the 'pause' capability). */
  pause?(vmDir: string, process: VmmProcess): Promise<void>;
  /** Runs a paused guest's vCPUs again. */
  resume?(vmDir: string, process: VmmProcess): Promise<void>;
}

export interface SpawnOptions {
  /** stdout and stderr are appended here. */
  readonly logPath: string;
  /** Open file descriptors handed to the child as fd 3, 4, ... in order (nothing else is inherited). */
  readonly extraFds?: readonly number[];
  readonly cwd?: string;
  /**
   * Written (pid and start time, durably) the moment the process exists, before spawn() returns:
   * a daemon killed while its VMM starts finds the VMM there, and adopts or stops it, instead of
   * starting a second one or leaving it running forever.
   */
  readonly pidFile?: string;
}

/** Processes on this host (for VMMs): detached spawning and liveness that survives pid reuse. */
export interface ProcessTable {
  /**
   * Starts a detached process in its own session (it outlives the daemon), with a minimal
   * environment (PATH only): the daemon's own may hold secrets (FLINTLOCKD_* config).
   */
  spawn(bin: string, args: readonly string[], options: SpawnOptions): Promise<VmmProcess>;
  /** Alive and still the same process (pid and start time match); a zombie is not alive. */
  isAlive(process: VmmProcess): Promise<boolean>;
  /** How a process this daemon spawned ended (exit code or signal), when known. */
  exitReason(process: VmmProcess): string | undefined;
  /** Sends the signal only when the pid is still the same process. */
  signal(process: VmmProcess, signal: NodeJS.Signals): Promise<void>;
  /** The live process a pid file (SpawnOptions.pidFile) names; undefined when none is alive. */
  recorded(pidFile: string): Promise<VmmProcess | undefined>;
  /**
   * Live processes started the way spawn() starts them (each the leader of a session of its own)
   * whose command line, working directory or root directory names a path under `dir`: the VMMs,
   * recorded or not, of the VM dirs below it (start-up sweep, src/core/orphan-vmms.ts).
   */
  listMentioning(dir: string): Promise<ProcessMention[]>;
}

/** A process listMentioning() found, with the paths it names (its arguments, cwd and root). */
export interface ProcessMention extends VmmProcess {
  readonly names: readonly string[];
}

export interface VmmCgroupLimits {
  /** memory.limit_in_bytes (v1) / memory.max (v2). */
  readonly memoryBytes: number;
  /** pids.max: processes and threads. */
  readonly pidsMax: number;
}

/** One cgroup per VM for its VMM (`<root>/<vmm-cgroup-parent>/<name>`, ADR 0009). */
export interface VmmCgroups {
  /** Creates the cgroup (or updates its limits) and returns the cgroup.procs files to join; [] when disabled. */
  ensure(name: string, limits: VmmCgroupLimits): Promise<readonly string[]>;
  /** Removes the cgroup; gone is not an error, one with processes in it is (after a short wait). */
  remove(name: string): Promise<void>;
  exists(name: string): Promise<boolean>;
}

/** Builds the cloud-init NoCloud disk (label `cidata`) holding the given files. */
export interface CloudInitDiskBuilder {
  build(path: string, files: CloudInitFiles): Promise<void>;
}

export interface ProviderRegistry {
  /** Provider names this daemon knows, whether available or not. */
  names(): string[];
  get(name: string): VmmProvider | undefined;
  /** The configured default, with `auto` already resolved. */
  defaultName(): string;
}

// ---------------------------------------------------------------------------------------------
// Observation (metrics): the core reports what it does; adapters decide how it is kept.

/** How a step's work ended: done, failed, or stopped by a delete or a shutdown (not a failure). */
export type StepOutcome = 'ok' | 'failed' | 'aborted';

export interface StepObserver {
  /**
   * A step did its work (or tried to). `kind` is the step's name without the instance in
   * brackets (`network_iface_create`, not `network_iface_create[eth0]`): a bounded set.
   */
  stepDone(kind: string, ms: number, outcome: StepOutcome): void;
}

// ---------------------------------------------------------------------------------------------
// Small system ports

export interface Clock {
  now(): number;
}

/** Timers, injected so that backoff and periodic work run in fake time in tests. */
export interface Timers {
  /** Runs `fn` once after `ms`; the returned function cancels it. Never keeps the process alive. */
  after(ms: number, fn: () => void): () => void;
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

/** What a VMM may do with a file in its VM dir: `read`, `read-write`, or search a `dir`ectory. */
export type VmmAccess = 'read' | 'read-write' | 'dir';

/** Owner group and permission bits of a path (lstat: a symlink is reported as such). */
export interface FileAccess {
  readonly kind: 'file' | 'dir' | 'other';
  readonly uid: number;
  readonly gid: number;
  /** The low 12 bits (permissions, setuid/setgid/sticky). */
  readonly mode: number;
}

/**
 * Why an image has no usable file at a path: nothing there (`missing`), symbolic links that lead
 * to nothing inside the image (`dangling-symlink`), something that is not a regular file
 * (directory, device node, fifo, socket), or more links than a lookup follows.
 */
export type FileInRootProblem = 'missing' | 'dangling-symlink' | 'not-a-regular-file' | 'symlink-loop';

/**
 * A file looked up inside an unpacked image (`VmFilesystem.fileInRoot`): its host path, or why
 * the image has no usable file there. `path` is the in-image path asked for; `reason` names it.
 */
export type FileInRoot =
  | { readonly ok: true; readonly hostPath: string }
  | { readonly ok: false; readonly problem: FileInRootProblem; readonly path: string; readonly reason: string };

/** The host filesystem as the steps use it: VM dirs `<state-dir>/vm/<ns>/<name>/<uid>/`, device nodes, volume files. */
export interface VmFilesystem {
  vmDir(id: VmId): string;
  /** The directory every VM dir is below (each VMM's command line names a path under it). */
  vmsDir(): string;
  /**
   * Creates the VM dir (parents searchable, not listable) or corrects an existing one: owned by
   * root with group `gid`, sticky and group-writable, so the VMM can make its sockets there but
   * can't remove or replace the daemon's files. Without a gid: root only.
   */
  ensureVmDir(id: VmId, gid?: number): Promise<boolean>;
  /** The VM dir's owner and mode; undefined when it does not exist. */
  vmDirAccess(id: VmId): Promise<FileAccess | undefined>;
  /** Makes a file (or directory) in a VM dir root-owned with group `gid` and the mode for `access`; refuses symlinks. */
  grantVmmAccess(path: string, gid: number, access: VmmAccess): Promise<void>;
  /** lstat of a path; undefined when it does not exist. */
  access(path: string): Promise<FileAccess | undefined>;
  /** Creates an empty file (root-owned, 0600) unless something exists at path. */
  ensureFile(path: string): Promise<void>;
  vmDirExists(id: VmId): Promise<boolean>;
  removeVmDir(id: VmId): Promise<void>;
  /** Creates (or replaces when different) a character device node at path. */
  ensureCharDevice(path: string, dev: { major: number; minor: number }): Promise<void>;
  charDevice(path: string): Promise<{ major: number; minor: number } | undefined>;
  /** A private copy of a file sharing blocks where the filesystem can (reflink), else sparse. */
  cloneFile(source: string, target: string): Promise<void>;
  /** A qcow2 overlay whose reads fall through to the (never modified) raw `backing` file. */
  overlayFile(backing: string, target: string): Promise<void>;
  /**
   * A regular file at this host path itself: a symlink there is not followed, so a kernel or
   * initrd path recorded as a link (before `fileInRoot`) counts as missing and is looked up again.
   */
  fileExists(path: string): Promise<boolean>;
  /**
   * The regular file `path` inside `root` (an unpacked image), looked up as the guest would see
   * it: symlinks are followed but stay in the root (absolute targets start at `root`, `..` stops
   * there, at most 40 links). Anything but a regular file is refused with the reason. With the
   * image service's copies (`ImageService.vmmFile`, the same lookup) the only way the daemon
   * takes a file out of an image, so an image's links never reach host files.
   */
  fileInRoot(root: string, path: string): Promise<FileInRoot>;
  /** Entry names of directory `path` inside `root`, resolved like `fileInRoot`; empty when there is none. */
  listDirInRoot(root: string, path: string): Promise<string[]>;
}
