import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { ProviderCapability, VmmProvider } from '../../src/core/ports.js';
import { MemoryProvider } from '../helpers/doubles.js';
import {
  checkUnicastMac,
  DEFAULT_LIMITS,
  isCidr,
  validateCreate,
  type CreateInput,
  type ProviderLookup,
  type ValidatedCreate,
  type ValidationLimits,
} from '../../src/core/validation.js';

/** A provider with the given capabilities (its VMM side is never used here). */
function stubProvider(name: string, capabilities: ProviderCapability[]): VmmProvider {
  return new MemoryProvider(undefined, name, capabilities);
}

/** Everything but a metadata service (which brings its own eth0: tested at the end). */
const ALL_CAPS: ProviderCapability[] = ['macvtap', 'tap', 'virtiofs', 'vsock', 'pause'];

function lookup(providers: VmmProvider[], defaultName: string): ProviderLookup {
  const byName = new Map(providers.map((p) => [p.name, p]));
  return { names: () => [...byName.keys()], get: (n) => byName.get(n), defaultName: () => defaultName };
}

/** qemu can do everything; firecracker has taps and vsock only; `bare` has nothing. */
const PROVIDERS = lookup([stubProvider('qemu', ALL_CAPS), stubProvider('firecracker', ['tap', 'metadata-service', 'vsock']), stubProvider('bare', [])], 'qemu');

function base(overrides: Partial<CreateInput> = {}): CreateInput {
  return {
    name: 'vm1',
    namespace: 'ns1',
    labels: { role: 'worker' },
    vcpu: 2,
    memoryMb: 512,
    kernel: { image: 'docker.io/library/kernel:5.10', cmdline: { console: 'ttyS0' }, addNetworkConfig: true },
    rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'ghcr.io/org/root:1' } },
    additionalVolumes: [],
    interfaces: [{ deviceId: 'eth0', type: 'macvtap' }],
    metadata: {},
    provider: 'qemu',
    allowGuestAgent: false,
    ...overrides,
  };
}

function expectValid(input: CreateInput, limits: ValidationLimits = DEFAULT_LIMITS, providers: ProviderLookup = PROVIDERS): ValidatedCreate {
  const result = validateCreate(input, limits, providers);
  assert.ok(result.ok, result.ok ? '' : `expected valid, got: ${result.error.message}`);
  return result.value;
}

/** Asserts a rejection whose message contains every fragment; returns the message. */
function expectInvalid(input: CreateInput, fragments: string[], limits: ValidationLimits = DEFAULT_LIMITS, providers: ProviderLookup = PROVIDERS): string {
  const result = validateCreate(input, limits, providers);
  assert.equal(result.ok, false, 'expected the spec to be rejected');
  if (result.ok) throw new Error('unreachable');
  assert.equal(result.error.kind, 'invalid-argument');
  for (const f of fragments) assert.ok(result.error.message.includes(f), `message ${JSON.stringify(result.error.message)} lacks ${JSON.stringify(f)}`);
  return result.error.message;
}

describe('validateCreate: a valid spec', () => {
  it('passes and carries the fields into the stored spec', () => {
    const v = expectValid(base());
    assert.equal(v.name, 'vm1');
    assert.equal(v.namespace, 'ns1');
    assert.deepEqual(v.spec.labels, { role: 'worker' });
    assert.equal(v.spec.vcpu, 2);
    assert.equal(v.spec.memoryMb, 512);
    assert.equal(v.spec.kernel.image, 'docker.io/library/kernel:5.10');
    assert.equal(v.spec.rootVolume?.id, 'root');
    assert.equal(v.spec.provider, 'qemu');
    assert.equal(v.spec.allowGuestAgent, false);
  });
});

describe('validateCreate: defaults (COMPAT §2.3)', () => {
  it('empty namespace becomes default', () => {
    assert.equal(expectValid(base({ namespace: '' })).namespace, 'default');
  });
  it('vcpu 0 becomes 2', () => {
    assert.equal(expectValid(base({ vcpu: 0 })).spec.vcpu, 2);
  });
  it('memory 0 becomes 1024', () => {
    assert.equal(expectValid(base({ memoryMb: 0 })).spec.memoryMb, 1024);
  });
  it('empty provider becomes the registry default', () => {
    assert.equal(expectValid(base({ provider: '' })).spec.provider, 'qemu');
    const fcDefault = lookup([stubProvider('qemu', ALL_CAPS), stubProvider('firecracker', ALL_CAPS)], 'firecracker');
    assert.equal(expectValid(base({ provider: '' }), DEFAULT_LIMITS, fcDefault).spec.provider, 'firecracker');
  });
  it('a kernel without filename stays without one (provider default applies later)', () => {
    assert.equal(expectValid(base()).spec.kernel.filename, undefined);
  });
});

describe('validateCreate: id and namespace', () => {
  it('id is required', () => {
    expectInvalid(base({ name: '' }), ['id: is required']);
  });
  for (const bad of ['-x', 'a/b', 'a b', 'x'.repeat(64), '.hidden', '..']) {
    it(`rejects id ${JSON.stringify(bad)}`, () => {
      expectInvalid(base({ name: bad }), ['id:', '1-63 characters']);
    });
    it(`rejects namespace ${JSON.stringify(bad)}`, () => {
      expectInvalid(base({ namespace: bad }), ['namespace:', '1-63 characters']);
    });
  }
  for (const good of ['x'.repeat(63), 'a.b_c-1', 'A', '0abc']) {
    it(`accepts id and namespace ${JSON.stringify(good)}`, () => {
      const v = expectValid(base({ name: good, namespace: good }));
      assert.equal(v.name, good);
      assert.equal(v.namespace, good);
    });
  }
});

describe('validateCreate: vcpu and memory', () => {
  it('vcpu 1 and 64 are accepted', () => {
    expectValid(base({ vcpu: 1 }));
    expectValid(base({ vcpu: 64 }));
  });
  it('vcpu 65 is rejected', () => {
    expectInvalid(base({ vcpu: 65 }), ['vcpu:', 'between 1 and 64', '65']);
  });
  it('vcpu -1 is rejected', () => {
    expectInvalid(base({ vcpu: -1 }), ['vcpu:', 'between 1 and 64', '-1']);
  });
  it('fractional vcpu is rejected', () => {
    expectInvalid(base({ vcpu: 1.5 }), ['vcpu:']);
  });
  it('memory 128 and 32768 are accepted with the default limits', () => {
    expectValid(base({ memoryMb: 128 }));
    expectValid(base({ memoryMb: 32768 }));
  });
  it('memory 127 is rejected with the default limits (min 128)', () => {
    expectInvalid(base({ memoryMb: 127 }), ['memory_in_mb:', 'between 128 and 32768', '127']);
  });
  it('memory 32769 is rejected', () => {
    expectInvalid(base({ memoryMb: 32769 }), ['memory_in_mb:', '32769']);
  });
  it('limits are parameters: custom limits are honoured', () => {
    const limits: ValidationLimits = { minVcpu: 2, maxVcpu: 4, minMemoryMb: 1024, maxMemoryMb: 2048, maxMetadataBytes: 1024 };
    expectInvalid(base({ memoryMb: 512 }), ['memory_in_mb:', 'between 1024 and 2048', '512'], limits);
    expectInvalid(base({ memoryMb: 4096 }), ['memory_in_mb:', 'between 1024 and 2048'], limits);
    expectInvalid(base({ vcpu: 1, memoryMb: 1024 }), ['vcpu:', 'between 2 and 4'], limits);
    expectInvalid(base({ vcpu: 8, memoryMb: 1024 }), ['vcpu:', 'between 2 and 4'], limits);
    expectValid(base({ vcpu: 4, memoryMb: 2048 }), limits);
    // Defaults are applied before the limits are checked.
    const v = expectValid(base({ vcpu: 0, memoryMb: 0 }), limits);
    assert.equal(v.spec.vcpu, 2);
    assert.equal(v.spec.memoryMb, 1024);
  });
});

describe('validateCreate: interfaces', () => {
  it('at least one interface is required', () => {
    expectInvalid(base({ interfaces: [] }), ['interfaces:', 'at least one network interface']);
  });
  for (const bad of ['Eth0', '0eth', 'eth-0', '', 'eth 0']) {
    it(`rejects device_id ${JSON.stringify(bad)}`, () => {
      expectInvalid(base({ interfaces: [{ deviceId: bad, type: 'macvtap' }] }), ['interfaces[0].device_id', 'must match ^[a-z][a-z0-9_]*$']);
    });
  }
  for (const good of ['eth0', 'net_1', 'a']) {
    it(`accepts device_id ${JSON.stringify(good)}`, () => {
      expectValid(base({ interfaces: [{ deviceId: good, type: 'macvtap' }] }));
    });
  }
  it('device_id must be unique', () => {
    expectInvalid(
      base({
        interfaces: [
          { deviceId: 'eth0', type: 'macvtap' },
          { deviceId: 'eth1', type: 'tap' },
          { deviceId: 'eth0', type: 'tap' },
        ],
      }),
      ['interfaces[2].device_id', '"eth0"', 'used by another interface'],
    );
  });
  for (const [mac, words] of [
    ['not-a-mac', 'is not a MAC address'],
    ['02:00:00:00:00', 'is not a MAC address'],
    ['02:00:00:00:00:0g', 'is not a MAC address'],
    ['02:00-00:00:00:01', 'is not a MAC address'],
    ['01:00:5e:00:00:01', 'multicast'],
    ['ff:ff:ff:ff:ff:ff', 'multicast'],
    ['00:00:00:00:00:00', 'all-zero'],
    ['00-00-00-00-00-00', 'all-zero'],
  ] as const) {
    it(`rejects guest_mac ${mac} (${words})`, () => {
      expectInvalid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', guestMac: mac }] }), ['interfaces[0].guest_mac', mac, words]);
    });
  }
  it('accepts 02-AA-... and normalises it to lowercase colons in the output spec', () => {
    const v = expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', guestMac: '02-AA-BB-CC-DD-EE' }] }));
    assert.equal(v.spec.interfaces[0]?.guestMac, '02:aa:bb:cc:dd:ee');
  });
  it('leaves an interface without guest_mac without one', () => {
    const v = expectValid(base());
    assert.equal(v.spec.interfaces[0]?.guestMac, undefined);
  });
  it('accepts static IPv4 and IPv6 CIDR addresses', () => {
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '192.168.1.10/24', nameservers: [] } }] }));
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: 'fd00::10/64', nameservers: [] } }] }));
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '10.0.0.1/32', nameservers: [] } }] }));
  });
  for (const bad of ['192.168.1.10', '192.168.1.10/33', 'fd00::10/129', 'nonsense/24', '192.168.1.10/', '192.168.1.10/abc']) {
    it(`rejects static address ${JSON.stringify(bad)}`, () => {
      expectInvalid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: bad, nameservers: [] } }] }), [
        'interfaces[0].address.address',
        `"${bad}"`,
        'is not a CIDR address',
      ]);
    });
  }
  for (const gw of ['192.168.1.1', '192.168.1.1/24', 'fd00::1', 'fd00::1/64']) {
    it(`accepts gateway ${gw}`, () => {
      expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '192.168.1.10/24', gateway: gw, nameservers: [] } }] }));
    });
  }
  it('rejects a garbage gateway', () => {
    expectInvalid(
      base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '192.168.1.10/24', gateway: 'gateway.local', nameservers: [] } }] }),
      ['interfaces[0].address.gateway', '"gateway.local"', 'is not an IP address'],
    );
  });
  it('nameservers must be IPs (no prefix, no names)', () => {
    expectValid(
      base({ interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '192.168.1.10/24', nameservers: ['1.1.1.1', '2606:4700::1111'] } }] }),
    );
    const message = expectInvalid(
      base({
        interfaces: [{ deviceId: 'eth0', type: 'macvtap', address: { address: '192.168.1.10/24', nameservers: ['1.1.1.1', 'dns.google', '8.8.8.8/32'] } }],
      }),
      ['interfaces[0].address.nameservers[1]', '"dns.google"', 'interfaces[0].address.nameservers[2]', '"8.8.8.8/32"', 'is not an IP address'],
    );
    assert.ok(!message.includes('nameservers[0]'));
  });
  it('rejects an invalid overrides.bridge_name', () => {
    expectInvalid(base({ interfaces: [{ deviceId: 'eth0', type: 'tap', bridgeName: 'a-very-long-bridge-name' }] }), ['interfaces[0].overrides.bridge_name']);
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'tap', bridgeName: 'br0' }] }));
  });
  // Found by the API fuzzer: these were stored, then refused by the network adapter at every reconcile.
  for (const bad of ['.', '..', 'br:0', 'br\u0000', 'br\u007f', 'é'.repeat(8), 'b'.repeat(16)]) {
    it(`rejects overrides.bridge_name ${JSON.stringify(bad)} as the kernel would (dev_valid_name, in bytes)`, () => {
      expectInvalid(base({ interfaces: [{ deviceId: 'eth0', type: 'tap', bridgeName: bad }] }), [
        'interfaces[0].overrides.bridge_name:',
        "is not a valid network device name (1-15 bytes, not '.' or '..', no whitespace, control characters, '/' or ':')",
      ]);
    });
  }
  it('accepts a 15-byte overrides.bridge_name', () => {
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'tap', bridgeName: 'b'.repeat(15) }] }));
    expectValid(base({ interfaces: [{ deviceId: 'eth0', type: 'tap', bridgeName: 'é'.repeat(7) }] }));
  });
  it('rejects an interface type it does not know', () => {
    // What convert.ts produces for an unknown enum number.
    const input = base({ interfaces: [{ deviceId: 'eth0', type: 'unknown(7)' as unknown as 'tap' }] });
    expectInvalid(input, ['interfaces[0].type', 'unknown(7)']);
  });
});

describe('validateCreate: kernel and initrd', () => {
  it('kernel is required', () => {
    const { kernel: _omit, ...rest } = base();
    expectInvalid(rest, ['kernel: is required']);
  });
  it('kernel.image is required', () => {
    expectInvalid(base({ kernel: { image: '', cmdline: {}, addNetworkConfig: false } }), ['kernel.image: is required']);
  });
  for (const bad of ['UPPER/case', 'a b', '://x@']) {
    it(`rejects kernel.image ${JSON.stringify(bad)}`, () => {
      expectInvalid(base({ kernel: { image: bad, cmdline: {}, addNetworkConfig: false } }), ['kernel.image:', `"${bad}"`, 'is not a valid image reference']);
    });
  }
  for (const good of ['docker.io/library/alpine:3.14', `localhost:5000/k@sha256:${'a'.repeat(64)}`, 'ubuntu']) {
    it(`accepts kernel.image ${JSON.stringify(good)}`, () => {
      const v = expectValid(base({ kernel: { image: good, cmdline: {}, addNetworkConfig: false } }));
      assert.equal(v.spec.kernel.image, good);
    });
  }
  it('rejects kernel.filename with ..', () => {
    expectInvalid(base({ kernel: { image: 'ubuntu', filename: '../etc/shadow', cmdline: {}, addNetworkConfig: false } }), [
      'kernel.filename:',
      "without '.' or '..'",
    ]);
    expectInvalid(base({ kernel: { image: 'ubuntu', filename: 'boot/../../x', cmdline: {}, addNetworkConfig: false } }), ['kernel.filename:']);
  });
  it('accepts a normal kernel.filename', () => {
    const v = expectValid(base({ kernel: { image: 'ubuntu', filename: 'boot/vmlinux', cmdline: {}, addNetworkConfig: false } }));
    assert.equal(v.spec.kernel.filename, 'boot/vmlinux');
  });
  it('checks initrd.image and initrd.filename', () => {
    expectInvalid(base({ initrd: { image: 'Bad Image' } }), ['initrd.image:', 'is not a valid image reference']);
    expectInvalid(base({ initrd: { image: 'ubuntu', filename: '../x' } }), ['initrd.filename:']);
  });
});

describe('validateCreate: volumes', () => {
  it('a root volume or an initrd is required', () => {
    const { rootVolume: _omit, ...rest } = base();
    expectInvalid(rest, ['root_volume:', 'a root volume or an initrd is required']);
  });
  it('an initrd alone is fine', () => {
    const { rootVolume: _omit, ...rest } = base();
    const v = expectValid({ ...rest, initrd: { image: 'ghcr.io/org/initrd:1', filename: 'initrd.img' } });
    assert.equal(v.spec.rootVolume, undefined);
    assert.deepEqual(v.spec.initrd, { image: 'ghcr.io/org/initrd:1', filename: 'initrd.img' });
  });
  it('a volume without a source is rejected', () => {
    expectInvalid(base({ rootVolume: { id: 'root', readOnly: false, source: {} } }), [
      'root_volume.source',
      'exactly one of container_source or virtiofs_source',
    ]);
  });
  it('a volume with both sources is rejected', () => {
    expectInvalid(base({ additionalVolumes: [{ id: 'data', readOnly: false, source: { containerImage: 'ubuntu', virtiofsPath: '/srv/data' } }] }), [
      'additional_volumes[0].source',
      'exactly one of container_source or virtiofs_source',
    ]);
  });
  it('the root volume cannot be virtiofs', () => {
    expectInvalid(base({ rootVolume: { id: 'root', readOnly: false, source: { virtiofsPath: '/srv/root' } } }), [
      'root_volume.source',
      'cannot be a virtiofs volume',
    ]);
  });
  it('one virtiofs additional volume is fine, two are not', () => {
    const one = { id: 'share1', readOnly: false, source: { virtiofsPath: '/srv/a' } };
    const two = { id: 'share2', readOnly: false, source: { virtiofsPath: '/srv/b' } };
    expectValid(base({ additionalVolumes: [one] }));
    expectInvalid(base({ additionalVolumes: [one, two] }), ['additional_volumes:', 'at most one virtiofs volume', 'got 2']);
  });
  it('virtiofs sources must be absolute host paths', () => {
    expectInvalid(base({ additionalVolumes: [{ id: 'share', readOnly: false, source: { virtiofsPath: 'srv/a' } }] }), [
      'additional_volumes[0].source.virtiofs_source',
      'absolute',
    ]);
  });
  it('volume container sources must be image references', () => {
    expectInvalid(base({ additionalVolumes: [{ id: 'data', readOnly: false, source: { containerImage: 'NOT VALID' } }] }), [
      'additional_volumes[0].source.container_source',
      'is not a valid image reference',
    ]);
  });
  it('volume ids must be unique across root and additional volumes', () => {
    expectInvalid(base({ additionalVolumes: [{ id: 'root', readOnly: true, source: { containerImage: 'ubuntu' } }] }), [
      'additional_volumes[0].id',
      '"root"',
      'used by another volume',
    ]);
    expectInvalid(
      base({
        additionalVolumes: [
          { id: 'data', readOnly: true, source: { containerImage: 'ubuntu' } },
          { id: 'data', readOnly: true, source: { containerImage: 'ubuntu' } },
        ],
      }),
      ['additional_volumes[1].id', '"data"'],
    );
  });
  it('volume id is required', () => {
    expectInvalid(base({ rootVolume: { id: '', readOnly: false, source: { containerImage: 'ubuntu' } } }), ['root_volume.id: is required']);
  });
  it('mount_point must be absolute', () => {
    expectInvalid(base({ additionalVolumes: [{ id: 'data', readOnly: true, mountPoint: 'mnt/data', source: { containerImage: 'ubuntu' } }] }), [
      'additional_volumes[0].mount_point',
      'absolute',
    ]);
    expectValid(base({ additionalVolumes: [{ id: 'data', readOnly: true, mountPoint: '/mnt/data', source: { containerImage: 'ubuntu' } }] }));
  });
});

describe('validateCreate: provider', () => {
  it('an unknown provider is rejected and the message lists the known names', () => {
    expectInvalid(base({ provider: 'vmware' }), ['provider:', '"vmware"', 'not a known provider', 'qemu', 'firecracker', 'bare']);
  });
  it('macvtap on a provider without it', () => {
    expectInvalid(base({ provider: 'firecracker' }), ['interfaces:', 'macvtap network interfaces not supported by the microvm provider firecracker']);
  });
  it('macvtap on the default provider when it lacks it', () => {
    const fc = lookup([stubProvider('firecracker', ['tap'])], 'firecracker');
    expectInvalid(base({ provider: '' }), ['macvtap network interfaces not supported by the microvm provider firecracker'], DEFAULT_LIMITS, fc);
  });
  it('tap on a provider without it', () => {
    expectInvalid(base({ provider: 'bare', interfaces: [{ deviceId: 'eth0', type: 'tap' }] }), [
      'interfaces:',
      'tap network interfaces not supported by the microvm provider bare',
    ]);
    expectValid(base({ provider: 'firecracker', interfaces: [{ deviceId: 'eth1', type: 'tap' }] }));
  });
  it('virtiofs on a provider without it', () => {
    expectInvalid(
      base({
        provider: 'firecracker',
        interfaces: [{ deviceId: 'eth0', type: 'tap' }],
        additionalVolumes: [{ id: 'share', readOnly: false, source: { virtiofsPath: '/srv/share' } }],
      }),
      ['additional_volumes:', 'virtiofs not supported by the microvm provider firecracker'],
    );
  });
  it('allow_guest_agent on a provider without vsock', () => {
    expectInvalid(base({ provider: 'bare', interfaces: [{ deviceId: 'eth0', type: 'tap' }], allowGuestAgent: true }), [
      'allow_guest_agent:',
      'guest agent (vsock) not supported by the microvm provider bare',
    ]);
    const v = expectValid(base({ provider: 'firecracker', interfaces: [{ deviceId: 'eth1', type: 'tap' }], allowGuestAgent: true }));
    assert.equal(v.spec.allowGuestAgent, true);
  });
});

describe('validateCreate: reporting', () => {
  it('reports every problem in one message', () => {
    const message = expectInvalid(
      base({
        name: '',
        namespace: 'a/b',
        vcpu: 65,
        memoryMb: 1,
        interfaces: [{ deviceId: 'Eth0', type: 'macvtap', guestMac: '01:00:00:00:00:01' }],
        provider: 'nope',
      }),
      ['id: is required', 'namespace:', 'vcpu:', 'memory_in_mb:', 'interfaces[0].device_id', 'interfaces[0].guest_mac', 'provider:'],
    );
    assert.match(message, /^invalid microvm spec: /);
    // Problems are `field: text` joined by '; ' (a text may itself contain '; ').
    const fields = [...message.matchAll(/(?:^invalid microvm spec: |; )([a-z_.[\]0-9]+): /g)].map((m) => m[1]);
    assert.deepEqual(fields, ['id', 'namespace', 'vcpu', 'memory_in_mb', 'interfaces[0].device_id', 'interfaces[0].guest_mac', 'provider'], message);
  });
});

describe('checkUnicastMac', () => {
  it('accepts unicast MACs in both notations and any case', () => {
    assert.equal(checkUnicastMac('02:00:00:00:00:01'), undefined);
    assert.equal(checkUnicastMac('02-AA-bb-CC-dd-EE'), undefined);
    assert.equal(checkUnicastMac('aa:ff:00:00:00:01'), undefined);
  });
  it('explains what is wrong', () => {
    assert.match(checkUnicastMac('xx') ?? '', /not a MAC address/);
    assert.match(checkUnicastMac('03:00:00:00:00:01') ?? '', /multicast/);
    assert.match(checkUnicastMac('00:00:00:00:00:00') ?? '', /all-zero/);
    assert.match(checkUnicastMac('0200.0000.0001') ?? '', /not a MAC address/);
  });
  // Found by the API fuzzer: a 1 MB guest_mac filled the whole 2 KiB error message.
  it('echoes at most 64 characters of what it was given', () => {
    const problem = checkUnicastMac('m'.repeat(100_000)) ?? '';
    assert.equal(problem, `"${'m'.repeat(64)}"... (100000 bytes) is not a MAC address such as 02:00:00:00:00:01`);
  });
});

describe('isCidr', () => {
  it('accepts v4 and v6 CIDRs within the prefix range', () => {
    for (const good of ['10.0.0.1/0', '10.0.0.1/8', '10.0.0.1/32', '::/0', 'fd00::1/64', 'fd00::1/128']) assert.equal(isCidr(good), true, good);
  });
  it('rejects missing or out-of-range prefixes and non-addresses', () => {
    for (const bad of [
      '10.0.0.1',
      '10.0.0.1/33',
      'fd00::1/129',
      '10.0.0.1/',
      '10.0.0.1/-1',
      '10.0.0.1/1.5',
      'host/24',
      '/24',
      '10.0.0.256/24',
      '10.0.0.1/24/1',
    ]) {
      assert.equal(isCidr(bad), false, bad);
    }
  });
});

describe('the metadata interface of a metadata-service provider', () => {
  const fcOnly = lookup([stubProvider('firecracker', ['tap', 'metadata-service', 'vsock'])], 'firecracker');
  const tapInput = (deviceId: string): CreateInput => base({ provider: '', interfaces: [{ deviceId, type: 'tap' }] });

  it('is prepended as eth0: an unbridged tap with the MMDS MAC and 169.254.0.1/16', () => {
    const result = validateCreate(tapInput('eth1'), DEFAULT_LIMITS, fcOnly);
    assert.ok(result.ok, result.ok ? '' : result.error.message);
    assert.deepEqual(
      result.value.spec.interfaces.map((i) => [i.deviceId, i.type, i.guestMac, i.address?.address, i.allowMetadata === true]),
      [
        ['eth0', 'tap', 'aa:ff:00:00:00:01', '169.254.0.1/16', true],
        ['eth1', 'tap', undefined, undefined, false],
      ],
    );
  });

  it('reserves eth0 for itself', () => {
    const result = validateCreate(tapInput('eth0'), DEFAULT_LIMITS, fcOnly);
    assert.ok(!result.ok);
    assert.match(result.error.message, /interfaces\[0\]\.device_id: eth0 is reserved for the metadata interface of the microvm provider firecracker/);
  });
});

// Issue 8 finding 1 and 4: what a hostile client sent, and what must now be refused by field.
describe('validateCreate: identifier policy (strings that become paths, devices, files, arguments)', () => {
  const volume = (id: string): CreateInput['additionalVolumes'][number] => ({ id, readOnly: false, source: { containerImage: 'ghcr.io/org/data:1' } });

  for (const id of [
    '../../../../../images/ext4/x',
    '../../../../../../../../anywhere/x',
    'a/b',
    '..',
    '.',
    '/etc/passwd',
    'x\u0000y',
    'a b',
    '',
    'é',
    'x'.repeat(64),
  ]) {
    it(`refuses volume id ${JSON.stringify(id.slice(0, 30))} for the root and additional volumes`, () => {
      expectInvalid(base({ rootVolume: { id, readOnly: false, source: { containerImage: 'ghcr.io/org/root:1' } } }), ['root_volume.id:']);
      expectInvalid(base({ additionalVolumes: [volume(id)] }), ['additional_volumes[0].id:']);
    });
  }

  it('accepts the ids clients use', () => {
    expectValid(base({ additionalVolumes: [volume('data'), volume('etcd-0'), volume('vol_1.img')] }));
  });

  it('refuses partition ids, metadata keys and label keys that are not identifiers', () => {
    expectInvalid(base({ rootVolume: { id: 'root', readOnly: false, partitionId: '../p', source: { containerImage: 'r:1' } } }), ['root_volume.partition_id:']);
    expectInvalid(base({ metadata: { '../user-data': 'eA==' } }), ['metadata: key "../user-data"']);
    expectInvalid(base({ labels: { 'a/b/c': 'x' } }), ['labels: key "a/b/c"']);
    expectValid(base({ labels: { 'cluster.x-k8s.io/cluster-name': 'c1', role: 'worker' }, metadata: { 'user-data': 'eA==', 'meta-data': 'eA==' } }));
  });

  it('refuses a device_id longer than an interface name (15) and a 10 kB one, echoing only its start', () => {
    expectInvalid(base({ interfaces: [{ deviceId: 'e'.repeat(16), type: 'tap' }] }), ['interfaces[0].device_id:', 'at most 15']);
    const message = expectInvalid(base({ interfaces: [{ deviceId: 'e'.repeat(10_000), type: 'tap' }] }), ['interfaces[0].device_id:', '(10000 bytes)']);
    assert.ok(message.length < 400, `the message repeats at most the start of the value (${message.length} chars)`);
  });

  it('refuses in-image paths with empty, . or .. components and control characters', () => {
    for (const filename of ['boot//vmlinux', 'boot/./vmlinux', '../x', 'boot/\u0000', 'a'.repeat(300)])
      expectInvalid(base({ kernel: { image: 'k:1', filename, cmdline: {}, addNetworkConfig: false } }), ['kernel.filename:']);
    expectValid(base({ kernel: { image: 'k:1', filename: '/boot/vmlinuz-6.1', cmdline: {}, addNetworkConfig: false } }));
  });

  it('refuses mount points and virtiofs paths with control characters', () => {
    expectInvalid(base({ additionalVolumes: [{ ...volume('d'), mountPoint: '/mnt\nx' }] }), ['additional_volumes[0].mount_point:', 'control characters']);
  });
});

describe('validateCreate: request size limits', () => {
  it('refuses 1000 interfaces without checking each', () => {
    const interfaces = Array.from({ length: 1000 }, (_, i) => ({ deviceId: `eth${i}`, type: 'tap' as const }));
    const message = expectInvalid(base({ interfaces }), ['interfaces: at most 16 network interfaces are allowed, got 1000']);
    assert.ok(message.length < 300);
  });

  it('refuses 10 000 labels, and long or control-character label values', () => {
    const labels = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`l${i}`, 'v']));
    expectInvalid(base({ labels }), ['labels: at most 64 labels are allowed, got 10000']);
    expectInvalid(base({ labels: { a: 'v'.repeat(257) } }), ['labels[a]:']);
  });

  it('refuses 300 volumes', () => {
    const additionalVolumes = Array.from({ length: 300 }, (_, i) => ({ id: `v${i}`, readOnly: false, source: { containerImage: 'd:1' } }));
    expectInvalid(base({ additionalVolumes }), ['additional_volumes: at most 16 volumes are allowed, got 300']);
  });

  it('refuses size_in_mb 2147483647 (over 1 TiB)', () => {
    expectInvalid(base({ rootVolume: { id: 'root', readOnly: false, sizeMb: 2147483647, source: { containerImage: 'r:1' } } }), [
      'root_volume.size_in_mb: must be between 0 and 1048576',
    ]);
  });

  it('refuses a 100 kB kernel command line, and keys or values that would split it', () => {
    expectInvalid(base({ kernel: { image: 'k:1', cmdline: { big: 'x'.repeat(100_000) }, addNetworkConfig: false } }), ['kernel.cmdline: renders to about']);
    expectInvalid(base({ kernel: { image: 'k:1', cmdline: { 'a b': '1' }, addNetworkConfig: false } }), ['kernel.cmdline: key "a b"']);
    expectInvalid(base({ kernel: { image: 'k:1', cmdline: { init: '/bin/sh" rw' }, addNetworkConfig: false } }), ['kernel.cmdline[init]:']);
    expectValid(
      base({ kernel: { image: 'k:1', cmdline: { 'net.ifnames': '0', ds: 'nocloud-net;s=http://169.254.169.254/latest/' }, addNetworkConfig: false } }),
    );
  });

  it('refuses metadata over maximum-metadata-kb (default 1 MiB), accepts a kubeadm-sized user-data', () => {
    expectInvalid(base({ metadata: { 'user-data': 'x'.repeat(5 * 1024 * 1024) } }), [
      'metadata: is 5242889 bytes, more than the 1048576',
      'maximum-metadata-kb',
    ]);
    expectValid(base({ metadata: { 'user-data': 'x'.repeat(64 * 1024) } }));
    expectInvalid(base({ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'eA=='])) }), ['metadata: at most 16 keys']);
  });

  it('refuses an image reference over 1024 bytes', () => {
    expectInvalid(base({ kernel: { image: `r/${'a'.repeat(2000)}`, cmdline: {}, addNetworkConfig: false } }), ['kernel.image:', 'longer than 1024 bytes']);
  });
});
