// Conversion between the wire messages (flintlock.types, protobuf-es) and the domain model.
// This is the only place that knows both shapes.
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  MicroVMSchema,
  MicroVMStatus_MicroVMState,
  NetworkInterfaceSchema,
  VolumeSchema,
  Mount_MountType,
  PowerState,
  NetworkInterface_IfaceType,
  type MicroVM as ProtoMicroVM,
  type MicroVMSpec as ProtoSpec,
  type NetworkInterface as ProtoInterface,
  type Volume as ProtoVolume,
} from '../../gen/flintlock/types/microvm_pb.js';
import {
  intentOf,
  type IfaceType,
  type MicroVM,
  type Mount,
  type NetworkInterfaceSpec,
  type PowerIntent,
  type VmState,
  type VolumeSpec,
} from '../../core/model.js';
import type { CreateInput } from '../../core/validation.js';
import type { ListQuery } from '../../core/ports.js';

/**
 * Image references lose surrounding whitespace and control characters before validation, as the
 * original does (YAML templating in clients often leaves a trailing newline).
 */
export function sanitizeImageRef(ref: string): string {
  // eslint-disable-next-line no-control-regex
  return ref.replace(/[\u0000-\u001f\u007f]/g, '').trim();
}

const IFACE_TYPES: Record<number, IfaceType> = { [NetworkInterface_IfaceType.MACVTAP]: 'macvtap', [NetworkInterface_IfaceType.TAP]: 'tap' };

function interfaceFromProto(i: ProtoInterface): NetworkInterfaceSpec {
  const bridge = i.overrides?.bridgeName;
  return {
    deviceId: i.deviceId,
    // An enum number this server doesn't know is kept as an impossible type so validation names it.
    type: IFACE_TYPES[i.type] ?? (`unknown(${i.type})` as IfaceType),
    ...(i.guestMac !== undefined && i.guestMac !== '' ? { guestMac: i.guestMac } : {}),
    ...(i.address !== undefined
      ? {
          address: {
            address: i.address.address,
            ...(i.address.gateway !== undefined && i.address.gateway !== '' ? { gateway: i.address.gateway } : {}),
            nameservers: [...i.address.nameservers],
          },
        }
      : {}),
    ...(bridge !== undefined && bridge !== '' ? { bridgeName: bridge } : {}),
  };
}

function volumeFromProto(v: ProtoVolume): VolumeSpec {
  const container = v.source?.containerSource;
  const virtiofs = v.source?.virtiofsSource;
  return {
    id: v.id,
    readOnly: v.isReadOnly,
    ...(v.mountPoint !== undefined && v.mountPoint !== '' ? { mountPoint: v.mountPoint } : {}),
    source: {
      ...(container !== undefined && container !== '' ? { containerImage: sanitizeImageRef(container) } : {}),
      ...(virtiofs !== undefined && virtiofs !== '' ? { virtiofsPath: virtiofs } : {}),
    },
    ...(v.partitionId !== undefined && v.partitionId !== '' ? { partitionId: v.partitionId } : {}),
    ...(v.sizeInMb !== undefined && v.sizeInMb !== 0 ? { sizeMb: v.sizeInMb } : {}),
  };
}

/** A root volume message with nothing set counts as absent (Go clients send a zero message). */
function isEmptyVolume(v: ProtoVolume): boolean {
  return v.id === '' && v.source?.containerSource === undefined && v.source?.virtiofsSource === undefined;
}

export function createInputFromProto(spec: ProtoSpec): CreateInput {
  const filename = spec.kernel?.filename;
  const initrdFilename = spec.initrd?.filename;
  return {
    name: spec.id,
    namespace: spec.namespace,
    labels: { ...spec.labels },
    vcpu: spec.vcpu,
    memoryMb: spec.memoryInMb,
    ...(spec.kernel !== undefined
      ? {
          kernel: {
            image: sanitizeImageRef(spec.kernel.image),
            ...(filename !== undefined && filename !== '' ? { filename } : {}),
            cmdline: { ...spec.kernel.cmdline },
            addNetworkConfig: spec.kernel.addNetworkConfig,
          },
        }
      : {}),
    ...(spec.initrd !== undefined
      ? {
          initrd: {
            image: sanitizeImageRef(spec.initrd.image),
            ...(initrdFilename !== undefined && initrdFilename !== '' ? { filename: initrdFilename } : {}),
          },
        }
      : {}),
    ...(spec.rootVolume !== undefined && !isEmptyVolume(spec.rootVolume) ? { rootVolume: volumeFromProto(spec.rootVolume) } : {}),
    additionalVolumes: spec.additionalVolumes.map(volumeFromProto),
    interfaces: spec.interfaces.map(interfaceFromProto),
    metadata: { ...spec.metadata },
    provider: spec.provider ?? '',
    allowGuestAgent: spec.allowGuestAgent,
  };
}

const POWER: Record<PowerIntent, PowerState> = {
  running: PowerState.RUNNING,
  stopped: PowerState.STOPPED,
  paused: PowerState.PAUSED,
};

/** What the guest does now: no VMM is STOPPED once the VM exists (CREATED), nothing before. */
function observedPower(vm: MicroVM): PowerState {
  if (vm.status.vmm !== undefined) return POWER[vm.status.power ?? 'running'];
  return vm.status.state === 'created' ? PowerState.STOPPED : PowerState.UNSPECIFIED;
}

const STATES: Record<VmState, MicroVMStatus_MicroVMState> = {
  pending: MicroVMStatus_MicroVMState.PENDING,
  created: MicroVMStatus_MicroVMState.CREATED,
  failed: MicroVMStatus_MicroVMState.FAILED,
  deleting: MicroVMStatus_MicroVMState.DELETING,
};

function mountToProto(m: Mount): { type: Mount_MountType; source: string } {
  return { type: m.type === 'hostpath' ? Mount_MountType.HOSTPATH : Mount_MountType.DEV, source: m.source };
}

function volumeToProto(v: VolumeSpec): MessageInitShape<typeof VolumeSchema> {
  return {
    id: v.id,
    isReadOnly: v.readOnly,
    ...(v.mountPoint !== undefined ? { mountPoint: v.mountPoint } : {}),
    source: {
      ...(v.source.containerImage !== undefined ? { containerSource: v.source.containerImage } : {}),
      ...(v.source.virtiofsPath !== undefined ? { virtiofsSource: v.source.virtiofsPath } : {}),
    },
    ...(v.partitionId !== undefined ? { partitionId: v.partitionId } : {}),
    ...(v.sizeMb !== undefined ? { sizeInMb: v.sizeMb } : {}),
  };
}

function interfaceToProto(i: NetworkInterfaceSpec): MessageInitShape<typeof NetworkInterfaceSchema> {
  return {
    deviceId: i.deviceId,
    type: i.type === 'tap' ? NetworkInterface_IfaceType.TAP : NetworkInterface_IfaceType.MACVTAP,
    ...(i.guestMac !== undefined ? { guestMac: i.guestMac } : {}),
    ...(i.address !== undefined
      ? {
          address: {
            address: i.address.address,
            nameservers: [...i.address.nameservers],
            ...(i.address.gateway !== undefined ? { gateway: i.address.gateway } : {}),
          },
        }
      : {}),
    ...(i.bridgeName !== undefined ? { overrides: { bridgeName: i.bridgeName } } : {}),
  };
}

/** The wire form of a VM. `status` is always present: both known clients dereference it. */
// The store hands out one frozen object per VM version (vm-row-cache.ts): its conversion is kept
// with it, so a VM read again unchanged is not converted (nor, through encodeOnce, encoded) again.
const converted = new WeakMap<MicroVM, ProtoMicroVM>();

/** The API message of `vm` (kept per object when `vm` is frozen; the message is never changed after). */
export function microvmToProto(vm: MicroVM): ProtoMicroVM {
  const known = converted.get(vm);
  if (known !== undefined) return known;
  const message = convertMicroVM(vm);
  if (Object.isFrozen(vm)) converted.set(vm, message);
  return message;
}

function convertMicroVM(vm: MicroVM): ProtoMicroVM {
  const { spec, status } = vm;
  return create(MicroVMSchema, {
    version: vm.version,
    spec: {
      id: vm.id.name,
      namespace: vm.id.namespace,
      uid: vm.id.uid,
      labels: { ...spec.labels },
      vcpu: spec.vcpu,
      memoryInMb: spec.memoryMb,
      kernel: {
        image: spec.kernel.image,
        cmdline: { ...spec.kernel.cmdline },
        addNetworkConfig: spec.kernel.addNetworkConfig,
        ...(spec.kernel.filename !== undefined ? { filename: spec.kernel.filename } : {}),
      },
      ...(spec.initrd !== undefined
        ? { initrd: { image: spec.initrd.image, ...(spec.initrd.filename !== undefined ? { filename: spec.initrd.filename } : {}) } }
        : {}),
      ...(spec.rootVolume !== undefined ? { rootVolume: volumeToProto(spec.rootVolume) } : {}),
      additionalVolumes: spec.additionalVolumes.map(volumeToProto),
      interfaces: spec.interfaces.map(interfaceToProto),
      metadata: { ...spec.metadata },
      provider: spec.provider,
      allowGuestAgent: spec.allowGuestAgent,
      createdAt: timestampFromMs(vm.createdAt),
      updatedAt: timestampFromMs(vm.updatedAt),
      ...(vm.deletedAt !== undefined ? { deletedAt: timestampFromMs(vm.deletedAt) } : {}),
    },
    status: {
      state: STATES[status.state],
      volumes: Object.fromEntries(Object.entries(status.volumes).map(([k, m]) => [k, { mount: mountToProto(m) }])),
      ...(status.kernelMount !== undefined ? { kernelMount: mountToProto(status.kernelMount) } : {}),
      ...(status.initrdMount !== undefined ? { initrdMount: mountToProto(status.initrdMount) } : {}),
      networkInterfaces: Object.fromEntries(
        Object.entries(status.interfaces).map(([k, s]) => [k, { hostDeviceName: s.hostDeviceName, index: s.index, macAddress: s.macAddress }]),
      ),
      retry: status.retry,
      vsockPath: status.vsockPath,
      failureReason: status.failureReason ?? '',
      lastError: status.lastError ?? '',
      ...(status.nextRetryAt !== undefined ? { nextRetryAt: timestampFromMs(status.nextRetryAt) } : {}),
      images: { ...status.images },
      vmmPid: status.vmm?.pid ?? 0,
      consoleLogPath: status.consoleLogPath ?? '',
      lastExitReason: status.lastExitReason ?? '',
      restartCount: status.restartCount ?? 0,
      guestIps: [...(status.guestIps ?? [])],
      crashLoopCount: status.crashLoopCount ?? 0,
      ...(status.nextRestartAt !== undefined ? { nextRestartAt: timestampFromMs(status.nextRestartAt) } : {}),
      powerState: observedPower(vm),
      desiredPowerState: POWER[intentOf(vm).power],
      reconcileStep: status.reconcileStep ?? '',
      ...(status.pullProgress !== undefined
        ? {
            pullProgress: {
              image: status.pullProgress.image,
              bytesDone: BigInt(status.pullProgress.bytesDone),
              bytesTotal: BigInt(status.pullProgress.bytesTotal ?? 0),
            },
          }
        : {}),
    },
  });
}

/** A List/stream/watch request's filters as the core's query (an absent name filters nothing). */
export const listQuery = (namespace: string, name: string | undefined): ListQuery => ({ namespace, ...(name !== undefined ? { name } : {}) });
