import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { parse as parseYaml } from 'yaml';
import { MicroVMSchema, MicroVMStatus_MicroVMState, NetworkInterface_IfaceType, type MicroVM } from '../../src/gen/flintlock/types/microvm_pb.js';
import {
  buildSpec,
  generateName,
  parseContainerVolume,
  parseKernelCmdline,
  parseMetadataFromFile,
  parseNetworkInterface,
  resolveName,
  SpecError,
  type CreateOptions,
} from '../../src/cli/fl/spec.js';
import { formatAge, formatJson, formatTable, formatVms, formatWatchLine, formatYaml, reasonOf, stateName, truncate } from '../../src/cli/fl/output.js';
import { exitCodeFor, normalizeHost } from '../../src/cli/fl/main.js';
import { status } from '@grpc/grpc-js';

const noFiles = (path: string): Buffer => {
  throw new Error(`ENOENT: no such file or directory, open '${path}'`);
};

function baseOptions(overrides: Partial<CreateOptions> = {}): CreateOptions {
  return {
    name: 'vm1',
    namespace: 'default',
    vcpu: 2,
    memoryMb: 1024,
    kernelImage: 'ghcr.io/liquidmetal-dev/firecracker-kernel:6.1',
    kernelCmdline: [],
    addNetconf: true,
    rootImage: 'ghcr.io/liquidmetal-dev/ubuntu:22.04',
    networkInterfaces: ['eth1:macvtap'],
    metadataFromFile: [],
    containerVolumes: [],
    ...overrides,
  };
}

describe('parseNetworkInterface', () => {
  it('a bare name is a macvtap', () => {
    const iface = parseNetworkInterface('eth1');
    assert.equal(iface.deviceId, 'eth1');
    assert.equal(iface.type, NetworkInterface_IfaceType.MACVTAP);
    assert.equal(iface.guestMac, undefined);
    assert.equal(iface.address, undefined);
  });

  it('parses the type', () => {
    assert.equal(parseNetworkInterface('eth1:tap').type, NetworkInterface_IfaceType.TAP);
    assert.equal(parseNetworkInterface('eth1:macvtap').type, NetworkInterface_IfaceType.MACVTAP);
    assert.equal(parseNetworkInterface('eth1:').type, NetworkInterface_IfaceType.MACVTAP);
  });

  it('rejects an unknown type instead of silently using macvtap', () => {
    assert.throws(
      () => parseNetworkInterface('eth1:bridge'),
      (e: unknown) => e instanceof SpecError && /unknown interface type "bridge"/.test(e.message),
    );
  });

  it('rejects eth0 with the original message', () => {
    assert.throws(() => parseNetworkInterface('eth0:tap'), { message: 'you cannot use eth0 as the name of the interface as this is reserved' });
    assert.throws(() => parseNetworkInterface('eth0'), SpecError);
  });

  it('rejects an empty name', () => {
    assert.throws(() => parseNetworkInterface(':tap'), /interface name is empty/);
  });

  it('keeps a MAC whose colons would confuse a naive split', () => {
    const iface = parseNetworkInterface('eth1:tap:02:00:00:00:00:aa');
    assert.equal(iface.guestMac, '02:00:00:00:00:aa');
    assert.equal(iface.address, undefined);
  });

  it('accepts a dash-separated MAC', () => {
    assert.equal(parseNetworkInterface('eth1:macvtap:02-00-00-00-00-AA').guestMac, '02-00-00-00-00-AA');
  });

  it('parses MAC and CIDR', () => {
    const iface = parseNetworkInterface('eth1:tap:02:00:00:00:00:01:10.0.0.2/24');
    assert.equal(iface.guestMac, '02:00:00:00:00:01');
    assert.equal(iface.address?.address, '10.0.0.2/24');
  });

  it('parses a CIDR without a MAC, with or without the empty field', () => {
    assert.equal(parseNetworkInterface('eth1:tap:10.0.0.2/24').address?.address, '10.0.0.2/24');
    const iface = parseNetworkInterface('eth1:tap::10.0.0.2/24');
    assert.equal(iface.guestMac, undefined);
    assert.equal(iface.address?.address, '10.0.0.2/24');
  });

  it('parses IPv6 CIDRs', () => {
    assert.equal(parseNetworkInterface('eth1:tap:fd00::2/64').address?.address, 'fd00::2/64');
    const iface = parseNetworkInterface('eth1:tap:02:00:00:00:00:01:fd00::2/64:br1');
    assert.equal(iface.guestMac, '02:00:00:00:00:01');
    assert.equal(iface.address?.address, 'fd00::2/64');
    assert.equal(iface.overrides?.bridgeName, 'br1');
  });

  it('parses a bridge override with empty MAC and address', () => {
    const iface = parseNetworkInterface('eth1:tap:::br0');
    assert.equal(iface.overrides?.bridgeName, 'br0');
    assert.equal(iface.guestMac, undefined);
    assert.equal(iface.address, undefined);
  });

  it('rejects a third field that is neither MAC nor CIDR', () => {
    assert.throws(() => parseNetworkInterface('eth1:tap:nonsense'), /neither a MAC address .* nor a CIDR address/);
    assert.throws(() => parseNetworkInterface('eth1:tap:02:00:00:00:00'), SpecError);
  });

  it('rejects an address without a prefix length', () => {
    assert.throws(() => parseNetworkInterface('eth1:tap:02:00:00:00:00:01:10.0.0.2'), /not a CIDR address/);
  });
});

describe('parseMetadataFromFile', () => {
  it('base64-encodes the file content', () => {
    const [key, value] = parseMetadataFromFile('user-data=/tmp/ud.yaml', (path) => {
      assert.equal(path, '/tmp/ud.yaml');
      return Buffer.from('#cloud-config\nhostname: vm1\n');
    });
    assert.equal(key, 'user-data');
    assert.equal(Buffer.from(value, 'base64').toString('utf8'), '#cloud-config\nhostname: vm1\n');
    assert.equal(value, Buffer.from('#cloud-config\nhostname: vm1\n').toString('base64'));
  });

  it('keeps everything after the first "=" as the path', () => {
    let seen = '';
    parseMetadataFromFile('k=/tmp/a=b', (path) => {
      seen = path;
      return Buffer.from('x');
    });
    assert.equal(seen, '/tmp/a=b');
  });

  it('rejects a malformed value', () => {
    assert.throws(() => parseMetadataFromFile('user-data', noFiles), /expected key=path/);
    assert.throws(() => parseMetadataFromFile('=path', noFiles), /expected key=path/);
    assert.throws(() => parseMetadataFromFile('key=', noFiles), /expected key=path/);
  });

  it('reports an unreadable file with its key and reason', () => {
    assert.throws(
      () => parseMetadataFromFile('user-data=/nope', noFiles),
      (e: unknown) => e instanceof SpecError && /"user-data".*ENOENT.*\/nope/.test(e.message),
    );
  });
});

describe('parseContainerVolume', () => {
  it('builds a read-write container volume', () => {
    const v = parseContainerVolume('data=registry.local/data:1=/mnt/data');
    assert.equal(v.id, 'data');
    assert.equal(v.isReadOnly, false);
    assert.equal(v.mountPoint, '/mnt/data');
    assert.equal(v.source?.containerSource, 'registry.local/data:1');
    assert.equal(v.source?.virtiofsSource, undefined);
  });

  it('rejects anything but three non-empty parts', () => {
    assert.throws(() => parseContainerVolume('data=image'), /expected name=containerimage=mountpoint/);
    assert.throws(() => parseContainerVolume('data=image=/m=x'), SpecError);
    assert.throws(() => parseContainerVolume('data==/m'), SpecError);
  });
});

describe('parseKernelCmdline', () => {
  it('parses key=value pairs and bare flags', () => {
    assert.deepEqual(parseKernelCmdline(['console=ttyS0', 'quiet', 'root=/dev/vda=x']), { console: 'ttyS0', quiet: '', root: '/dev/vda=x' });
  });

  it('rejects an empty key', () => {
    assert.throws(() => parseKernelCmdline(['=x']), /expected key=value/);
  });
});

describe('names', () => {
  it('requires exactly one of --name and --name-autogenerate', () => {
    assert.throws(() => resolveName(undefined, false), { message: 'you must supply one of --name or --name-autogenerate' });
    assert.throws(() => resolveName('vm1', true), { message: 'only one of --name or --name-autogenerate can be specified' });
    assert.equal(resolveName('vm1', false), 'vm1');
  });

  it('generates names that are valid ids and host labels', () => {
    for (let i = 0; i < 50; i++) assert.match(generateName(), /^[a-z]+-[a-z]+-[0-9a-f]{4}$/);
    assert.equal(
      generateName(() => Buffer.from([1, 2, 0xab, 0xcd])),
      'brave-falcon-abcd',
    );
  });
});

describe('buildSpec', () => {
  it('builds the spec the original fl builds', () => {
    const spec = buildSpec(
      baseOptions({
        kernelFilename: 'boot/vmlinux',
        kernelCmdline: ['console=ttyS0'],
        networkInterfaces: ['eth1:tap::10.0.0.2/24', 'eth2'],
        metadataFromFile: ['user-data=/ud'],
        containerVolumes: ['data=registry.local/data:1=/data'],
        provider: 'qemu',
      }),
      () => Buffer.from('hello'),
    );
    assert.equal(spec.id, 'vm1');
    assert.equal(spec.namespace, 'default');
    assert.deepEqual(spec.labels, { 'created-with': 'fl' });
    assert.equal(spec.vcpu, 2);
    assert.equal(spec.memoryInMb, 1024);
    assert.equal(spec.kernel?.image, 'ghcr.io/liquidmetal-dev/firecracker-kernel:6.1');
    assert.equal(spec.kernel?.filename, 'boot/vmlinux');
    assert.equal(spec.kernel?.addNetworkConfig, true);
    assert.deepEqual(spec.kernel?.cmdline, { console: 'ttyS0' });
    assert.equal(spec.rootVolume?.id, 'root');
    assert.equal(spec.rootVolume?.mountPoint, '/');
    assert.equal(spec.rootVolume?.isReadOnly, false);
    assert.equal(spec.rootVolume?.source?.containerSource, 'ghcr.io/liquidmetal-dev/ubuntu:22.04');
    assert.equal(spec.initrd, undefined);
    assert.deepEqual(
      spec.interfaces.map((i) => [i.deviceId, i.type]),
      [
        ['eth1', NetworkInterface_IfaceType.TAP],
        ['eth2', NetworkInterface_IfaceType.MACVTAP],
      ],
    );
    assert.deepEqual(spec.metadata, { 'user-data': Buffer.from('hello').toString('base64') });
    assert.equal(spec.additionalVolumes.length, 1);
    assert.equal(spec.provider, 'qemu');
    assert.equal(spec.uid, undefined);
  });

  it('leaves optional parts unset so the server applies its defaults', () => {
    const spec = buildSpec(baseOptions({ rootImage: undefined, initrdImage: 'registry.local/initrd:1', addNetconf: false }), noFiles);
    assert.equal(spec.kernel?.filename, undefined);
    assert.equal(spec.kernel?.addNetworkConfig, false);
    assert.equal(spec.rootVolume, undefined);
    assert.equal(spec.initrd?.image, 'registry.local/initrd:1');
    assert.equal(spec.initrd?.filename, undefined);
    assert.equal(spec.provider, undefined);
    assert.deepEqual(spec.metadata, {});
  });

  it('rejects an initrd filename without an initrd image', () => {
    assert.throws(() => buildSpec(baseOptions({ initrdFilename: 'initrd.img' }), noFiles), /--initrd-filename needs --initrd-image/);
  });

  it('autogenerates a name when asked', () => {
    const spec = buildSpec(baseOptions({ name: undefined, nameAutogenerate: true }), noFiles, () => Buffer.from([0, 0, 0, 1]));
    assert.equal(spec.id, 'amber-badger-0001');
  });

  it('surfaces interface errors', () => {
    assert.throws(() => buildSpec(baseOptions({ networkInterfaces: ['eth1:vxlan'] }), noFiles), SpecError);
  });
});

const NOW = Date.UTC(2024, 0, 2, 12, 0, 0);

function sampleVm(
  overrides: { state?: MicroVMStatus_MicroVMState; retry?: number; failureReason?: string; lastError?: string; createdAt?: number } = {},
): MicroVM {
  return create(MicroVMSchema, {
    version: 3,
    spec: {
      id: 'vm1',
      namespace: 'ns1',
      uid: '01HGW2N7EH0000000000000001',
      labels: { 'created-with': 'fl' },
      vcpu: 2,
      memoryInMb: 1024,
      kernel: { image: 'registry.local/kernel:1', addNetworkConfig: true },
      interfaces: [{ deviceId: 'eth1', type: NetworkInterface_IfaceType.TAP }],
      createdAt: timestampFromMs(overrides.createdAt ?? NOW - 90_000),
    },
    status: {
      state: overrides.state ?? MicroVMStatus_MicroVMState.PENDING,
      retry: overrides.retry ?? 0,
      failureReason: overrides.failureReason ?? '',
      lastError: overrides.lastError ?? '',
    },
  });
}

describe('output', () => {
  it('names states', () => {
    assert.equal(stateName(MicroVMStatus_MicroVMState.CREATED), 'CREATED');
    assert.equal(stateName(undefined), 'PENDING');
  });

  it('prefers the failure reason over the last error', () => {
    assert.equal(reasonOf(sampleVm({ failureReason: 'retries exhausted', lastError: 'boom' })), 'retries exhausted');
    assert.equal(reasonOf(sampleVm({ lastError: 'boom' })), 'boom');
    assert.equal(reasonOf(create(MicroVMSchema, {})), '');
  });

  it('truncates to one line', () => {
    assert.equal(truncate('a\nb   c', 20), 'a b c');
    assert.equal(truncate('x'.repeat(30), 10), 'xxxxxxx...');
  });

  it('formats ages like kubectl', () => {
    assert.equal(formatAge(-5), '0s');
    assert.equal(formatAge(42_000), '42s');
    assert.equal(formatAge(7 * 60_000), '7m');
    assert.equal(formatAge(3 * 3_600_000), '3h');
    assert.equal(formatAge(12 * 86_400_000), '12d');
  });

  it('renders an aligned table', () => {
    const vms = [sampleVm(), sampleVm({ state: MicroVMStatus_MicroVMState.FAILED, retry: 10, failureReason: 'kernel image not found: ' + 'x'.repeat(100) })];
    const lines = formatTable(vms, NOW).trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0] ?? '', /^UID\s+NAMESPACE\s+NAME\s+STATE\s+IP\s+RETRY\s+AGE\s+REASON$/);
    assert.match(lines[1] ?? '', /^01HGW2N7EH0000000000000001\s+ns1\s+vm1\s+PENDING\s+-\s+0\s+90s\s+-$/);
    assert.match(lines[2] ?? '', /FAILED\s+-\s+10\s+90s\s+kernel image not found: x+\.\.\.$/);
    const reasonColumn = (lines[0] ?? '').indexOf('REASON');
    assert.equal((lines[2] ?? '').indexOf('kernel image'), reasonColumn);
    assert.ok((lines[2] ?? '').length < 200);
  });

  it('renders protobuf JSON with every field present', () => {
    const single = JSON.parse(formatJson(sampleVm())) as Record<string, unknown>;
    assert.equal(single['version'], 3);
    const spec = single['spec'] as Record<string, unknown>;
    assert.equal(spec['uid'], '01HGW2N7EH0000000000000001');
    assert.equal(spec['memoryInMb'], 1024);
    assert.deepEqual(spec['additionalVolumes'], []);
    assert.equal(spec['createdAt'], '2024-01-02T11:58:30Z');
    const status = single['status'] as Record<string, unknown>;
    assert.equal(status['state'], 'PENDING');
    assert.equal(status['retry'], 0);
    assert.equal(status['failureReason'], '');

    const list = JSON.parse(formatJson([sampleVm(), sampleVm()])) as unknown[];
    assert.equal(list.length, 2);
    assert.deepEqual(JSON.parse(formatJson([])), []);
  });

  it('renders the same document as YAML', () => {
    const vm = sampleVm({ state: MicroVMStatus_MicroVMState.CREATED });
    assert.deepEqual(parseYaml(formatYaml(vm)), JSON.parse(formatJson(vm)));
    const list: unknown = parseYaml(formatYaml([vm]));
    assert.ok(Array.isArray(list));
    assert.equal(list.length, 1);
  });

  it('formats a single VM as a one-row table', () => {
    assert.equal(formatVms('table', sampleVm(), NOW).trimEnd().split('\n').length, 2);
  });

  it('formats watch events line by line, deletions included, with the EVENT', () => {
    const json = formatWatchLine('json', { type: 'UPDATED', event: 'MODIFIED', vm: sampleVm() }, NOW);
    assert.equal(json.split('\n').length, 2);
    const parsed = JSON.parse(json) as { type: string; event: string; microvm: { spec: { id: string } } };
    assert.equal(parsed.type, 'UPDATED');
    assert.equal(parsed.event, 'MODIFIED');
    assert.equal(parsed.microvm.spec.id, 'vm1');
    assert.match(formatWatchLine('yaml', { type: 'SNAPSHOT', event: 'ADDED', vm: sampleVm() }, NOW), /^---\ntype: SNAPSHOT\nevent: ADDED\nmicrovm:\n/);
    assert.match(formatWatchLine('table', { type: 'UPDATED', event: 'MODIFIED', vm: sampleVm() }, NOW), /^MODIFIED\s+\S+\s+.*PENDING/);
    const deleted = formatWatchLine('table', { type: 'DELETED', event: 'DELETED', vm: sampleVm() }, NOW);
    assert.match(deleted, /^DELETED\s.*DELETED/);
    assert.doesNotMatch(deleted, /PENDING/);
  });
});

describe('cli helpers', () => {
  it('maps gRPC codes to exit codes', () => {
    assert.equal(exitCodeFor(status.INVALID_ARGUMENT), 2);
    assert.equal(exitCodeFor(status.NOT_FOUND), 4);
    assert.equal(exitCodeFor(status.DEADLINE_EXCEEDED), 3);
    assert.equal(exitCodeFor(status.UNAVAILABLE), 5);
    assert.equal(exitCodeFor(status.UNAUTHENTICATED), 5);
    assert.equal(exitCodeFor(status.INTERNAL), 1);
  });

  it('adds the default port', () => {
    assert.equal(normalizeHost('host1'), 'host1:9090');
    assert.equal(normalizeHost('host1:1234'), 'host1:1234');
  });
});
