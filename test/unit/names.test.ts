import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { deviceAlias, generateGuestMac, newHostDeviceName, parseDeviceAlias } from '../../src/core/names.js';

// Enough samples that a bit that is merely random (not forced) would show both values.
const SAMPLES = 2000;

describe('newHostDeviceName', () => {
  it('makes fltap + 7 lowercase hex for taps', () => {
    for (let i = 0; i < SAMPLES; i++) {
      const name = newHostDeviceName('tap');
      assert.match(name, /^fltap[0-9a-f]{7}$/);
      assert.ok(Buffer.byteLength(name) <= 15, name);
    }
  });

  it('makes flvtap + 7 lowercase hex for macvtaps', () => {
    for (let i = 0; i < SAMPLES; i++) {
      const name = newHostDeviceName('macvtap');
      assert.match(name, /^flvtap[0-9a-f]{7}$/);
      assert.ok(Buffer.byteLength(name) <= 15, name);
    }
  });

  it('is random', () => {
    const names = new Set(Array.from({ length: SAMPLES }, () => newHostDeviceName('tap')));
    // 28 random bits: a handful of collisions among 2000 would already be suspicious.
    assert.ok(names.size >= SAMPLES - 2, `only ${names.size} distinct names`);
    // Every hex digit shows up in every suffix position, so the whole suffix is random.
    for (let pos = 5; pos < 12; pos++) {
      const seen = new Set([...names].map((n) => n[pos]));
      assert.equal(seen.size, 16, `position ${pos} only had ${[...seen].join('')}`);
    }
  });
});

describe('generateGuestMac', () => {
  it('is lowercase colon form, locally administered and unicast', () => {
    for (let i = 0; i < SAMPLES; i++) {
      const mac = generateGuestMac();
      assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const first = parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 0x02, 0x02, `${mac} is not locally administered`);
      assert.equal(first & 0x01, 0, `${mac} is multicast`);
    }
  });

  it('keeps the other bits random', () => {
    const macs = Array.from({ length: SAMPLES }, () => generateGuestMac());
    assert.equal(new Set(macs).size, SAMPLES);
    // The six free bits of the first octet take both values.
    const firstOctets = macs.map((m) => parseInt(m.slice(0, 2), 16));
    for (let bit = 2; bit < 8; bit++) {
      const mask = 1 << bit;
      assert.ok(
        firstOctets.some((o) => (o & mask) !== 0),
        `bit ${bit} never set`,
      );
      assert.ok(
        firstOctets.some((o) => (o & mask) === 0),
        `bit ${bit} always set`,
      );
    }
    // And the last octet covers (nearly) all 256 values.
    assert.ok(new Set(macs.map((m) => m.slice(-2))).size > 240);
  });
});

describe('deviceAlias / parseDeviceAlias', () => {
  const uid = '01JDZQ4X8V3KJ2M9R7T5W1Y6BC';

  const owner = 'a1b2c3d4e5f6';

  it('formats flintlock:<owner>:<namespace>/<name>/<uid>', () => {
    assert.equal(deviceAlias(owner, uid, 'default', 'vm-1'), `flintlock:${owner}:default/vm-1/${uid}`);
  });

  it('parses the older ownerless form with no owner', () => {
    assert.deepEqual(parseDeviceAlias(`flintlock:default/vm-1/${uid}`), { namespace: 'default', name: 'vm-1', uid });
  });

  it('round-trips', () => {
    for (const [namespace, name] of [
      ['default', 'vm-1'],
      ['ns.with.dots', 'Name_With-Mixed.9'],
      ['a', 'b'],
      ['x'.repeat(63), 'y'.repeat(63)],
    ] as const) {
      const alias = deviceAlias(owner, uid, namespace, name);
      assert.ok(Buffer.byteLength(alias) <= 255, 'fits IFALIASZ');
      assert.deepEqual(parseDeviceAlias(alias), { owner, namespace, name, uid });
    }
  });

  it('rejects aliases it did not make', () => {
    for (const alias of [
      '',
      'flintlock:',
      'flintlock:default/vm-1',
      `flintlock:default/vm-1/${uid}/extra`,
      `flintlock:/vm-1/${uid}`,
      `flintlock:default//${uid}`,
      'flintlock:default/vm-1/',
      `flintlock:default/vm 1/${uid}`,
      `flintlock:-bad/vm-1/${uid}`,
      `Flintlock:default/vm-1/${uid}`,
      `other:default/vm-1/${uid}`,
      ` flintlock:default/vm-1/${uid}`,
      `flintlock:default/vm-1/${uid}\n`,
      `flintlock:ABCDEF012345:default/vm-1/${uid}`,
      `flintlock:abc:default/vm-1/${uid}`,
      `flintlock:${owner}:${owner}:default/vm-1/${uid}`,
      'libvirt-vnet0',
      'uplink to rack 4',
    ]) {
      assert.equal(parseDeviceAlias(alias), undefined, JSON.stringify(alias));
    }
  });

  it('refuses parts that would make the alias ambiguous', () => {
    assert.throws(() => deviceAlias(owner, uid, 'a/b', 'vm'), /namespace "a\/b"/);
    assert.throws(() => deviceAlias(owner, uid, 'default', ''), /name ""/);
    assert.throws(() => deviceAlias(owner, '', 'default', 'vm'), /uid ""/);
    assert.throws(() => deviceAlias(owner, uid, 'default', 'vm 1'), /name "vm 1"/);
    assert.throws(() => deviceAlias('x:y', uid, 'default', 'vm'), /owner "x:y"/);
  });
});
