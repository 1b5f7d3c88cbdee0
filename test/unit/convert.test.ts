import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';

import { createInputFromProto, microvmToProto, sanitizeImageRef } from '../../src/adapters/api/convert.js';
import {
  MicroVMSchema,
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState,
  Mount_MountType,
  NetworkInterface_IfaceType,
  NetworkInterfaceSchema,
  type MicroVMSpec as ProtoSpec,
} from '../../src/gen/flintlock/types/microvm_pb.js';
import type { VmState } from '../../src/core/model.js';
import { MemoryProvider } from '../helpers/doubles.js';
import { DEFAULT_LIMITS, validateCreate, type CreateInput, type ProviderLookup } from '../../src/core/validation.js';
import { SAMPLE_TIME, sampleVm } from '../helpers/fixtures.js';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

const QEMU = new MemoryProvider(undefined, 'qemu', ['macvtap', 'tap', 'virtiofs', 'vsock']);
const PROVIDERS: ProviderLookup = { names: () => ['qemu'], get: (n) => (n === 'qemu' ? QEMU : undefined), defaultName: () => 'qemu' };

/** What CAPMVM sends for a worker machine (empty provider and kernel filename, zero root volume). */
function capmvmSpec(): ProtoSpec {
  return create(MicroVMSpecSchema, {
    id: 'cluster-md-0-abcde',
    namespace: 'capmvm',
    labels: { 'cluster.x-k8s.io/cluster-name': 'cluster' },
    vcpu: 2,
    memoryInMb: 2048,
    kernel: {
      image: 'ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77',
      filename: '',
      cmdline: { console: 'ttyS0', reboot: 'k' },
      addNetworkConfig: true,
    },
    rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: 'ghcr.io/liquidmetal-dev/capmvm-k8s-os:1.23.5' } },
    additionalVolumes: [
      { id: 'data', isReadOnly: true, mountPoint: '/mnt/data', source: { containerSource: 'ghcr.io/org/data:1' }, sizeInMb: 2048, partitionId: '' },
      { id: 'share', isReadOnly: false, mountPoint: '', source: { virtiofsSource: '/srv/share' } },
    ],
    interfaces: [
      { deviceId: 'eth0', type: NetworkInterface_IfaceType.MACVTAP, guestMac: '02:AA:BB:CC:DD:EE' },
      {
        deviceId: 'eth1',
        type: NetworkInterface_IfaceType.TAP,
        address: { address: '192.168.10.5/24', gateway: '192.168.10.1', nameservers: ['1.1.1.1'] },
        overrides: { bridgeName: 'br-capmvm' },
      },
      { deviceId: 'eth2', type: NetworkInterface_IfaceType.TAP, guestMac: '', overrides: {}, address: { address: 'fd00::5/64', gateway: '', nameservers: [] } },
    ],
    metadata: { 'user-data': b64('#cloud-config\n'), 'vendor-data': b64('#cloud-config\n'), 'meta-data': b64('local_hostname: cluster-md-0-abcde\n') },
    provider: '',
    allowGuestAgent: false,
  });
}

describe('createInputFromProto', () => {
  it('converts a CAPMVM-shaped spec', () => {
    const input = createInputFromProto(capmvmSpec());
    const expected: CreateInput = {
      name: 'cluster-md-0-abcde',
      namespace: 'capmvm',
      labels: { 'cluster.x-k8s.io/cluster-name': 'cluster' },
      vcpu: 2,
      memoryMb: 2048,
      kernel: { image: 'ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77', cmdline: { console: 'ttyS0', reboot: 'k' }, addNetworkConfig: true },
      rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'ghcr.io/liquidmetal-dev/capmvm-k8s-os:1.23.5' } },
      additionalVolumes: [
        { id: 'data', readOnly: true, mountPoint: '/mnt/data', source: { containerImage: 'ghcr.io/org/data:1' }, sizeMb: 2048 },
        { id: 'share', readOnly: false, source: { virtiofsPath: '/srv/share' } },
      ],
      interfaces: [
        { deviceId: 'eth0', type: 'macvtap', guestMac: '02:AA:BB:CC:DD:EE' },
        { deviceId: 'eth1', type: 'tap', address: { address: '192.168.10.5/24', gateway: '192.168.10.1', nameservers: ['1.1.1.1'] }, bridgeName: 'br-capmvm' },
        { deviceId: 'eth2', type: 'tap', address: { address: 'fd00::5/64', nameservers: [] } },
      ],
      metadata: { 'user-data': b64('#cloud-config\n'), 'vendor-data': b64('#cloud-config\n'), 'meta-data': b64('local_hostname: cluster-md-0-abcde\n') },
      provider: '',
      allowGuestAgent: false,
    };
    assert.deepEqual(input, expected);
    // The empty kernel filename is dropped (the provider's usual name applies), not kept as ''.
    assert.ok(input.kernel !== undefined && !('filename' in input.kernel));
  });

  it('the converted CAPMVM spec validates, with the default provider and a normalised MAC', () => {
    const r = validateCreate(createInputFromProto(capmvmSpec()), DEFAULT_LIMITS, PROVIDERS);
    assert.ok(r.ok, r.ok ? '' : r.error.message);
    assert.equal(r.value.spec.provider, 'qemu');
    assert.equal(r.value.spec.interfaces[0]?.guestMac, '02:aa:bb:cc:dd:ee');
  });

  it('overrides: {} without bridge_name does not crash and sets no bridge', () => {
    const spec = create(MicroVMSpecSchema, { id: 'vm', interfaces: [{ deviceId: 'eth0', type: NetworkInterface_IfaceType.TAP, overrides: {} }] });
    const input = createInputFromProto(spec);
    assert.deepEqual(input.interfaces, [{ deviceId: 'eth0', type: 'tap' }]);
  });

  it('overrides with an empty bridge_name sets no bridge', () => {
    const spec = create(MicroVMSpecSchema, {
      id: 'vm',
      interfaces: [{ deviceId: 'eth0', type: NetworkInterface_IfaceType.TAP, overrides: { bridgeName: '' } }],
    });
    assert.deepEqual(createInputFromProto(spec).interfaces, [{ deviceId: 'eth0', type: 'tap' }]);
  });

  it('an all-empty root_volume message counts as absent', () => {
    const spec = create(MicroVMSpecSchema, { id: 'vm', rootVolume: {}, initrd: { image: 'ghcr.io/org/initrd:1' } });
    assert.ok(spec.rootVolume !== undefined, 'precondition: the message is set');
    const input = createInputFromProto(spec);
    assert.equal(input.rootVolume, undefined);
    assert.ok(!('rootVolume' in input));
    // ...also with an empty source message inside.
    assert.equal(createInputFromProto(create(MicroVMSpecSchema, { id: 'vm', rootVolume: { source: {} } })).rootVolume, undefined);
  });

  it('a root_volume with only a source is kept (validation then names its missing id)', () => {
    const input = createInputFromProto(create(MicroVMSpecSchema, { id: 'vm', rootVolume: { source: { containerSource: 'ubuntu' } } }));
    assert.deepEqual(input.rootVolume, { id: '', readOnly: false, source: { containerImage: 'ubuntu' } });
  });

  it('absent kernel and initrd stay absent; empty provider and spec are defaults', () => {
    const input = createInputFromProto(create(MicroVMSpecSchema, {}));
    assert.ok(!('kernel' in input));
    assert.ok(!('initrd' in input));
    assert.ok(!('rootVolume' in input));
    assert.equal(input.provider, '');
    assert.equal(input.name, '');
    assert.equal(input.namespace, '');
    assert.equal(input.vcpu, 0);
    assert.equal(input.memoryMb, 0);
    assert.deepEqual(input.interfaces, []);
    assert.deepEqual(input.additionalVolumes, []);
    assert.deepEqual(input.metadata, {});
  });

  it('an explicit provider is carried', () => {
    assert.equal(createInputFromProto(create(MicroVMSpecSchema, { provider: 'firecracker' })).provider, 'firecracker');
  });

  it('carries initrd with and without filename', () => {
    assert.deepEqual(createInputFromProto(create(MicroVMSpecSchema, { initrd: { image: 'ubuntu', filename: 'boot/initrd' } })).initrd, {
      image: 'ubuntu',
      filename: 'boot/initrd',
    });
    assert.deepEqual(createInputFromProto(create(MicroVMSpecSchema, { initrd: { image: 'ubuntu', filename: '' } })).initrd, { image: 'ubuntu' });
  });

  it('sanitises image references: surrounding whitespace, newlines and control characters', () => {
    const spec = create(MicroVMSpecSchema, {
      id: 'vm',
      kernel: { image: '  ghcr.io/org/kernel:1\n' },
      initrd: { image: '\tghcr.io/org/initrd:1\r\n' },
      rootVolume: { id: 'root', source: { containerSource: 'ghcr.io/org/\u0000root:1\u007f\n' } },
      additionalVolumes: [{ id: 'data', source: { containerSource: ' ghcr.io/org/data:1 ' } }],
    });
    const input = createInputFromProto(spec);
    assert.equal(input.kernel?.image, 'ghcr.io/org/kernel:1');
    assert.equal(input.initrd?.image, 'ghcr.io/org/initrd:1');
    assert.equal(input.rootVolume?.source.containerImage, 'ghcr.io/org/root:1');
    assert.equal(input.additionalVolumes[0]?.source.containerImage, 'ghcr.io/org/data:1');
  });

  it('sanitizeImageRef keeps inner spaces (so validation still rejects them)', () => {
    assert.equal(sanitizeImageRef(' a b \n'), 'a b');
    assert.equal(sanitizeImageRef('ubuntu'), 'ubuntu');
  });

  it('does not share mutable maps with the message', () => {
    const spec = capmvmSpec();
    const input = createInputFromProto(spec);
    spec.labels['x'] = 'y';
    spec.metadata['x'] = 'y';
    if (spec.kernel !== undefined) spec.kernel.cmdline['x'] = 'y';
    assert.ok(!('x' in input.labels));
    assert.ok(!('x' in input.metadata));
    assert.ok(input.kernel !== undefined && !('x' in input.kernel.cmdline));
  });

  it('an unknown interface type number is kept and validation rejects it naming the interface type', () => {
    const spec = capmvmSpec();
    spec.interfaces = [create(NetworkInterfaceSchema, { deviceId: 'eth0', type: 7 as NetworkInterface_IfaceType })];
    // Also through the wire, as a client with a newer enum would send it.
    const decoded = fromBinary(MicroVMSpecSchema, toBinary(MicroVMSpecSchema, spec));
    assert.equal(decoded.interfaces[0]?.type, 7);
    const input = createInputFromProto(decoded);
    assert.notEqual(input.interfaces[0]?.type, 'macvtap');
    assert.notEqual(input.interfaces[0]?.type, 'tap');
    const r = validateCreate(input, DEFAULT_LIMITS, PROVIDERS);
    assert.equal(r.ok, false, 'an unknown interface type must be rejected');
    if (r.ok) return;
    assert.equal(r.error.kind, 'invalid-argument');
    assert.match(r.error.message, /interfaces\[0\]\.type: /);
    assert.match(r.error.message, /7/);
  });
});

describe('microvmToProto', () => {
  it('always carries a status, even an all-default one', () => {
    const proto = microvmToProto(sampleVm());
    assert.ok(proto.status !== undefined);
    assert.equal(proto.status.state, MicroVMStatus_MicroVMState.PENDING);
    assert.equal(proto.status.retry, 0);
    assert.equal(proto.status.failureReason, '');
    assert.equal(proto.status.lastError, '');
    assert.equal(proto.status.nextRetryAt, undefined);
    // ...and after a binary round trip (a default status message must still be sent).
    const decoded = fromBinary(MicroVMSchema, toBinary(MicroVMSchema, proto));
    assert.ok(decoded.status !== undefined, 'status lost on the wire');
  });

  it('sets spec identity, uid and timestamps', () => {
    const vm = sampleVm({
      id: { namespace: 'ns9', name: 'web' },
      version: 7,
      createdAt: SAMPLE_TIME,
      updatedAt: SAMPLE_TIME + 5_000,
      deletedAt: SAMPLE_TIME + 9_000,
    });
    const proto = microvmToProto(vm);
    assert.equal(proto.version, 7);
    assert.equal(proto.spec?.id, 'web');
    assert.equal(proto.spec?.namespace, 'ns9');
    assert.equal(proto.spec?.uid, vm.id.uid);
    assert.equal(proto.spec?.uid?.length, 26);
    assert.ok(proto.spec?.createdAt !== undefined && proto.spec.updatedAt !== undefined && proto.spec.deletedAt !== undefined);
    assert.equal(timestampMs(proto.spec.createdAt), SAMPLE_TIME);
    assert.equal(timestampMs(proto.spec.updatedAt), SAMPLE_TIME + 5_000);
    assert.equal(timestampMs(proto.spec.deletedAt), SAMPLE_TIME + 9_000);
  });

  it('leaves deleted_at unset for a live VM', () => {
    assert.equal(microvmToProto(sampleVm()).spec?.deletedAt, undefined);
  });

  it('maps the spec fields', () => {
    const vm = sampleVm({
      spec: {
        labels: { a: 'b' },
        vcpu: 4,
        memoryMb: 2048,
        kernel: { image: 'k:1', filename: 'boot/vmlinux', cmdline: { console: 'ttyS0' }, addNetworkConfig: true },
        initrd: { image: 'i:1' },
        rootVolume: { id: 'root', readOnly: true, source: { containerImage: 'r:1' }, sizeMb: 4096, partitionId: 'p1' },
        additionalVolumes: [{ id: 'share', readOnly: false, mountPoint: '/mnt', source: { virtiofsPath: '/srv' } }],
        interfaces: [
          { deviceId: 'eth0', type: 'macvtap', guestMac: '02:00:00:00:00:01' },
          { deviceId: 'eth1', type: 'tap', bridgeName: 'br1', address: { address: '10.0.0.2/24', gateway: '10.0.0.1', nameservers: ['10.0.0.53'] } },
        ],
        metadata: { 'meta-data': b64('instance_id: x\n') },
        provider: 'firecracker',
        allowGuestAgent: true,
      },
    });
    const spec = microvmToProto(vm).spec;
    assert.ok(spec !== undefined);
    assert.deepEqual(spec.labels, { a: 'b' });
    assert.equal(spec.vcpu, 4);
    assert.equal(spec.memoryInMb, 2048);
    assert.equal(spec.kernel?.image, 'k:1');
    assert.equal(spec.kernel?.filename, 'boot/vmlinux');
    assert.deepEqual(spec.kernel?.cmdline, { console: 'ttyS0' });
    assert.equal(spec.kernel?.addNetworkConfig, true);
    assert.equal(spec.initrd?.image, 'i:1');
    assert.equal(spec.initrd?.filename, undefined);
    assert.equal(spec.rootVolume?.id, 'root');
    assert.equal(spec.rootVolume?.isReadOnly, true);
    assert.equal(spec.rootVolume?.source?.containerSource, 'r:1');
    assert.equal(spec.rootVolume?.sizeInMb, 4096);
    assert.equal(spec.rootVolume?.partitionId, 'p1');
    assert.equal(spec.additionalVolumes[0]?.source?.virtiofsSource, '/srv');
    assert.equal(spec.additionalVolumes[0]?.mountPoint, '/mnt');
    assert.equal(spec.interfaces[0]?.type, NetworkInterface_IfaceType.MACVTAP);
    assert.equal(spec.interfaces[0]?.guestMac, '02:00:00:00:00:01');
    assert.equal(spec.interfaces[0]?.overrides, undefined);
    assert.equal(spec.interfaces[1]?.type, NetworkInterface_IfaceType.TAP);
    assert.equal(spec.interfaces[1]?.overrides?.bridgeName, 'br1');
    assert.equal(spec.interfaces[1]?.address?.address, '10.0.0.2/24');
    assert.equal(spec.interfaces[1]?.address?.gateway, '10.0.0.1');
    assert.deepEqual(spec.interfaces[1]?.address?.nameservers, ['10.0.0.53']);
    assert.deepEqual(spec.metadata, { 'meta-data': b64('instance_id: x\n') });
    assert.equal(spec.provider, 'firecracker');
    assert.equal(spec.allowGuestAgent, true);
  });

  const STATE_MAP: Array<[VmState, MicroVMStatus_MicroVMState]> = [
    ['pending', MicroVMStatus_MicroVMState.PENDING],
    ['created', MicroVMStatus_MicroVMState.CREATED],
    ['failed', MicroVMStatus_MicroVMState.FAILED],
    ['deleting', MicroVMStatus_MicroVMState.DELETING],
  ];
  for (const [state, wire] of STATE_MAP) {
    it(`maps state ${state} to ${MicroVMStatus_MicroVMState[wire]}`, () => {
      assert.equal(microvmToProto(sampleVm({ status: { state } })).status?.state, wire);
    });
  }
  it('uses the wire numbers of COMPAT §1', () => {
    assert.deepEqual(
      STATE_MAP.map(([, w]) => w as number),
      [0, 1, 2, 3],
    );
  });

  it('carries failure_reason, last_error, retry and next_retry_at', () => {
    const status = microvmToProto(
      sampleVm({
        status: { state: 'failed', retry: 10, failureReason: 'retries exhausted: vmm exited', lastError: 'vmm exited', nextRetryAt: SAMPLE_TIME + 1_000 },
      }),
    ).status;
    assert.equal(status?.failureReason, 'retries exhausted: vmm exited');
    assert.equal(status?.lastError, 'vmm exited');
    assert.equal(status?.retry, 10);
    assert.ok(status?.nextRetryAt !== undefined);
    assert.equal(timestampMs(status.nextRetryAt), SAMPLE_TIME + 1_000);
  });

  it('maps the interface status map, mounts and vsock path', () => {
    const status = microvmToProto(
      sampleVm({
        status: {
          state: 'created',
          interfaces: {
            eth0: { hostDeviceName: 'flvtap0abc123', index: 42, macAddress: '02:00:00:00:00:01' },
            eth1: { hostDeviceName: 'fltap0def456', index: 43, macAddress: '02:00:00:00:00:02' },
          },
          volumes: { root: { type: 'dev', source: '/dev/loop3' }, share: { type: 'hostpath', source: '/srv/share' } },
          kernelMount: { type: 'hostpath', source: '/var/lib/flintlock/kernel' },
          initrdMount: { type: 'dev', source: '/dev/loop4' },
          vsockPath: '/var/lib/flintlock/vm/ns1/vm1/uid/vsock.sock',
        },
      }),
    ).status;
    assert.ok(status !== undefined);
    assert.deepEqual(Object.keys(status.networkInterfaces).sort(), ['eth0', 'eth1']);
    assert.equal(status.networkInterfaces['eth0']?.hostDeviceName, 'flvtap0abc123');
    assert.equal(status.networkInterfaces['eth0']?.index, 42);
    assert.equal(status.networkInterfaces['eth0']?.macAddress, '02:00:00:00:00:01');
    assert.equal(status.networkInterfaces['eth1']?.hostDeviceName, 'fltap0def456');
    assert.equal(status.volumes['root']?.mount?.type, Mount_MountType.DEV);
    assert.equal(status.volumes['root']?.mount?.source, '/dev/loop3');
    assert.equal(status.volumes['share']?.mount?.type, Mount_MountType.HOSTPATH);
    assert.equal(status.kernelMount?.type, Mount_MountType.HOSTPATH);
    assert.equal(status.initrdMount?.source, '/dev/loop4');
    assert.equal(status.vsockPath, '/var/lib/flintlock/vm/ns1/vm1/uid/vsock.sock');
  });

  it('survives a binary round trip', () => {
    const vm = sampleVm({
      version: 3,
      updatedAt: SAMPLE_TIME + 1,
      spec: {
        interfaces: [
          { deviceId: 'eth0', type: 'macvtap', guestMac: '02:00:00:00:00:01' },
          { deviceId: 'eth1', type: 'tap', bridgeName: 'br1' },
        ],
        metadata: { 'user-data': b64('#cloud-config\n') },
      },
      status: {
        state: 'failed',
        retry: 3,
        failureReason: 'boom',
        lastError: 'boom',
        interfaces: { eth0: { hostDeviceName: 'flvtap1234567', index: 5, macAddress: '02:00:00:00:00:01' } },
        volumes: { root: { type: 'dev', source: '/dev/vdb' } },
      },
    });
    const proto = microvmToProto(vm);
    const decoded = fromBinary(MicroVMSchema, toBinary(MicroVMSchema, proto));
    assert.deepEqual(decoded, proto);
    assert.equal(decoded.status?.state, MicroVMStatus_MicroVMState.FAILED);
    assert.equal(decoded.status?.failureReason, 'boom');
    assert.equal(decoded.spec?.uid, vm.id.uid);
    assert.equal(decoded.status?.networkInterfaces['eth0']?.index, 5);
  });
});
