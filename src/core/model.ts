// The domain model: one shape for a microVM inside the daemon. API messages (protobuf) are
// converted to and from these types at the edge only (src/adapters/api/convert.ts).

export type IfaceType = 'macvtap' | 'tap';
export type VmState = 'pending' | 'created' | 'failed' | 'deleting';
export type MountType = 'dev' | 'hostpath';

/** Identity of a microVM: the client's name and namespace plus the server-assigned ULID. */
export interface VmId {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

export interface StaticAddress {
  /** CIDR, v4 or v6. */
  readonly address: string;
  readonly gateway?: string;
  readonly nameservers: readonly string[];
}

export interface NetworkInterfaceSpec {
  /** The spec's `device_id`; keys the interface's status. */
  readonly deviceId: string;
  readonly type: IfaceType;
  readonly guestMac?: string;
  readonly address?: StaticAddress;
  /** Per-interface bridge for taps (`overrides.bridge_name`). */
  readonly bridgeName?: string;
  /** The Firecracker MMDS interface the server adds: an unbridged tap that may reach metadata. */
  readonly allowMetadata?: boolean;
}

export interface VolumeSource {
  readonly containerImage?: string;
  readonly virtiofsPath?: string;
}

export interface VolumeSpec {
  readonly id: string;
  readonly readOnly: boolean;
  readonly mountPoint?: string;
  readonly source: VolumeSource;
  readonly partitionId?: string;
  readonly sizeMb?: number;
}

export interface KernelSpec {
  readonly image: string;
  /** Empty means the provider's usual file name. */
  readonly filename?: string;
  readonly cmdline: Readonly<Record<string, string>>;
  readonly addNetworkConfig: boolean;
}

export interface InitrdSpec {
  readonly image: string;
  readonly filename?: string;
}

/** The desired state, immutable once stored (ADR 0234 of the original: no in-place updates). */
export interface MicroVMSpec {
  readonly labels: Readonly<Record<string, string>>;
  readonly vcpu: number;
  readonly memoryMb: number;
  readonly kernel: KernelSpec;
  readonly initrd?: InitrdSpec;
  readonly rootVolume?: VolumeSpec;
  readonly additionalVolumes: readonly VolumeSpec[];
  readonly interfaces: readonly NetworkInterfaceSpec[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Always resolved at create time (never empty once stored). */
  readonly provider: string;
  readonly allowGuestAgent: boolean;
}

export interface Mount {
  readonly type: MountType;
  readonly source: string;
}

export interface InterfaceStatus {
  readonly hostDeviceName: string;
  readonly index: number;
  /** The MAC the guest NIC uses. */
  readonly macAddress: string;
}

export interface MicroVMStatus {
  readonly state: VmState;
  readonly volumes: Readonly<Record<string, Mount>>;
  readonly kernelMount?: Mount;
  readonly initrdMount?: Mount;
  readonly interfaces: Readonly<Record<string, InterfaceStatus>>;
  /** Failed reconcile attempts since the last success. */
  readonly retry: number;
  readonly vsockPath: string;
  /** Why the VM is FAILED (retries exhausted). */
  readonly failureReason?: string;
  /** Error of the latest failed attempt. */
  readonly lastError?: string;
  /** Epoch ms of the next retry, while one is pending. */
  readonly nextRetryAt?: number;
  /** Manifest digest of each image the VM uses, by use (`kernel`, `initrd`, `volume:<id>`): GC roots. */
  readonly images?: Readonly<Record<string, string>>;
  /** The VMM process running the guest, while there is one. */
  readonly vmm?: VmmProcessStatus;
  /** The guest's serial console log. */
  readonly consoleLogPath?: string;
  /** How the last VMM process ended (when it ended on its own). */
  readonly lastExitReason?: string;
  /** VMM restarts after its process ended on its own. */
  readonly restartCount?: number;
  /** VMM exits in a row that came within the stable period of their start (a crash loop). */
  readonly crashLoopCount?: number;
  /** Epoch ms before which the VMM is not restarted (crash-loop backoff), while one is pending. */
  readonly nextRestartAt?: number;
  /** Guest addresses seen on the host (neighbour table), when known. */
  readonly guestIps?: readonly string[];
  /** The uid and gid its VMM runs as, allocated once from `vmm-uid-range` (ADR 0009). */
  readonly vmmIdentity?: VmmIdentity;
  /** What the VMM does now, as far as this daemon made it: absent while none runs. */
  readonly power?: PowerIntent;
  /** Restarts (LifecycleIntent.restarts) done so far. */
  readonly restartsDone?: number;
  /** The step the running reconcile is in (steps/progress.ts); absent when none runs. */
  readonly reconcileStep?: string;
  /** The image the running reconcile is pulling, and how far it has got. */
  readonly pullProgress?: PullProgress;
}

export interface PullProgress {
  readonly image: string;
  readonly bytesDone: number;
  /** Absent until the image's manifest says how big its layers are. */
  readonly bytesTotal?: number;
}

/** The uid and gid a VM's VMM runs as (one of each per VM, from `vmm-uid-range`). */
export interface VmmIdentity {
  readonly uid: number;
  readonly gid: number;
}

export interface VmmProcessStatus {
  readonly pid: number;
  /** /proc/<pid>/stat field 22: tells a reused pid apart. */
  readonly startTime: number;
  readonly provider: string;
  /** Epoch ms when this daemon started (or adopted) it: how long it ran, when it ends. */
  readonly startedAt?: number;
}

/**
 * What the operator wants the VM's guest to do (our lifecycle extension; the original has no such
 * calls): a stopped VM keeps its devices and disks but runs no VMM; a paused one keeps its VMM with
 * the vCPUs stopped. Unlike the spec it changes after create, through its own calls.
 */
export type PowerIntent = 'running' | 'stopped' | 'paused';

export interface LifecycleIntent {
  readonly power: PowerIntent;
  /** Restarts asked for so far: the reconciler restarts the VMM until the status has done as many. */
  readonly restarts: number;
}

export const DEFAULT_INTENT: LifecycleIntent = { power: 'running', restarts: 0 };

export interface MicroVM {
  readonly id: VmId;
  /** Incremented on every stored change. */
  readonly version: number;
  readonly spec: MicroVMSpec;
  /** Absent: running, never restarted (DEFAULT_INTENT). */
  readonly intent?: LifecycleIntent;
  readonly status: MicroVMStatus;
  /** Epoch ms. */
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Epoch ms; set by Delete. */
  readonly deletedAt?: number;
}

export function emptyStatus(): MicroVMStatus {
  return { state: 'pending', volumes: {}, interfaces: {}, retry: 0, vsockPath: '' };
}

export function intentOf(vm: MicroVM): LifecycleIntent {
  return vm.intent ?? DEFAULT_INTENT;
}

export function vmIdString(id: VmId): string {
  return `${id.namespace}/${id.name}/${id.uid}`;
}
