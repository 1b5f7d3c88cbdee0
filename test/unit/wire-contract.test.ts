// The wire contract of COMPAT §1, checked against the generated descriptors (what the server
// really speaks), and the drift guard (buf breaking against proto/image.binpb) checked to bite.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { create, fromBinary, ScalarType, toBinary, type DescField, type DescMessage } from '@bufbuild/protobuf';
import { grpcServiceDefinition } from '../../src/adapters/api/grpc/service-definition.js';
import { file_flintlock_types_microvm, MicroVMSpecSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import { file_microvm_services_api_v1alpha1_microvms, ListMicroVMsRequestSchema, MicroVM } from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** COMPAT §1's table: message -> "number name type" per field. */
const CONTRACT: Record<string, string[]> = {
  'flintlock.types.MicroVM': ['1 version int32', '2 spec flintlock.types.MicroVMSpec', '3 status flintlock.types.MicroVMStatus'],
  'flintlock.types.MicroVMSpec': [
    '1 id string',
    '2 namespace string',
    '3 labels map<string,string>',
    '4 vcpu int32',
    '5 memory_in_mb int32',
    '6 kernel flintlock.types.Kernel',
    '7 initrd opt flintlock.types.Initrd',
    '8 root_volume flintlock.types.Volume',
    '9 additional_volumes repeated flintlock.types.Volume',
    '10 interfaces repeated flintlock.types.NetworkInterface',
    '11 metadata map<string,string>',
    '12 created_at google.protobuf.Timestamp',
    '13 updated_at google.protobuf.Timestamp',
    '14 deleted_at google.protobuf.Timestamp',
    '15 uid opt string',
    '16 provider opt string',
    '17 allow_guest_agent bool',
  ],
  'flintlock.types.Kernel': ['1 image string', '2 cmdline map<string,string>', '3 filename opt string', '4 add_network_config bool'],
  'flintlock.types.Initrd': ['1 image string', '2 filename opt string'],
  'flintlock.types.NetworkInterface': [
    '1 device_id string',
    '2 type enum flintlock.types.NetworkInterface.IfaceType',
    '4 guest_mac opt string',
    '5 address opt flintlock.types.StaticAddress',
    '6 overrides opt flintlock.types.NetworkOverrides',
  ],
  'flintlock.types.StaticAddress': ['1 address string', '2 gateway opt string', '3 nameservers repeated string'],
  'flintlock.types.NetworkOverrides': ['1 bridge_name opt string'],
  'flintlock.types.Volume': [
    '1 id string',
    '2 is_read_only bool',
    '3 mount_point opt string',
    '4 source flintlock.types.VolumeSource',
    '5 partition_id opt string',
    '6 size_in_mb opt int32',
  ],
  'flintlock.types.VolumeSource': ['1 container_source opt string', '2 virtiofs_source opt string'],
  'flintlock.types.MicroVMStatus': [
    '1 state enum flintlock.types.MicroVMStatus.MicroVMState',
    '2 volumes map<string,flintlock.types.VolumeStatus>',
    '3 kernel_mount flintlock.types.Mount',
    '4 initrd_mount flintlock.types.Mount',
    '5 network_interfaces map<string,flintlock.types.NetworkInterfaceStatus>',
    '6 retry int32',
    '7 vsock_path string',
  ],
  'flintlock.types.VolumeStatus': ['1 mount flintlock.types.Mount'],
  'flintlock.types.Mount': ['1 type enum flintlock.types.Mount.MountType', '2 source string'],
  'flintlock.types.NetworkInterfaceStatus': ['1 host_device_name string', '2 index int32', '3 mac_address string'],
  'microvm.services.api.v1alpha1.CreateMicroVMRequest': ['1 microvm flintlock.types.MicroVMSpec', '2 metadata map<string,google.protobuf.Any>'],
  'microvm.services.api.v1alpha1.CreateMicroVMResponse': ['1 microvm flintlock.types.MicroVM'],
  'microvm.services.api.v1alpha1.GetMicroVMResponse': ['1 microvm flintlock.types.MicroVM'],
  'microvm.services.api.v1alpha1.ListMessage': ['1 microvm flintlock.types.MicroVM'],
  'microvm.services.api.v1alpha1.DeleteMicroVMRequest': ['1 uid string'],
  'microvm.services.api.v1alpha1.GetMicroVMRequest': ['1 uid string'],
  'microvm.services.api.v1alpha1.ListMicroVMsRequest': ['1 namespace string', '2 name opt string'],
  'microvm.services.api.v1alpha1.ListMicroVMsResponse': ['1 microvm repeated flintlock.types.MicroVM'],
};

function scalarName(t: ScalarType): string {
  return ScalarType[t].toLowerCase();
}

function describeField(f: DescField): string {
  const base = `${f.number} ${f.name}`;
  switch (f.fieldKind) {
    case 'scalar':
      return `${base}${f.proto.proto3Optional === true ? ' opt' : ''} ${scalarName(f.scalar)}`;
    case 'enum':
      return `${base} enum ${f.enum.typeName}`;
    case 'message':
      return `${base}${f.proto.proto3Optional === true ? ' opt' : ''} ${f.message.typeName}`;
    case 'list':
      return `${base} repeated ${f.listKind === 'scalar' ? scalarName(f.scalar) : f.listKind === 'enum' ? f.enum.typeName : f.message.typeName}`;
    case 'map': {
      const value = f.mapKind === 'scalar' ? scalarName(f.scalar) : f.mapKind === 'enum' ? f.enum.typeName : f.message.typeName;
      return `${base} map<${scalarName(f.mapKey)},${value}>`;
    }
  }
}

const messages = new Map<string, DescMessage>();
for (const file of [file_flintlock_types_microvm, file_microvm_services_api_v1alpha1_microvms]) {
  const walk = (m: DescMessage): void => {
    messages.set(m.typeName, m);
    m.nestedMessages.forEach(walk);
  };
  file.messages.forEach(walk);
}

describe('wire contract (COMPAT §1)', () => {
  for (const [typeName, fields] of Object.entries(CONTRACT)) {
    it(`${typeName} has the contract's fields, numbers and types (our additions are >= 1000)`, () => {
      const message = messages.get(typeName);
      assert.ok(message, `${typeName} is missing`);
      const actual = message.fields.filter((f) => f.number < 1000).map(describeField);
      assert.deepEqual(actual, fields);
    });
  }

  it('has the enums with the contract values', () => {
    const enums = Object.fromEntries(
      [...messages.values()].flatMap((m) => m.nestedEnums).map((e) => [e.typeName, e.values.map((v) => `${v.name}=${v.number}`)]),
    );
    assert.deepEqual(enums['flintlock.types.NetworkInterface.IfaceType'], ['MACVTAP=0', 'TAP=1']);
    assert.deepEqual(enums['flintlock.types.MicroVMStatus.MicroVMState'], ['PENDING=0', 'CREATED=1', 'FAILED=2', 'DELETING=3']);
    assert.deepEqual(enums['flintlock.types.Mount.MountType'], ['DEV=0', 'HOSTPATH=1']);
  });

  it('serves the five rpcs under microvm.services.api.v1alpha1.MicroVM', () => {
    assert.equal(MicroVM.typeName, 'microvm.services.api.v1alpha1.MicroVM');
    assert.deepEqual(
      MicroVM.methods.map((m) => `${m.name}(${m.input.typeName}) ${m.methodKind} ${m.output.typeName}`),
      [
        'CreateMicroVM(microvm.services.api.v1alpha1.CreateMicroVMRequest) unary microvm.services.api.v1alpha1.CreateMicroVMResponse',
        'DeleteMicroVM(microvm.services.api.v1alpha1.DeleteMicroVMRequest) unary google.protobuf.Empty',
        'GetMicroVM(microvm.services.api.v1alpha1.GetMicroVMRequest) unary microvm.services.api.v1alpha1.GetMicroVMResponse',
        'ListMicroVMs(microvm.services.api.v1alpha1.ListMicroVMsRequest) unary microvm.services.api.v1alpha1.ListMicroVMsResponse',
        'ListMicroVMsStream(microvm.services.api.v1alpha1.ListMicroVMsRequest) server_streaming microvm.services.api.v1alpha1.ListMessage',
      ],
    );
  });
});

// Found by the API fuzzer: protobuf-es's default decoder dropped a leading U+FEFF, so a List of
// namespace "\ufeff" listed every namespace and an id "\ufeffnode" was stored as "node".
describe('request strings arrive as sent', () => {
  it('keeps a leading U+FEFF (strict and lenient decoding alike)', () => {
    const definition = grpcServiceDefinition(MicroVM);
    const list = definition['listMicroVMs'];
    assert.ok(list !== undefined);
    const bytes = Buffer.from(toBinary(ListMicroVMsRequestSchema, create(ListMicroVMsRequestSchema, { namespace: '\ufeff', name: '\ufeffnode' })));
    const decoded = list.requestDeserialize(bytes) as { namespace: string; name?: string };
    assert.equal(decoded.namespace, '\ufeff');
    assert.equal(decoded.name, '\ufeffnode');
    const spec = fromBinary(
      MicroVMSpecSchema,
      toBinary(MicroVMSpecSchema, create(MicroVMSpecSchema, { id: '\ufeff\ufeffx', labels: { '\ufeffk': '\ufeffv' } })),
    );
    assert.equal(spec.id, '\ufeff\ufeffx');
    assert.deepEqual(spec.labels, { '\ufeffk': '\ufeffv' });
  });
});

describe('wire drift guard (npm run proto:check)', () => {
  const buf = join(ROOT, 'node_modules/.bin/buf');

  it('passes for the committed protos', () => {
    execFileSync(buf, ['breaking', 'proto', '--against', 'proto/image.binpb'], { cwd: ROOT, stdio: 'pipe' });
  });

  it('fails when a field is renumbered', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fl-proto-'));
    try {
      cpSync(join(ROOT, 'proto'), join(dir, 'proto'), { recursive: true });
      cpSync(join(ROOT, 'buf.yaml'), join(dir, 'buf.yaml'));
      cpSync(join(ROOT, 'node_modules/google-proto-files/google/api'), join(dir, 'node_modules/google-proto-files/google/api'), { recursive: true });
      const file = join(dir, 'proto/flintlock/types/microvm.proto');
      writeFileSync(file, readFileSync(file, 'utf8').replace('int32 vcpu = 4;', 'int32 vcpu = 40;'));
      const result = spawnSync(buf, ['breaking', 'proto', '--against', join(ROOT, 'proto/image.binpb')], { cwd: dir, encoding: 'utf8' });
      assert.notEqual(result.status, 0, 'buf breaking must refuse a renumbered field');
      assert.match(result.stdout + result.stderr, /vcpu/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
