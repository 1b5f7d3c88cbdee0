// Real-kernel tests for Iproute2NetworkService. Everything happens inside a private network
// namespace created here and deleted in after(): the host's own interfaces are never touched.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { Iproute2NetworkService } from '../../src/adapters/network/iproute2.js';
import { NETNS, describeWith } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';

const execFileAsync = promisify(execFile);

// Unique per run: other processes on this machine create their own namespaces concurrently.
const NS = `fltest-${process.pid}-${randomBytes(3).toString('hex')}`;
const PARENT_MTU = 1400;
const PARENT_TXQLEN = 777;
let nsDeleted = false;

async function ip(...args: string[]): Promise<string> {
  return (await execFileAsync('ip', args, { encoding: 'utf8' })).stdout;
}

/** `ip -n NS ...` */
async function nsip(...args: string[]): Promise<string> {
  return ip('-n', NS, ...args);
}

describeWith('Iproute2NetworkService (real kernel, private netns)', [NETNS], {}, () => {
  const net = new Iproute2NetworkService({ netns: NS });

  before(async () => {
    // Deleted when the file's process ends, however it ends (deleting it removes its devices).
    atExit(() => {
      if (!nsDeleted) execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
    });
    await ip('netns', 'add', NS);
    await nsip('link', 'set', 'lo', 'up');
    await nsip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    // Non-default values, so copying them to the macvtap is observable.
    await nsip('link', 'set', 'eth0', 'mtu', String(PARENT_MTU), 'txqueuelen', String(PARENT_TXQLEN), 'up');
    await nsip('link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1p');
    await nsip('link', 'set', 'eth1', 'up');
    await nsip('link', 'add', 'br0', 'type', 'bridge');
    await nsip('link', 'set', 'br0', 'up');
  });

  after(async () => {
    // Deleting the namespace removes every device in it. Tolerate failures: cleanup must not mask
    // the test results, and a leftover is reported by `ip netns list`.
    try {
      await ip('netns', 'del', NS);
      nsDeleted = true;
    } catch (err) {
      console.error(`cleanup: ip netns del ${NS} failed: ${String(err)}`);
    }
  });

  describe('macvtap', () => {
    const MAC = '02:12:34:56:78:9a';
    const ALIAS = 'flintlock:default/vm-1/01JDZQ4X8V3KJ2M9R7T5W1Y6BC';

    it('creates a bridge-mode macvtap on the parent with its MTU/txqlen, the MAC, alias, up', async () => {
      const info = await net.ensureMacvtap({
        name: 'flvtap0000001',
        parent: 'eth0',
        mac: MAC.toUpperCase(),
        alias: ALIAS,
      });
      assert.equal(info.name, 'flvtap0000001');
      assert.equal(info.kind, 'macvtap');
      assert.equal(info.macvtapMode, 'bridge');
      assert.equal(info.parent, 'eth0');
      assert.equal(info.mtu, PARENT_MTU);
      assert.equal(info.txqlen, PARENT_TXQLEN);
      assert.equal(info.mac, MAC);
      assert.equal(info.up, true);
      assert.equal(info.alias, ALIAS);
      assert.ok(info.ifindex > 0);
      // What the service returned is what the kernel has.
      assert.deepEqual(await net.getLink('flvtap0000001'), info);
      const raw = await nsip('-d', 'link', 'show', 'dev', 'flvtap0000001');
      assert.match(raw, /macvtap mode bridge/);
      assert.match(raw, /flvtap0000001@eth0/);
    });

    it('is a no-op the second time', async () => {
      const first = await net.getLink('flvtap0000001');
      const again = await net.ensureMacvtap({ name: 'flvtap0000001', parent: 'eth0', mac: MAC, alias: ALIAS });
      assert.deepEqual(again, first);
    });

    it('corrects alias, MAC, up state and mode that drifted', async () => {
      const before = await net.getLink('flvtap0000001');
      await nsip('link', 'set', 'dev', 'flvtap0000001', 'down', 'alias', 'someone else', 'address', '02:00:00:00:00:01');
      await nsip('link', 'set', 'dev', 'flvtap0000001', 'type', 'macvtap', 'mode', 'vepa');
      const fixed = await net.ensureMacvtap({ name: 'flvtap0000001', parent: 'eth0', mac: MAC, alias: ALIAS });
      assert.equal(fixed.ifindex, before?.ifindex, 'corrected in place, not recreated');
      assert.equal(fixed.up, true);
      assert.equal(fixed.alias, ALIAS);
      assert.equal(fixed.mac, MAC);
      assert.equal(fixed.macvtapMode, 'bridge');
    });

    it('lets the kernel pick a MAC when none is asked for', async () => {
      const info = await net.ensureMacvtap({ name: 'flvtap0000002', parent: 'eth0', alias: 'x' });
      assert.match(info.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      assert.notEqual(info.mac, MAC);
      await net.deleteLink('flvtap0000002');
    });

    it('survives two concurrent ensures of the same device', async () => {
      const req = { name: 'flvtap0000003', parent: 'eth0', mac: '02:00:00:00:00:33', alias: 'race' };
      const [a, b] = await Promise.all([net.ensureMacvtap(req), net.ensureMacvtap(req)]);
      assert.equal(a.ifindex, b.ifindex);
      assert.equal(b.alias, 'race');
      await net.deleteLink('flvtap0000003');
    });

    it('reads the tap char device numbers from sysfs inside the namespace', async () => {
      const info = await net.getLink('flvtap0000001');
      assert.ok(info);
      const expected = (await ip('netns', 'exec', NS, 'cat', `/sys/class/net/flvtap0000001/macvtap/tap${info.ifindex}/dev`)).trim();
      const numbers = await net.macvtapDeviceNumbers('flvtap0000001');
      assert.equal(`${numbers.major}:${numbers.minor}`, expected);
      assert.notEqual(numbers.major, 0);
    });

    it('names a missing parent', async () => {
      await assert.rejects(net.ensureMacvtap({ name: 'flvtap0000004', parent: 'nosuch0', alias: 'x' }), (err: Error) => {
        assert.equal(err.message, 'parent network device "nosuch0" does not exist');
        return true;
      });
      assert.equal(await net.getLink('flvtap0000004'), undefined);
    });

    it('refuses a foreign link with the wanted name and leaves it alone', async () => {
      await nsip('link', 'add', 'foreign0', 'type', 'bridge');
      const before = await net.getLink('foreign0');
      await assert.rejects(
        net.ensureMacvtap({ name: 'foreign0', parent: 'eth0', alias: 'x' }),
        /"foreign0" already exists and is a bridge device, not a macvtap on "eth0"/,
      );
      assert.deepEqual(await net.getLink('foreign0'), before);
    });

    it('refuses a macvtap of the same name on another parent', async () => {
      await nsip('link', 'add', 'link', 'eth1', 'name', 'flvtap0000005', 'type', 'macvtap', 'mode', 'bridge');
      const before = await net.getLink('flvtap0000005');
      await assert.rejects(net.ensureMacvtap({ name: 'flvtap0000005', parent: 'eth0', alias: 'x' }), /is a macvtap on "eth1", not a macvtap on "eth0"/);
      assert.deepEqual(await net.getLink('flvtap0000005'), before);
    });

    it('says a tap is not a macvtap when asked for device numbers', async () => {
      await nsip('tuntap', 'add', 'dev', 'fltap000000x', 'mode', 'tap');
      await assert.rejects(net.macvtapDeviceNumbers('fltap000000x'), /"fltap000000x" is not a macvtap/);
      await assert.rejects(net.macvtapDeviceNumbers('nosuch0'), /"nosuch0" does not exist/);
    });
  });

  describe('tap', () => {
    const ALIAS = 'flintlock:default/vm-2/01JDZQ4X8V3KJ2M9R7T5W1Y6BD';

    it('creates a persistent tap on the bridge, up, with the alias', async () => {
      const info = await net.ensureTap({ name: 'fltap0000001', bridge: 'br0', alias: ALIAS });
      assert.equal(info.name, 'fltap0000001');
      assert.equal(info.kind, 'tun');
      assert.equal(info.master, 'br0');
      assert.equal(info.up, true);
      assert.equal(info.alias, ALIAS);
      assert.deepEqual(await net.getLink('fltap0000001'), info);
      const raw = await nsip('-d', 'link', 'show', 'dev', 'fltap0000001');
      assert.match(raw, /tun type tap .*persist on/);
    });

    it('is a no-op the second time', async () => {
      const first = await net.getLink('fltap0000001');
      assert.deepEqual(await net.ensureTap({ name: 'fltap0000001', bridge: 'br0', alias: ALIAS }), first);
    });

    it('re-attaches, re-aliases and brings up a tap that drifted', async () => {
      const before = await net.getLink('fltap0000001');
      await nsip('link', 'set', 'dev', 'fltap0000001', 'nomaster', 'down', 'alias', 'other');
      const fixed = await net.ensureTap({ name: 'fltap0000001', bridge: 'br0', alias: ALIAS });
      assert.equal(fixed.ifindex, before?.ifindex);
      assert.equal(fixed.master, 'br0');
      assert.equal(fixed.up, true);
      assert.equal(fixed.alias, ALIAS);
    });

    it('creates a tap owned by the VM uid when asked: only that uid (or root) may attach to it', async () => {
      await net.ensureTap({ name: 'fltap0000009', bridge: 'br0', alias: ALIAS, owner: 1_879_048_200 });
      assert.match(await nsip('-d', 'link', 'show', 'dev', 'fltap0000009'), /tun type tap .*user 1879048200/);
      await assert.rejects(net.ensureTap({ name: 'fltap0000010', bridge: 'br0', alias: ALIAS, owner: -1 }), /invalid tap owner uid -1/);
      await net.deleteLink('fltap0000009');
    });

    it('takes aliases that ip -batch cannot quote', async () => {
      // '#' starts a comment in ip's batch syntax: the service must fall back to separate calls.
      const alias = `it's a "#hash"`;
      const info = await net.ensureTap({ name: 'fltap0000002', bridge: 'br0', alias });
      assert.equal(info.alias, alias);
      assert.equal(info.master, 'br0');
      await net.deleteLink('fltap0000002');
    });

    it('takes device names that ip -batch cannot carry', async () => {
      // The kernel allows '#' and quotes in names; the batch syntax does not.
      const name = `t#'"1`;
      const info = await net.ensureTap({ name, bridge: 'br0', alias: 'odd' });
      assert.equal(info.name, name);
      assert.equal(info.master, 'br0');
      assert.deepEqual(await net.ensureTap({ name, bridge: 'br0', alias: 'odd' }), info);
      await net.deleteLink(name);
      assert.equal(await net.getLink(name), undefined);
    });

    it('survives two concurrent ensures of the same device', async () => {
      const req = { name: 'fltap0000003', bridge: 'br0', alias: 'race' };
      const [a, b] = await Promise.all([net.ensureTap(req), net.ensureTap(req)]);
      assert.equal(a.ifindex, b.ifindex);
      assert.equal(b.master, 'br0');
      await net.deleteLink('fltap0000003');
    });

    it('names a missing bridge', async () => {
      await assert.rejects(net.ensureTap({ name: 'fltap0000004', bridge: 'nobr0', alias: 'x' }), (err: Error) => {
        assert.equal(err.message, 'bridge "nobr0" does not exist');
        return true;
      });
      assert.equal(await net.getLink('fltap0000004'), undefined);
    });

    it('refuses a bridge that is not a bridge', async () => {
      await assert.rejects(net.ensureTap({ name: 'fltap0000004', bridge: 'eth0', alias: 'x' }), /"eth0" is a veth device, not a bridge/);
      assert.equal(await net.getLink('fltap0000004'), undefined);
    });

    it('removes a tap it created when configuring it then failed', async () => {
      // An `ip` wrapper that redirects the batch's `master br0` to a bridge that does not exist,
      // so creation succeeds and the next step fails, as when br0 vanishes between read and write.
      const dir = await mkdtemp(join(tmpdir(), 'fltest-ip-'));
      try {
        const wrapper = join(dir, 'ip');
        // sed -u: the service keeps `ip -batch` running and waits for each answer, so the wrapper
        // must pass each line on at once rather than at end of input.
        await writeFile(wrapper, '#!/bin/sh\nsed -u \'s/ master br0 / master nobr9 /\' | exec ip "$@"\n', { mode: 0o755 });
        const flaky = new Iproute2NetworkService({ ipBinary: wrapper, netns: NS });
        await assert.rejects(flaky.ensureTap({ name: 'fltap0000005', bridge: 'br0', alias: 'x' }), (err: Error) => {
          // ip names the argument it could not resolve, and the message carries the commands.
          assert.match(err.message, /argument "nobr9" is wrong/);
          assert.match(err.message, /tuntap add dev fltap0000005 mode tap; link set dev fltap0000005 master br0 alias x up/);
          return true;
        });
        assert.equal(await net.getLink('fltap0000005'), undefined);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses a foreign link with the wanted name and leaves it alone', async () => {
      const before = await net.getLink('eth1');
      await assert.rejects(net.ensureTap({ name: 'eth1', bridge: 'br0', alias: 'x' }), /"eth1" already exists and is a veth device, not a tap/);
      assert.deepEqual(await net.getLink('eth1'), before);
    });
  });

  describe('listLinks / getLink / deleteLink', () => {
    it('lists every link, including ours', async () => {
      const links = await net.listLinks();
      const byName = new Map(links.map((l) => [l.name, l]));
      assert.equal(byName.get('flvtap0000001')?.kind, 'macvtap');
      assert.equal(byName.get('fltap0000001')?.kind, 'tun');
      assert.equal(byName.get('br0')?.kind, 'bridge');
      assert.equal(byName.get('lo')?.kind, '');
      assert.equal(byName.get('lo')?.up, true);
    });

    it('getLink returns undefined for a missing link', async () => {
      assert.equal(await net.getLink('nosuch0'), undefined);
    });

    it('deletes, and deleting again is not an error', async () => {
      for (const name of ['flvtap0000001', 'fltap0000001']) {
        await net.deleteLink(name);
        assert.equal(await net.getLink(name), undefined);
        await net.deleteLink(name);
      }
      const names = (await net.listLinks()).map((l) => l.name);
      assert.ok(!names.includes('flvtap0000001') && !names.includes('fltap0000001'));
    });

    it('reports other ip failures with the command and its stderr', async () => {
      const elsewhere = new Iproute2NetworkService({ netns: `${NS}-missing` });
      await assert.rejects(elsewhere.getLink('lo'), (err: Error) => {
        assert.match(err.message, /^ip -n fltest-\S+-missing -json -details link show dev lo: /);
        assert.match(err.message, /Cannot open network namespace/);
        return true;
      });
    });
  });

  describe('long-lived ip -batch processes', () => {
    const ALIAS = 'flintlock:default/vm-b/01JDZQ4X8V3KJ2M9R7T5W1Y6BC';

    it('runs three ip processes for any number of creates, reads and deletes', async () => {
      // A wrapper that logs each start: the service must not start ip per call.
      const dir = await mkdtemp(join(tmpdir(), 'fltest-ip-'));
      try {
        const wrapper = join(dir, 'ip');
        const log = join(dir, 'starts');
        await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${log}\nexec ip "$@"\n`, { mode: 0o755 });
        const counted = new Iproute2NetworkService({ ipBinary: wrapper, netns: NS });
        for (let i = 0; i < 5; i++) {
          const name = `flbatch${i}`;
          assert.equal((await counted.ensureTap({ name, bridge: 'br0', alias: ALIAS })).master, 'br0');
          assert.equal((await counted.ensureMacvtap({ name: `${name}m`, parent: 'eth0', alias: ALIAS })).parent, 'eth0');
          assert.equal((await counted.getLink(name))?.alias, ALIAS);
          await counted.deleteLink(name);
          await counted.deleteLink(`${name}m`);
        }
        const starts = async (): Promise<string[]> =>
          (await readFile(log, 'utf8'))
            .trim()
            .split('\n')
            .map((l) => l.replace(`-n ${NS} `, ''))
            .sort();
        // One reader and one deleter (-force: a missing device is an answer), one changer, each started once.
        assert.deepEqual(await starts(), ['-json -details -batch -', '-json -details -force -batch -', '-json -details -force -batch -']);
        // A name the deleter deleted is read by the deleter: the reader, which read the device
        // before, holds its old ifindex (ip answers ENODEV for it, then exits). No process starts.
        assert.equal(await counted.getLink('flbatch0'), undefined);
        assert.equal(await counted.getLink('flbatch1m'), undefined);
        assert.equal((await starts()).length, 3);
        // Made again through the service, read, deleted again: still the same three processes.
        await counted.ensureTap({ name: 'flbatch0', bridge: 'br0', alias: ALIAS });
        assert.equal((await counted.getLink('flbatch0'))?.master, 'br0');
        await counted.deleteLink('flbatch0');
        assert.equal(await counted.getLink('flbatch0'), undefined);
        // The changer had the name cached from its first life: its ENODEV is retried on fresh processes.
        const afterRecreate = await starts();
        // Deleted behind the service's back after the reader read it: ENODEV, and one ip for that
        // name says it is gone; the changer and the deleter are not replaced for it (they are
        // replaced only when such a name exists again: the next test).
        await counted.ensureTap({ name: 'flbatch9', bridge: 'br0', alias: ALIAS });
        assert.equal((await counted.getLink('flbatch9'))?.master, 'br0'); // the reader prints it: cached
        await nsip('link', 'del', 'dev', 'flbatch9');
        const beforeStale = await starts();
        assert.equal(await counted.getLink('flbatch9'), undefined);
        const afterStale = await starts();
        const added = [...afterStale];
        for (const s of beforeStale) added.splice(added.indexOf(s), 1);
        assert.deepEqual(added, ['-json -details link show dev flbatch9']);
        assert.ok(afterRecreate.length >= 3);
        counted.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("is not fooled by ip's name cache: a device deleted and made again elsewhere is read, corrected and deleted", async () => {
      const name = 'flcache0';
      const first = await net.ensureTap({ name, bridge: 'br0', alias: ALIAS });
      // Behind the service's back: deleted and made again (a new ifindex), not on the bridge.
      await nsip('link', 'del', 'dev', name);
      await nsip('tuntap', 'add', 'dev', name, 'mode', 'tap');
      const again = await net.getLink(name);
      assert.ok(again !== undefined && again.ifindex !== first.ifindex, JSON.stringify(again));
      assert.equal(again.master, undefined);
      const fixed = await net.ensureTap({ name, bridge: 'br0', alias: ALIAS });
      assert.equal(fixed.master, 'br0');
      assert.equal(fixed.ifindex, again.ifindex);
      // Deleted behind its back again and made again by it: the changer's stale entry is retried.
      await nsip('link', 'del', 'dev', name);
      const fourth = await net.ensureTap({ name, bridge: 'br0', alias: ALIAS });
      assert.notEqual(fourth.ifindex, fixed.ifindex);
      assert.equal(fourth.master, 'br0');
      // Deleted by the service, then made again through it: each step sees the current device.
      await net.deleteLink(name);
      assert.equal(await net.getLink(name), undefined);
      const third = await net.ensureTap({ name, bridge: 'br0', alias: ALIAS });
      assert.notEqual(third.ifindex, fixed.ifindex);
      // Deleted by the service, made again elsewhere, deleted by the service: really deleted.
      await net.deleteLink(name);
      await nsip('tuntap', 'add', 'dev', name, 'mode', 'tap');
      await net.deleteLink(name);
      assert.doesNotMatch(await nsip('link', 'show'), /flcache0/);
      await nsip('tuntap', 'add', 'dev', name, 'mode', 'tap');
      await nsip('link', 'del', 'dev', name);
      await net.deleteLink(name);
      assert.equal(await net.getLink(name), undefined);
      assert.doesNotMatch(await nsip('link', 'show'), /flcache0/);
    });
  });

  describe('name validation (before any ip call)', () => {
    // A binary that cannot exist proves ip is never run.
    const noIp = new Iproute2NetworkService({ ipBinary: '/nonexistent/ip', netns: NS });

    for (const bad of ['', 'a'.repeat(16), 'has space', 'a/b', 'a:b', '.', '..', 'tab\there', 'é'.repeat(8)]) {
      it(`refuses ${JSON.stringify(bad)}`, async () => {
        await assert.rejects(noIp.ensureTap({ name: bad, bridge: 'br0', alias: 'x' }), /invalid tap device name/);
        await assert.rejects(noIp.ensureMacvtap({ name: 'ok', parent: bad, alias: 'x' }), /invalid parent network device name/);
        await assert.rejects(noIp.deleteLink(bad), /invalid network device name/);
        await assert.rejects(noIp.getLink(bad), /invalid network device name/);
      });
    }

    it('accepts 15 bytes', async () => {
      // Valid name, so the (missing) binary is reached: the error is about running ip.
      await assert.rejects(noIp.getLink('a'.repeat(15)), /\/nonexistent\/ip .*ENOENT/);
    });

    it('refuses a malformed or multicast MAC', async () => {
      await assert.rejects(noIp.ensureMacvtap({ name: 'v', parent: 'eth0', mac: '02:00:00:00:00', alias: 'x' }), /invalid MAC/);
      await assert.rejects(noIp.ensureMacvtap({ name: 'v', parent: 'eth0', mac: '03:00:00:00:00:01', alias: 'x' }), /multicast/);
    });
  });
});
