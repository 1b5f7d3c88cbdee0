// End to end with a real distribution: the sample Debian 12 image (scripts/build-debian-image.sh:
// Debian's cloud kernel, initramfs-tools, systemd-networkd and Debian's cloud-init) boots under the
// real daemon (QEMU, TCG) from two OCI images in Debian's docker-registry, with the metadata
// CAPMVM sends (../shared/reference/clients-and-docs.md §1.2-1.3): a jinja user-data that renders
// the providerID from ds.meta_data, a #cloud-config vendor-data with the hostname, a user and the
// final message, a meta-data without instance_id, a guest MAC on every NIC, add_network_config.
// Two VMs at once, one per network mode:
//   - tap on the test bridge, DHCP from dnsmasq there;
//   - macvtap on a veth parent, a static address (CAPMVM sends no gateway), pinged from the far side.
// The image's report unit prints, once cloud-init's final stage is over, what cloud-init did (the
// FLINTLOCK-DEBIAN-* lines); the test reads them from the console log and checks each against the
// VM: providerID and instance id carry its uid, the hostname is its name, the addresses are its
// lease and its static address, networkd runs cloud-init's files, cloud-init reports no errors.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MicroVMClient } from '../../src/cli/fl/client.js';
import {
  MicroVMSpecSchema,
  MicroVMStatus_MicroVMState as State,
  NetworkInterface_IfaceType as IfaceType,
  type MicroVM,
} from '../../src/gen/flintlock/types/microvm_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { TestClient } from '../helpers/grpc-client.js';
import { ensureDebianImage, pingFrom, pushDebian, startDnsmasq, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, GUEST_LAB, programs } from '../helpers/prerequisites.js';
import { waitFor } from '../helpers/wait.js';

/** How long a guest may take from CREATED to cloud-init's final stage under TCG, two at once, on a loaded 2-core host (~4 min seen). */
const FINAL_DEADLINE_MS = 420_000;
/** The gRPC endpoint CAPMVM would have dialled: it writes it into meta-data as vm_host. */
const VM_HOST = '10.77.0.1:9090';
const TAP_MAC = '02:de:b1:00:00:01';
const MV_MAC = '02:de:b1:00:00:02';
const MV_ADDRESS = '10.78.0.210/24';
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMw0K0fz8i3bm7ORgqCA6VKXfkOVSqDOlnBRm8ZO/Pr/ e2e@flintlock';

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** The kubeadm bootstrap data's shape: a jinja template that renders the providerID (CAPMVM §1.3). */
const USER_DATA = `## template: jinja
#cloud-config
write_files:
  - path: /etc/flintlock/provider-id
    permissions: "0644"
    content: "microvm://{{ ds.meta_data.vm_host }}/{{ ds.meta_data.instance_id }}"
`;

/** CAPMVM's vendor-data (controller-pkg services/microvm/service.go addMetadata). */
function vendorData(name: string): string {
  return `#cloud-config
hostname: ${name}
users:
- name: capmvm
  ssh_authorized_keys:
  - ${SSH_KEY}
final_message: The Liquid Metal booted system is good to go after $UPTIME seconds
bootcmd:
- ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
`;
}

/** CAPMVM's meta-data: no instance_id (flintlock adds it). */
const metaData = (name: string): string => `local_hostname: ${name}\nplatform: liquid_metal\nvm_host: ${VM_HOST}\n`;

function capmvmSpec(name: string, images: { kernel: string; root: string }, nic: { type: IfaceType; mac: string; address?: string }) {
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: 'capmvm',
    labels: { 'cluster-name': 'e2e' },
    vcpu: 1,
    memoryInMb: 512,
    provider: '',
    kernel: { image: images.kernel, filename: 'boot/vmlinuz', cmdline: {}, addNetworkConfig: true },
    initrd: { image: images.kernel, filename: 'boot/initrd' },
    rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: images.root } },
    interfaces: [
      {
        deviceId: 'eth1',
        type: nic.type,
        guestMac: nic.mac,
        ...(nic.address !== undefined ? { address: { address: nic.address, nameservers: [] } } : {}),
      },
    ],
    metadata: { 'user-data': b64(USER_DATA), 'vendor-data': b64(vendorData(name)), 'meta-data': b64(metaData(name)) },
  });
}

/** What the image's report unit printed (build-debian-image.sh lists the lines). */
interface Report {
  hostname: string;
  instanceId: string;
  providerId: string;
  addresses: Array<{ ifname: string; mac: string; cidr: string }>;
  networkd: string[];
  cloudInit: string;
  /** `systemd-analyze` lines: shown, not checked. */
  notes: string[];
  finalUptime: number;
}

function parseReport(text: string): Report | undefined {
  // The last line, complete (its newline written): the report is whole once it is there.
  if (!/^FLINTLOCK-DEBIAN-FINAL \S+\r?\n/m.test(text)) return undefined;
  const lines = text.split(/\r?\n/);
  const value = (tag: string): string => lines.findLast((l) => l.startsWith(`FLINTLOCK-DEBIAN-${tag} `))?.slice(`FLINTLOCK-DEBIAN-${tag} `.length) ?? '';
  const all = (tag: string): string[] => lines.filter((l) => l.startsWith(`FLINTLOCK-DEBIAN-${tag} `)).map((l) => l.slice(`FLINTLOCK-DEBIAN-${tag} `.length));
  return {
    hostname: value('HOSTNAME'),
    instanceId: value('INSTANCE-ID'),
    providerId: value('PROVIDER-ID'),
    addresses: all('ADDR').map((l) => {
      const [ifname = '', mac = '', cidr = ''] = l.split(' ');
      return { ifname, mac, cidr };
    }),
    networkd: all('NETWORKD'),
    cloudInit: value('CLOUD-INIT'),
    notes: [...all('BOOT').map((l) => `boot: ${l}`), ...all('BLAME').map((l) => `blame: ${l}`)],
    finalUptime: Number(value('FINAL')),
  };
}

function leaseFor(leasesFile: string, mac: string): string | undefined {
  if (!existsSync(leasesFile)) return undefined;
  return readFileSync(leasesFile, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[1]?.toLowerCase() === mac.toLowerCase())?.[2];
}

describeWith(
  'the sample Debian 12 image boots with CAPMVM metadata, configured by real cloud-init',
  [...GUEST_LAB, ...programs('mmdebstrap')],
  { timeout: 600_000 },
  () => {
    let host: TestNetns;
    let lan: TestNetns;
    let dir: string;
    let daemon: DaemonHandle;
    let client: TestClient;
    let images: { kernel: string; root: string };
    const stops: Array<() => void> = [];
    let bridgeLeases = '';

    before(async () => {
      ensureDebianImage();
      dir = makeTempDir('fl-debian-');
      chmodSync(dir, 0o755); // dnsmasq drops to nobody
      host = createTestNetns('fldeb');
      lan = createTestNetns('fldlan', { bare: true });
      host.ip('addr', 'add', '10.77.0.1/24', 'dev', 'br0');
      // The macvtap parent's far side: the LAN namespace, where the static address is pinged from.
      host.ip('link', 'set', 'eth0p', 'netns', lan.name);
      lan.ip('addr', 'add', '10.78.0.1/24', 'dev', 'eth0p');
      lan.ip('link', 'set', 'eth0p', 'up');
      const bridgeDns = startDnsmasq(host.name, 'br0', '10.77.0.50,10.77.0.150', join(dir, 'br'));
      bridgeLeases = bridgeDns.leases;
      stops.push(bridgeDns.stop);
      const registry = await startRegistry(host.name, dir);
      stops.push(registry.stop);
      images = pushDebian(host.name, `${registry.address}/flintlock`, 'e2e');
      daemon = await startDaemon({
        netns: host.name,
        dir: join(dir, 'daemon'),
        config: { 'parent-iface': 'eth0', 'bridge-name': 'br0', 'default-provider': 'qemu', 'delete-vm-timeout': '2s' },
      });
      client = new TestClient(daemon.endpoint);
    });

    after(async () => {
      try {
        for (const vm of (await client?.list('')) ?? []) await client.delete(vm.spec?.uid ?? '').catch(() => undefined);
        await waitFor('VMs removed', async () => ((await client?.list('')) ?? []).length === 0, 30_000, 200).catch(() => undefined);
      } finally {
        client?.close();
        await daemon?.stop();
        for (const stop of stops) stop();
        host?.destroy();
        lan?.destroy();
        if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      }
    });

    async function created(uid: string, name: string): Promise<MicroVM> {
      return waitFor(
        `${name} CREATED`,
        async () => {
          const got = await client.get(uid);
          if (got.status?.state === State.FAILED) throw new Error(`${name} FAILED: ${got.status.failureReason}`);
          return got.status?.state === State.CREATED ? got : undefined;
        },
        120_000,
        200,
      );
    }

    /** The report, and when its last line was seen (Date.now()). */
    async function finalReport(vm: MicroVM): Promise<Report & { seenAt: number }> {
      const consoleLog = vm.status?.consoleLogPath ?? '';
      const read = (): string => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
      try {
        const report = await waitFor(`${vm.spec?.id ?? ''}: cloud-init's final stage`, () => parseReport(read()), FINAL_DEADLINE_MS, 250);
        const seenAt = Date.now();
        // The boot times (FLINTLOCK-DEBIAN-BOOT/-BLAME) come once the boot is over, often more than a
        // minute later under TCG: shown when already there, not waited for.
        return { ...report, seenAt };
      } catch (e) {
        throw new Error(`${(e as Error).message}; console:\n${read().split('\n').slice(-60).join('\n')}`, { cause: e });
      }
    }

    it('tap (DHCP) and macvtap (static) VMs: providerID, hostname, instance id and both addresses from cloud-init', async (t) => {
      const startedAt = Date.now();
      const specs = [
        capmvmSpec('deb-tap', images, { type: IfaceType.TAP, mac: TAP_MAC }),
        capmvmSpec('deb-mv', images, { type: IfaceType.MACVTAP, mac: MV_MAC, address: MV_ADDRESS }),
      ];
      const uids = await Promise.all(specs.map(async (spec) => (await client.create(spec)).spec?.uid ?? ''));
      const [tapVm, mvVm] = await Promise.all(uids.map((uid, i) => created(uid, specs[i]?.id ?? '')));
      assert.ok(tapVm !== undefined && mvVm !== undefined);
      const createdAt = Date.now();
      const reports = await Promise.all(
        [tapVm, mvVm].map(async (vm) => {
          const report = await finalReport(vm);
          t.diagnostic(
            `${vm.spec?.id ?? ''}: CREATED ${((createdAt - startedAt) / 1000).toFixed(1)} s after create; cloud-init final ${((report.seenAt - startedAt) / 1000).toFixed(1)} s after create (guest uptime ${report.finalUptime} s)`,
          );
          return report;
        }),
      );
      const [tap, mv] = reports as [Report & { seenAt: number }, Report & { seenAt: number }];

      for (const [vm, report] of [
        [tapVm, tap],
        [mvVm, mv],
      ] as const) {
        const uid = vm.spec?.uid ?? '';
        const name = vm.spec?.id ?? '';
        assert.match(uid, /^[0-9A-HJKMNP-TV-Z]{26}$/);
        assert.equal(report.providerId, `microvm://${VM_HOST}/${uid}`, 'the jinja user-data rendered the providerID with the VM uid');
        assert.equal(report.instanceId, uid, "cloud-init's instance id is the VM's uid (meta-data instance-id)");
        assert.equal(report.hostname, name, 'vendor-data set the hostname');
        assert.match(report.cloudInit, /^done 0$/, 'cloud-init finished without errors');
        assert.ok(
          report.networkd.some((f) => f.startsWith('10-cloud-init-')),
          `networkd runs cloud-init's files: ${report.networkd.join(', ')}`,
        );
        const text = readFileSync(vm.status?.consoleLogPath ?? '', 'utf8');
        assert.match(text, /The Liquid Metal booted system is good to go after [\d.]+ seconds/, "vendor-data's final_message");
      }

      // Tap: the address networkd got by DHCP is the lease dnsmasq gave this MAC; it answers.
      const lease = await waitFor('the lease of the tap VM', () => leaseFor(bridgeLeases, TAP_MAC), 10_000, 100);
      const tapAddress = tap.addresses.find((a) => a.mac === TAP_MAC && !a.cidr.includes(':'));
      assert.equal(tapAddress?.cidr, `${lease}/24`, `DHCP address on the tap NIC: ${JSON.stringify(tap.addresses)}`);
      pingFrom(host.name, lease);

      // Macvtap: the static address of the spec, on the NIC with the spec's MAC; reachable from the LAN.
      const mvAddress = mv.addresses.find((a) => a.mac === MV_MAC && !a.cidr.includes(':'));
      assert.equal(mvAddress?.cidr, MV_ADDRESS, `static address on the macvtap NIC: ${JSON.stringify(mv.addresses)}`);
      pingFrom(lan.name, MV_ADDRESS.split('/')[0] ?? '');

      // The same console through the API (GetLogs), as an operator reads it.
      const lifecycle = new MicroVMClient({ host: daemon.endpoint });
      try {
        let logs = '';
        const done = await lifecycle.logs({ uid: tapVm.spec?.uid ?? '', follow: false, tailBytes: 0n }, (data) => (logs += Buffer.from(data).toString('utf8')))
          .done;
        assert.ok(done.ok);
        assert.ok(logs.includes(`FLINTLOCK-DEBIAN-PROVIDER-ID microvm://${VM_HOST}/${tapVm.spec?.uid ?? ''}`), 'GetLogs serves the console');
      } finally {
        lifecycle.close();
      }
    });
  },
);
