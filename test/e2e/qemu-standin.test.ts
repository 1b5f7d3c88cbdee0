// The stand-in VMM of bench/control-plane.ts (test/helpers/qemu-standin.pl) does what the bench
// relies on, so the bench can't silently measure nothing: the real daemon (bin/flintlockd) in a
// test namespace, with `qemu-bin` pointing at the stand-in and the VMM sandbox as by default,
// brings a VM with a tap on br0 to CREATED; the stand-in is the recorded VMM process, holds the
// VM's tap attached (its fdinfo names the tap, the tap has carrier), answers the provider's own
// QMP client (query-status, stop, cont) and goes away with the tap on delete (system_powerdown, not
// the provider's SIGKILL). Run by hand, it opens a tap by `ifname=`, writes `-pidfile`, refuses a
// missing -initrd, ends on `quit`, and refuses an fd that is not a tap, as QEMU does.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { QmpClient } from '../../src/adapters/providers/qemu.js';
import { MicroVMSpecSchema, MicroVMStatus_MicroVMState as State, NetworkInterface_IfaceType as IfaceType } from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient } from '../helpers/grpc-client.js';
import { ensureGuestImage, pushGuest, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, GUEST_LAB } from '../helpers/prerequisites.js';
import { attachedTaps, QEMU_STANDIN, standinPids } from '../helpers/qemu-standin.js';
import { spawnTracked } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const GUEST = '127.0.0.1:5000/flintlock/guest:standin';

describeWith('the QEMU stand-in of the control-plane bench', GUEST_LAB, { timeout: 60_000 }, () => {
  let lab: TestNetns;
  let dir: string;
  let daemon: DaemonHandle;
  let client: TestClient;
  let stopRegistry = (): void => undefined;

  before(async () => {
    ensureGuestImage();
    dir = makeTempDir('fl-standin-');
    chmodSync(dir, 0o755);
    lab = createTestNetns('fl-standin');
    stopRegistry = (await startRegistry(lab.name, dir)).stop;
    pushGuest(lab.name, GUEST);
    daemon = await startDaemon({
      netns: lab.name,
      dir: join(dir, 'daemon'),
      config: { 'bridge-name': 'br0', 'default-provider': 'qemu', 'qemu-bin': QEMU_STANDIN, 'delete-vm-timeout': '5s' },
    });
    client = new TestClient(daemon.endpoint);
  });

  after(async () => {
    client?.close();
    await daemon?.stop();
    stopRegistry();
    lab?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('is started by the QEMU provider, holds the tap attached, answers QMP, and ends on delete', async () => {
    const created = await client.create(
      create(MicroVMSpecSchema, {
        id: 'standin',
        namespace: 'standin',
        vcpu: 1,
        memoryInMb: 256,
        kernel: { image: GUEST, filename: 'boot/vmlinuz', addNetworkConfig: false },
        initrd: { image: GUEST, filename: 'boot/initrd' },
        interfaces: [{ deviceId: 'eth1', type: IfaceType.TAP }],
      }),
    );
    const uid = created.spec?.uid ?? '';
    const vm = await waitFor(
      'the VM to be CREATED',
      async () => {
        const got = await client.get(uid);
        if (got.status?.state === State.FAILED) throw new Error(`FAILED: ${got.status.failureReason}`);
        return got.status?.state === State.CREATED ? got : undefined;
      },
      30_000,
      50,
    );
    const tap = vm.status?.networkInterfaces.eth1?.hostDeviceName ?? '';
    assert.notEqual(tap, '');

    const [pid, ...others] = standinPids(daemon.stateDir);
    assert.ok(pid !== undefined, 'a stand-in process naming the state dir');
    assert.deepEqual(others, []);
    // The recorded VMM is the stand-in: the chain exec'd its way to it under the same pid.
    const vmDir = readlinkSync(`/proc/${pid}/cwd`);
    assert.equal(Number(readFileSync(join(vmDir, 'vmm.pid'), 'utf8').trim().split(/\s+/)[0]), pid);
    // Sandboxed as QEMU would be: the VM's own uid, not root.
    assert.notEqual(Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]), 0);

    assert.deepEqual(attachedTaps(pid), [tap]);
    const link = lab.link(tap);
    assert.equal(link?.master, 'br0');
    assert.ok(link?.flags.includes('LOWER_UP'), `carrier on the attached tap: ${link?.flags.join(',')}`);

    // The provider's own QMP client, as its pause/resume use it.
    const qmp = await QmpClient.connect(join(vmDir, 'qmp.sock'), 2000);
    try {
      assert.deepEqual(await qmp.execute('query-status'), { status: 'running', singlestep: false, running: true });
      await qmp.execute('stop');
      assert.equal(((await qmp.execute('query-status')) as { status: string }).status, 'paused');
      await qmp.execute('cont');
      assert.equal(((await qmp.execute('query-status')) as { status: string }).status, 'running');
      await assert.rejects(qmp.execute('no-such-command'), /CommandNotFound/);
    } finally {
      qmp.close();
    }

    await client.delete(uid);
    await waitFor('the VM to be gone', async () => (await client.list('standin')).length === 0, 20_000, 50);
    assert.equal(existsSync(`/proc/${pid}`), false, 'the stand-in has exited');
    assert.equal(lab.link(tap), undefined, 'the tap is deleted');
    // It powered off through QMP (system_powerdown), not by the provider's SIGKILL after the timeout.
    assert.equal(/did not power off in time/.test(daemon.output()), false, 'the provider had to SIGKILL the stand-in');
  });

  it('opens a tap by ifname, writes the pid file, checks its files and ends on quit', async () => {
    const tap = 'standin-tap0';
    lab.ip('tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr');
    const sock = join(dir, 'ifname.sock');
    const pidFile = join(dir, 'ifname.pid');
    const args = ['-netdev', `tap,id=net0,ifname=${tap}`, '-kernel', QEMU_STANDIN, '-pidfile', pidFile, '-qmp', `unix:${sock},server=on,wait=off`];
    const missing = spawnSync('ip', ['netns', 'exec', lab.name, QEMU_STANDIN, ...args, '-initrd', join(dir, 'no-such-initrd')], {
      encoding: 'utf8',
      timeout: 5000,
    });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /could not open '.*no-such-initrd'/);
    const child = spawnTracked('ip', ['netns', 'exec', lab.name, QEMU_STANDIN, ...args], { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    await waitFor('the QMP socket', () => existsSync(sock), 5000, 10);
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    assert.deepEqual(attachedTaps(pid), [tap]);
    const qmp = await QmpClient.connect(sock, 2000);
    try {
      await qmp.execute('quit');
    } finally {
      qmp.close();
    }
    assert.equal(await exited, 0);
    assert.equal(existsSync(sock), false);
  });

  it('refuses an fd that is not a tap, as QEMU does', () => {
    const sock = join(dir, 'refuse.sock');
    const res = spawnSync(QEMU_STANDIN, ['-netdev', 'tap,id=net0,fd=0', '-qmp', `unix:${sock},server=on,wait=off`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 5000,
    });
    assert.equal(res.status, 1);
    assert.match(res.stderr, /fd 0 is not an attached tap/);
    assert.equal(existsSync(sock), false, 'no QMP socket: it never looked running');
  });
});
