import { renderCmdline } from '../../src/core/guest.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

import {
  cloudInitFiles,
  decodeMetadataValue,
  EMPTY_CLOUD_CONFIG,
  guestDiskDevice,
  isCloudConfig,
  mmdsPayload,
  networkConfig,
  vendorDataWithMounts,
  type CloudInitResult,
  type NetworkConfigInterface,
} from '../../src/core/cloud-init.js';
import type { MicroVM } from '../../src/core/model.js';
import type { LaunchDisk, LaunchNic } from '../../src/core/ports.js';
import { sampleVm } from '../helpers/fixtures.js';

const b64 = (text: string): string => Buffer.from(text).toString('base64');
/** Parses YAML the way the guest's PyYAML does (YAML 1.1). */
const yaml11 = (text: string): unknown => parse(text, { version: '1.1' });

function netcfg(interfaces: NetworkConfigInterface[]): unknown {
  const r = networkConfig(interfaces);
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  return yaml11(r.value);
}

function files(vm: MicroVM, nics: LaunchNic[], disks: LaunchDisk[]): CloudInitResult {
  const r = cloudInitFiles(vm, nics, disks);
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  return r.value;
}

const nic = (deviceId: string, mac: string, extra: Partial<LaunchNic> = {}): LaunchNic => ({
  deviceId,
  type: 'tap',
  hostDevice: `fltap${deviceId}`,
  mac,
  ...extra,
});
const disk = (id: string, root = false): LaunchDisk => ({ id, path: `/var/lib/flintlock/${id}.img`, readOnly: false, root, format: 'raw' });

describe('decodeMetadataValue', () => {
  it('decodes base64 for every key', () => {
    for (const key of ['meta-data', 'user-data', 'vendor-data', 'network-config', 'custom']) {
      assert.deepEqual(decodeMetadataValue(key, b64('#cloud-config\nhostname: a\n')), { ok: true, value: '#cloud-config\nhostname: a\n' });
    }
  });

  it('tolerates raw text for every key but meta-data', () => {
    const raw = '#cloud-config\nhostname: a\n';
    assert.deepEqual(decodeMetadataValue('user-data', raw), { ok: true, value: raw });
    assert.deepEqual(decodeMetadataValue('vendor-data', '#!/bin/sh\necho hi\n'), { ok: true, value: '#!/bin/sh\necho hi\n' });
    const r = decodeMetadataValue('meta-data', 'instance_id: x');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.error.message, /meta-data.*base64/);
  });

  it('keeps raw words that happen to be valid base64 but decode to binary', () => {
    // 'true' and 'abcdabcd' are well-formed base64 of non-text bytes.
    assert.deepEqual(decodeMetadataValue('user-data', 'true'), { ok: true, value: 'true' });
    assert.deepEqual(decodeMetadataValue('network-config', 'abcdabcd'), { ok: true, value: 'abcdabcd' });
  });
});

describe('networkConfig', () => {
  it('DHCP v4 and v6 per interface, matched on the lower-cased MAC, not renamed', () => {
    assert.deepEqual(
      netcfg([
        { deviceId: 'eth0', mac: 'AA:BB:CC:00:00:01' },
        { deviceId: 'data', mac: '52:54:00:12:34:56' },
      ]),
      {
        version: 2,
        ethernets: {
          eth0: { match: { macaddress: 'aa:bb:cc:00:00:01' }, dhcp4: true, dhcp6: true, 'dhcp-identifier': 'mac' },
          data: { match: { macaddress: '52:54:00:12:34:56' }, dhcp4: true, dhcp6: true, 'dhcp-identifier': 'mac' },
        },
      },
    );
  });

  it('dhcp6: false (network-config-dhcp6) asks for DHCPv4 only; static and MMDS NICs are unchanged', () => {
    const interfaces: NetworkConfigInterface[] = [
      { deviceId: 'eth0', mac: 'AA:FF:00:00:00:01', allowMetadata: true },
      { deviceId: 'lan', mac: '02:00:00:00:00:0a' },
      { deviceId: 'wan', mac: '02:00:00:00:00:0b', address: { address: '10.1.0.9/16', nameservers: [] } },
    ];
    const off = networkConfig(interfaces, { dhcp6: false });
    const on = networkConfig(interfaces, { dhcp6: true });
    const unset = networkConfig(interfaces);
    assert.ok(off.ok && on.ok && unset.ok);
    assert.deepEqual(yaml11(off.value), {
      version: 2,
      ethernets: {
        eth0: { match: { macaddress: 'aa:ff:00:00:00:01' }, dhcp4: false, dhcp6: false, addresses: ['169.254.0.1/16'] },
        lan: { match: { macaddress: '02:00:00:00:00:0a' }, dhcp4: true, dhcp6: false, 'dhcp-identifier': 'mac' },
        wan: { match: { macaddress: '02:00:00:00:00:0b' }, dhcp4: false, dhcp6: false, addresses: ['10.1.0.9/16'] },
      },
    });
    assert.equal(unset.value, on.value, "the default is the original's dhcp6: true");
    assert.match(on.value, /lan:\n(?:.*\n)*?\s+dhcp6: true\n/);
  });

  it('quotes MACs so YAML 1.1 readers do not take them for base-60 numbers', () => {
    const r = networkConfig([{ deviceId: 'eth0', mac: '52:54:00:12:34:56' }]);
    assert.ok(r.ok);
    assert.match(r.value, /macaddress: "52:54:00:12:34:56"/);
    assert.match(r.value, /^version: 2\n/);
  });

  it('static v4 with a gateway given with a prefix, and nameservers', () => {
    assert.deepEqual(
      netcfg([
        { deviceId: 'eth1', mac: '02:00:00:00:00:02', address: { address: '10.0.0.5/24', gateway: '10.0.0.1/24', nameservers: ['10.0.0.1', '1.1.1.1'] } },
      ]),
      {
        version: 2,
        ethernets: {
          eth1: {
            match: { macaddress: '02:00:00:00:00:02' },
            dhcp4: false,
            dhcp6: false,
            addresses: ['10.0.0.5/24'],
            routes: [{ to: '0.0.0.0/0', via: '10.0.0.1' }],
            nameservers: { addresses: ['10.0.0.1', '1.1.1.1'] },
          },
        },
      },
    );
  });

  it('static v6 routes ::/0; no gateway and no nameservers leave them out', () => {
    assert.deepEqual(
      netcfg([
        { deviceId: 'eth1', mac: '02:00:00:00:00:02', address: { address: 'fd00::5/64', gateway: 'fd00::1', nameservers: ['fd00::53'] } },
        { deviceId: 'eth2', mac: '02:00:00:00:00:03', address: { address: '192.168.7.2/24', nameservers: [] } },
      ]),
      {
        version: 2,
        ethernets: {
          eth1: {
            match: { macaddress: '02:00:00:00:00:02' },
            dhcp4: false,
            dhcp6: false,
            addresses: ['fd00::5/64'],
            routes: [{ to: '::/0', via: 'fd00::1' }],
            nameservers: { addresses: ['fd00::53'] },
          },
          eth2: { match: { macaddress: '02:00:00:00:00:03' }, dhcp4: false, dhcp6: false, addresses: ['192.168.7.2/24'] },
        },
      },
    );
  });

  it('the MMDS interface gets 169.254.0.1/16 without a gateway', () => {
    assert.deepEqual(
      netcfg([
        { deviceId: 'eth0', mac: 'AA:FF:00:00:00:01', allowMetadata: true },
        { deviceId: 'eth1', mac: '02:00:00:00:00:02' },
      ]),
      {
        version: 2,
        ethernets: {
          eth0: { match: { macaddress: 'aa:ff:00:00:00:01' }, dhcp4: false, dhcp6: false, addresses: ['169.254.0.1/16'] },
          eth1: { match: { macaddress: '02:00:00:00:00:02' }, dhcp4: true, dhcp6: true, 'dhcp-identifier': 'mac' },
        },
      },
    );
  });

  it('an interface without a MAC, or listed twice, is an error', () => {
    const noMac = networkConfig([{ deviceId: 'eth0' }]);
    assert.equal(noMac.ok, false);
    if (!noMac.ok) assert.match(noMac.error.message, /eth0 has no MAC/);
    const twice = networkConfig([
      { deviceId: 'eth0', mac: '02:00:00:00:00:01' },
      { deviceId: 'eth0', mac: '02:00:00:00:00:02' },
    ]);
    assert.equal(twice.ok, false);
  });
});

describe('guestDiskDevice', () => {
  it('names virtio-blk disks like Linux does', () => {
    const cases: Array<[number, string]> = [
      [0, '/dev/vda'],
      [1, '/dev/vdb'],
      [25, '/dev/vdz'],
      [26, '/dev/vdaa'],
      [27, '/dev/vdab'],
      [51, '/dev/vdaz'],
      [52, '/dev/vdba'],
      [701, '/dev/vdzz'],
      [702, '/dev/vdaaa'],
    ];
    for (const [index, name] of cases) assert.equal(guestDiskDevice(index), name, `index ${index}`);
    assert.throws(() => guestDiskDevice(-1), RangeError);
    assert.throws(() => guestDiskDevice(1.5), RangeError);
  });
});

describe('vendorDataWithMounts', () => {
  const mounts = [
    { device: '/dev/vdb', mountPoint: '/data' },
    { device: '/dev/vdc', mountPoint: '/logs', readOnly: true },
  ];

  it('creates a cloud-config with the mounts when there is no vendor-data', () => {
    const r = vendorDataWithMounts(undefined, mounts);
    assert.deepEqual(r.warnings, []);
    assert.ok(r.vendorData?.startsWith('#cloud-config\n'));
    assert.deepEqual(yaml11(r.vendorData ?? ''), {
      mounts: [
        ['/dev/vdb', '/data', 'auto', 'defaults,nofail'],
        ['/dev/vdc', '/logs', 'auto', 'defaults,nofail,ro'],
      ],
    });
  });

  // Found by the API fuzzer: an accepted spec whose cloud-init disk step threw on every retry.
  it('vendor-data with an alias to no anchor is left as given with a warning, not thrown on', () => {
    const user = '#cloud-config\n<<: [*x]\n';
    const r = vendorDataWithMounts(user, mounts.slice(0, 1));
    assert.equal(r.vendorData, user);
    assert.equal(r.warnings.length, 1);
    assert.match(
      r.warnings[0] ?? '',
      /^vendor-data is not valid YAML \(Unresolved alias.*\): left as given, so the volume mounts \(\/dev\/vdb on \/data\) are not configured/,
    );
  });

  it('no mounts: the vendor-data as given (or none)', () => {
    assert.deepEqual(vendorDataWithMounts(undefined, []), { vendorData: undefined, warnings: [] });
    assert.deepEqual(vendorDataWithMounts('#!/bin/sh\n', []), { vendorData: '#!/bin/sh\n', warnings: [] });
  });

  it('keeps every key of the user cloud-config (the original dropped unknown ones) and its YAML 1.1 meaning', () => {
    const user =
      '#cloud-config\n# keep me\nntp:\n  servers: [ntp.example]\npackage_upgrade: yes\nwrite_files:\n  - path: /etc/x\n    permissions: 0644\n    content: hi\n';
    const r = vendorDataWithMounts(user, mounts.slice(0, 1));
    assert.deepEqual(r.warnings, []);
    assert.ok(r.vendorData?.startsWith('#cloud-config\n'));
    assert.match(r.vendorData ?? '', /# keep me/);
    assert.deepEqual(yaml11(r.vendorData ?? ''), {
      ntp: { servers: ['ntp.example'] },
      package_upgrade: true,
      write_files: [{ path: '/etc/x', permissions: 0o644, content: 'hi' }],
      mounts: [['/dev/vdb', '/data', 'auto', 'defaults,nofail']],
    });
  });

  it('appends to an existing mounts list; an entry for the same device and point is not repeated', () => {
    const user = '#cloud-config\nmounts:\n  - [ /dev/vdz, /z ]\n  - [ /dev/vdb, /data ]\n';
    const r = vendorDataWithMounts(user, mounts);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(yaml11(r.vendorData ?? ''), {
      mounts: [
        ['/dev/vdz', '/z'],
        ['/dev/vdb', '/data'],
        ['/dev/vdc', '/logs', 'auto', 'defaults,nofail,ro'],
      ],
    });
  });

  it('a conflicting user entry wins, with a warning; `mounts:` with no value counts as empty', () => {
    const conflict = vendorDataWithMounts('#cloud-config\nmounts:\n  - [ /dev/vdb, /elsewhere ]\n', mounts.slice(0, 1));
    assert.equal(conflict.warnings.length, 1);
    assert.match(conflict.warnings[0] ?? '', /already mounts \/dev\/vdb/);
    assert.deepEqual(yaml11(conflict.vendorData ?? ''), { mounts: [['/dev/vdb', '/elsewhere']] });

    const empty = vendorDataWithMounts('#cloud-config\nmounts:\n', mounts.slice(0, 1));
    assert.deepEqual(yaml11(empty.vendorData ?? ''), { mounts: [['/dev/vdb', '/data', 'auto', 'defaults,nofail']] });
    const headerOnly = vendorDataWithMounts('#cloud-config\n', mounts.slice(0, 1));
    assert.deepEqual(yaml11(headerOnly.vendorData ?? ''), { mounts: [['/dev/vdb', '/data', 'auto', 'defaults,nofail']] });
  });

  it('leaves non-cloud-config vendor-data untouched and says the mounts are not delivered', () => {
    const inputs = [
      '#!/bin/sh\necho hello\n',
      'Content-Type: multipart/mixed; boundary="==x=="\nMIME-Version: 1.0\n\n--==x==\n',
      '#cloud-config-archive\n- type: text/x-shellscript\n  content: "#!/bin/sh"\n',
      '#cloud-config\nmounts: not-a-list\n',
      '#cloud-config\n- just\n- a list\n',
      '#cloud-config\nkey: [unclosed\n',
    ];
    for (const input of inputs) {
      const r = vendorDataWithMounts(input, mounts);
      assert.equal(r.vendorData, input, input);
      assert.equal(r.warnings.length, 1, input);
      assert.match(r.warnings[0] ?? '', /\/dev\/vdb on \/data, \/dev\/vdc on \/logs/);
    }
  });

  it('appends the mounts to jinja-headed cloud-config, leaving the template as written', () => {
    const template = '## template: jinja\n#cloud-config\n\nhostname: {{ ds.meta_data.local_hostname }}\n{% if v1.platform %}\nfinal_message: up\n{% endif %}\n';
    const r = vendorDataWithMounts(template, mounts);
    assert.deepEqual(r.warnings, []);
    assert.equal(
      r.vendorData,
      `${template}mounts:\n  - ["/dev/vdb", "/data", "auto", "defaults,nofail"]\n  - ["/dev/vdc", "/logs", "auto", "defaults,nofail,ro"]\n`,
    );
    // Rendered as cloud-init would (the jinja replaced), it is the cloud-config with the mounts.
    const rendered = (r.vendorData ?? '')
      .replace(/^## template: jinja\n/, '')
      .replace(/\{\{[^}]*\}\}/g, 'h')
      .replace(/^\{%.*%\}$/gm, '');
    assert.deepEqual((yaml11(rendered) as Record<string, unknown>)['mounts'], [
      ['/dev/vdb', '/data', 'auto', 'defaults,nofail'],
      ['/dev/vdc', '/logs', 'auto', 'defaults,nofail,ro'],
    ]);
    assert.equal(
      vendorDataWithMounts('## template: jinja\n#cloud-config', mounts.slice(0, 1)).vendorData,
      '## template: jinja\n#cloud-config\nmounts:\n  - ["/dev/vdb", "/data", "auto", "defaults,nofail"]\n',
    );
  });

  it('leaves a jinja template with its own mounts, or not of cloud-config, untouched, saying so', () => {
    for (const [input, why] of [
      ['## template: jinja\n#cloud-config\nmounts:\n  - [ {{ dev }}, /x ]\n', /its own `mounts`/],
      ['## template: jinja\n#!/bin/sh\necho {{ v1.local_hostname }}\n', /not of a #cloud-config document/],
    ] as const) {
      const r = vendorDataWithMounts(input, mounts);
      assert.equal(r.vendorData, input);
      assert.equal(r.warnings.length, 1);
      assert.match(r.warnings[0] ?? '', why);
    }
  });

  it('recognises the #cloud-config header exactly', () => {
    assert.equal(isCloudConfig('#cloud-config\na: 1'), true);
    assert.equal(isCloudConfig('#cloud-config\r\na: 1'), true);
    assert.equal(isCloudConfig('#cloud-config'), true);
    assert.equal(isCloudConfig('#cloud-config-archive\n'), false);
    assert.equal(isCloudConfig(' #cloud-config\n'), false);
  });
});

describe('cloudInitFiles', () => {
  const UID = '01HGW2N7EH00000000000000AA';

  function vmWith(overrides: Parameters<typeof sampleVm>[0] = {}): MicroVM {
    return sampleVm({ id: { uid: UID }, ...overrides });
  }

  it('root vda, then additional volumes in launch order; virtiofs takes no letter; cidata after them', () => {
    const vm = vmWith({
      spec: {
        additionalVolumes: [
          { id: 'shared', readOnly: false, mountPoint: '/shared', source: { virtiofsPath: '/srv/share' } },
          { id: 'data', readOnly: false, mountPoint: '/data', source: { containerImage: 'registry.local/data:1' } },
          { id: 'scratch', readOnly: false, source: { containerImage: 'registry.local/scratch:1' } },
          { id: 'logs', readOnly: true, mountPoint: '/var/log/app', source: { containerImage: 'registry.local/logs:1' } },
        ],
        metadata: { 'meta-data': b64(`instance_id: ${UID}\n`) },
      },
    });
    const r = files(vm, [], [disk('root', true), disk('data'), disk('scratch'), disk('logs'), disk('cidata')]);
    assert.deepEqual(yaml11(r.files['vendor-data'] ?? ''), {
      mounts: [
        ['/dev/vdb', '/data', 'auto', 'defaults,nofail'],
        ['/dev/vdd', '/var/log/app', 'auto', 'defaults,nofail,ro'],
      ],
    });
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /volume shared .*virtiofs/);
  });

  it("letters follow the provider's disk order (e.g. cidata second)", () => {
    const vm = vmWith({
      spec: { additionalVolumes: [{ id: 'data', readOnly: false, mountPoint: '/data', source: { containerImage: 'registry.local/data:1' } }] },
    });
    const r = files(vm, [], [disk('root', true), disk('cidata'), disk('data')]);
    assert.deepEqual(yaml11(r.files['vendor-data'] ?? ''), { mounts: [['/dev/vdc', '/data', 'auto', 'defaults,nofail']] });
  });

  it('a container volume with a mount point but no disk in the launch is an error', () => {
    const vm = vmWith({
      spec: { additionalVolumes: [{ id: 'data', readOnly: false, mountPoint: '/data', source: { containerImage: 'registry.local/data:1' } }] },
    });
    assert.equal(cloudInitFiles(vm, [], [disk('root', true)]).ok, false);
  });

  it('meta-data decoded, instance_id kept or added, NoCloud instance-id of the same value; user-data defaults to an empty cloud-config; no vendor-data without mounts', () => {
    const given = files(
      vmWith({ spec: { metadata: { 'meta-data': b64('instance_id: mine\nlocal_hostname: h\n'), 'user-data': b64('#cloud-config\nhostname: h\n') } } }),
      [],
      [disk('root', true)],
    );
    assert.equal(given.files['meta-data'], 'instance_id: mine\nlocal_hostname: h\ninstance-id: mine\n');
    assert.equal(given.files['user-data'], '#cloud-config\nhostname: h\n');
    assert.equal(given.files['vendor-data'], undefined);

    const bare = files(vmWith({ spec: { metadata: {}, kernel: { image: 'k', cmdline: {}, addNetworkConfig: false } } }), [], []);
    assert.deepEqual(yaml11(bare.files['meta-data']), { instance_id: UID, 'instance-id': UID });
    const own = files(vmWith({ spec: { metadata: { 'meta-data': b64('instance_id: a\ninstance-id: b\n') } } }), [], []);
    assert.equal(own.files['meta-data'], 'instance_id: a\ninstance-id: b\n', "a client's instance-id is kept");
    assert.equal(bare.files['user-data'], EMPTY_CLOUD_CONFIG);
    assert.equal(bare.files['network-config'], undefined);
    assert.deepEqual(bare.warnings, []);
  });

  it('raw (non-base64) user-data and vendor-data are used as written', () => {
    const vm = vmWith({ spec: { metadata: { 'user-data': '#cloud-config\nhostname: raw\n', 'vendor-data': '#!/bin/sh\ntrue\n' } } });
    const r = files(vm, [], []);
    assert.equal(r.files['user-data'], '#cloud-config\nhostname: raw\n');
    assert.equal(r.files['vendor-data'], '#!/bin/sh\ntrue\n');
  });

  it('invalid stored meta-data is an error', () => {
    assert.equal(cloudInitFiles(vmWith({ spec: { metadata: { 'meta-data': 'not base64!' } } }), [], []).ok, false);
  });

  it('network-config generated from the launch NICs (MACs) and spec addresses when add_network_config', () => {
    const vm = vmWith({
      spec: {
        interfaces: [
          { deviceId: 'eth0', type: 'tap', allowMetadata: true },
          { deviceId: 'lan', type: 'tap' },
          { deviceId: 'wan', type: 'macvtap', address: { address: '10.1.0.9/16', gateway: '10.1.0.1', nameservers: ['9.9.9.9'] } },
        ],
      },
    });
    const r = files(
      vm,
      [nic('eth0', 'AA:FF:00:00:00:01', { allowMetadata: true }), nic('lan', '02:00:00:00:00:0a'), nic('wan', '02:00:00:00:00:0b', { type: 'macvtap' })],
      [],
    );
    assert.deepEqual(yaml11(r.files['network-config'] ?? ''), {
      version: 2,
      ethernets: {
        eth0: { match: { macaddress: 'aa:ff:00:00:00:01' }, dhcp4: false, dhcp6: false, addresses: ['169.254.0.1/16'] },
        lan: { match: { macaddress: '02:00:00:00:00:0a' }, dhcp4: true, dhcp6: true, 'dhcp-identifier': 'mac' },
        wan: {
          match: { macaddress: '02:00:00:00:00:0b' },
          dhcp4: false,
          dhcp6: false,
          addresses: ['10.1.0.9/16'],
          routes: [{ to: '0.0.0.0/0', via: '10.1.0.1' }],
          nameservers: { addresses: ['9.9.9.9'] },
        },
      },
    });
  });

  it('passes the network-config options to the generated network-config only', () => {
    const vm = vmWith({ spec: { interfaces: [{ deviceId: 'lan', type: 'tap' }] } });
    const generated = cloudInitFiles(vm, [nic('lan', '02:00:00:00:00:0a')], [], { dhcp6: false });
    assert.ok(generated.ok);
    assert.deepEqual(yaml11(generated.value.files['network-config'] ?? ''), {
      version: 2,
      ethernets: { lan: { match: { macaddress: '02:00:00:00:00:0a' }, dhcp4: true, dhcp6: false, 'dhcp-identifier': 'mac' } },
    });
    const own = 'version: 2\nethernets:\n  mine:\n    dhcp6: true\n';
    const withOwn = cloudInitFiles(
      vmWith({ spec: { interfaces: [{ deviceId: 'lan', type: 'tap' }], metadata: { ...vm.spec.metadata, 'network-config': b64(own) } } }),
      [nic('lan', '02:00:00:00:00:0a')],
      [],
      { dhcp6: false },
    );
    assert.ok(withOwn.ok);
    assert.equal(withOwn.value.files['network-config'], own, "the client's own network-config is not rewritten");
  });

  it("the user's own network-config wins over the generated one (base64 or raw)", () => {
    const own = 'version: 2\nethernets:\n  mine:\n    dhcp4: true\n';
    for (const value of [b64(own), own]) {
      const r = files(vmWith({ spec: { metadata: { 'network-config': value } } }), [nic('eth0', '02:00:00:00:00:01')], []);
      assert.equal(r.files['network-config'], own);
    }
  });

  it('warns when user-data sets its own mounts (they replace vendor-data mounts)', () => {
    const vm = vmWith({
      spec: {
        additionalVolumes: [{ id: 'data', readOnly: false, mountPoint: '/data', source: { containerImage: 'registry.local/data:1' } }],
        metadata: { 'user-data': b64('#cloud-config\nmounts:\n  - [ /dev/vdz, /z ]\n') },
      },
    });
    const r = files(vm, [], [disk('root', true), disk('data')]);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /user-data has its own `mounts`/);
  });
});

describe('mmdsPayload', () => {
  it('puts the present files under latest', () => {
    assert.deepEqual(mmdsPayload({ 'meta-data': 'instance_id: a\n', 'user-data': '#cloud-config\n', 'network-config': 'version: 2\n' }), {
      latest: { 'meta-data': 'instance_id: a\n', 'user-data': '#cloud-config\n', 'network-config': 'version: 2\n' },
    });
    const all = mmdsPayload({ 'meta-data': 'm', 'user-data': 'u', 'vendor-data': 'v', 'network-config': 'n' });
    assert.deepEqual(Object.keys(all.latest), ['meta-data', 'user-data', 'vendor-data', 'network-config']);
    assert.deepEqual(JSON.parse(JSON.stringify(mmdsPayload({ 'meta-data': 'm' }))), { latest: { 'meta-data': 'm' } });
  });
});

describe('renderCmdline', () => {
  it('defaults in order, the user winning per key, extra keys sorted, bare flags and quoting', () => {
    const defaults = { console: 'ttyS0', reboot: 'k', panic: '1', pci: 'off', ds: 'nocloud-net;s=http://169.254.169.254/latest/' };
    const user = { zz: 'last', panic: '0', quiet: '', 'app.motd': 'hello world', aa: 'x' };
    assert.equal(
      renderCmdline(defaults, user),
      'console=ttyS0 reboot=k panic=0 pci=off ds=nocloud-net;s=http://169.254.169.254/latest/ aa=x app.motd="hello world" quiet zz=last',
    );
  });

  it('a default may be turned into a bare flag; empty maps render nothing', () => {
    assert.equal(renderCmdline({ ro: '', root: '/dev/vda' }, { root: '' }), 'ro root');
    assert.equal(renderCmdline({}, {}), '');
  });
});
