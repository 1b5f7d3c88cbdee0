// Host network devices of a VM (COMPAT §3). A device's name is recorded in the store before the
// device is created, and every device carries an alias naming its VM, so neither a crash nor a
// lost record can leak an untracked device (start-up sweeps orphans by alias: see orphans.ts).
import { deviceAlias, generateGuestMac, newHostDeviceName, parseDeviceAlias } from '../names.js';
import type { NetworkInterfaceSpec } from '../model.js';
import type { HostDeviceRecord, LinkInfo } from '../ports.js';
import { PermanentFailure } from '../result.js';
import { vmmIdentityOf, type Step, type StepContext } from './step.js';

// The original's words first (clients match them), then which config key to set.
export const MACVTAP_PARENT_REQUIRED =
  'a parent network device name is required for macvtap interfaces: this daemon has no parent-iface configured (config key parent-iface)';
export const TAP_BRIDGE_REQUIRED =
  'a parent network device name is required for attaching a TAP interface: this daemon has no bridge-name configured (config key bridge-name, or overrides.bridge_name per interface)';

/** What the daemon's network config lacks for this interface, or undefined. */
export function hostNetworkProblem(iface: NetworkInterfaceSpec, host: { readonly parentIface?: string; readonly bridgeName?: string }): string | undefined {
  if (iface.allowMetadata === true) return undefined;
  if (iface.type === 'macvtap') return host.parentIface === undefined || host.parentIface === '' ? MACVTAP_PARENT_REQUIRED : undefined;
  const bridge = iface.bridgeName ?? host.bridgeName;
  return bridge === undefined || bridge === '' ? TAP_BRIDGE_REQUIRED : undefined;
}

/** Where the VMM finds a macvtap's tap character device (never /dev/tapN: see COMPAT §3). */
export function macvtapNodePath(vmDir: string, deviceId: string): string {
  return `${vmDir}/tap-${deviceId}`;
}

/** The macvtap parent or the tap's bridge; undefined for the standalone metadata tap. */
function parentFor(ctx: StepContext, iface: NetworkInterfaceSpec): string | undefined {
  const problem = hostNetworkProblem(iface, ctx.ports.hostNetwork);
  if (problem !== undefined) throw new PermanentFailure(problem);
  if (iface.allowMetadata === true) return undefined;
  return iface.type === 'macvtap' ? ctx.ports.hostNetwork.parentIface : (iface.bridgeName ?? ctx.ports.hostNetwork.bridgeName);
}

/** True when the observed link is what the spec asks for. */
function linkMatches(ctx: StepContext, iface: NetworkInterfaceSpec, link: LinkInfo, alias: string): boolean {
  if (!link.up || link.alias !== alias) return false;
  if (iface.type === 'macvtap') {
    return link.kind === 'macvtap' && link.macvtapMode === 'bridge' && (iface.guestMac === undefined || link.mac === iface.guestMac);
  }
  return link.kind === 'tun' && link.master === (iface.allowMetadata === true ? undefined : (iface.bridgeName ?? ctx.ports.hostNetwork.bridgeName));
}

/** The device name for this interface: from status, else from a record a crash left, else new. */
async function deviceNameFor(ctx: StepContext, iface: NetworkInterfaceSpec): Promise<string> {
  const known = ctx.status.interfaces[iface.deviceId]?.hostDeviceName;
  if (known !== undefined && known !== '') return known;
  const recorded = ctx.ports.repo.devices(ctx.vm.id.uid).find((d) => d.deviceId === iface.deviceId);
  if (recorded !== undefined) return recorded.name;
  const repo = ctx.ports.repo;
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const candidate = newHostDeviceName(iface.type);
    if (repo.deviceNamed(candidate) !== undefined || (await ctx.ports.network.getLink(candidate)) !== undefined) continue;
    // Checked again in the same synchronous turn as the write: another NIC's step (this VM's,
    // running alongside, or another VM's) may have recorded this name while we looked at the host.
    if (repo.deviceNamed(candidate) !== undefined) continue;
    const record: HostDeviceRecord = { name: candidate, vmUid: ctx.vm.id.uid, kind: iface.type, deviceId: iface.deviceId, createdAt: ctx.ports.clock.now() };
    ctx.ports.repo.recordDevice(record);
    return candidate;
  }
  throw new Error('could not generate a free host device name after 8 attempts');
}

export function createInterfaceStep(ctx: StepContext, iface: NetworkInterfaceSpec): Step {
  const network = ctx.ports.network;
  const alias = deviceAlias(ctx.ports.hostNetwork.deviceOwner, ctx.vm.id.uid, ctx.vm.id.namespace, ctx.vm.id.name);
  return {
    name: `network_iface_create[${iface.deviceId}]`,
    shouldDo: async () => {
      const status = ctx.status.interfaces[iface.deviceId];
      if (status === undefined || status.hostDeviceName === '' || status.macAddress === '') return true;
      const link = await network.getLink(status.hostDeviceName);
      return link === undefined || link.ifindex !== status.index || !linkMatches(ctx, iface, link, alias);
    },
    do: async () => {
      const parent = parentFor(ctx, iface);
      const name = await deviceNameFor(ctx, iface);
      const previous = ctx.status.interfaces[iface.deviceId];
      // Status names the device before it exists (index 0 until created).
      if (previous?.hostDeviceName !== name) ctx.setInterfaceStatus(iface.deviceId, { hostDeviceName: name, index: 0, macAddress: '' });
      // A recreated macvtap (e.g. after a host reboot) keeps the MAC it had, so the guest's DHCP
      // lease and its network-config still match.
      const keptMac = previous !== undefined && previous.macAddress !== '' ? previous.macAddress : undefined;
      const mac = iface.guestMac ?? keptMac;
      const owner = vmmIdentityOf(ctx)?.uid;
      const link =
        iface.type === 'macvtap'
          ? await network.ensureMacvtap({ name, parent: parent ?? '', alias, ...(mac !== undefined ? { mac } : {}) })
          : await network.ensureTap({
              name,
              alias,
              ...(parent !== undefined ? { bridge: parent } : {}),
              ...(owner !== undefined ? { owner } : {}),
            });
      // A macvtap's guest NIC must use the macvtap's own MAC (else unicast replies never arrive);
      // a tap's guest MAC is the spec's or one generated once and kept.
      const previousMac = ctx.status.interfaces[iface.deviceId]?.macAddress;
      const macAddress =
        iface.type === 'macvtap' ? link.mac : (iface.guestMac ?? (previousMac !== undefined && previousMac !== '' ? previousMac : generateGuestMac()));
      ctx.setInterfaceStatus(iface.deviceId, { hostDeviceName: name, index: link.ifindex, macAddress });
    },
  };
}

export function macvtapNodeStep(ctx: StepContext, iface: NetworkInterfaceSpec): Step {
  const path = macvtapNodePath(ctx.vmDir, iface.deviceId);
  const deviceNumbers = async (): Promise<{ major: number; minor: number }> => {
    const name = ctx.status.interfaces[iface.deviceId]?.hostDeviceName;
    if (name === undefined || name === '') throw new Error(`interface ${iface.deviceId} has no host device yet`);
    return ctx.ports.network.macvtapDeviceNumbers(name);
  };
  return {
    name: `macvtap_device_node[${iface.deviceId}]`,
    shouldDo: async () => {
      const [want, have] = await Promise.all([deviceNumbers(), ctx.ports.fs.charDevice(path)]);
      return have === undefined || have.major !== want.major || have.minor !== want.minor;
    },
    do: async () => ctx.ports.fs.ensureCharDevice(path, await deviceNumbers()),
  };
}

/** Every device this VM may own: its records plus any name only its status knows. */
export function devicesOf(ctx: StepContext): string[] {
  const names = new Set(ctx.ports.repo.devices(ctx.vm.id.uid).map((d) => d.name));
  for (const s of Object.values(ctx.status.interfaces)) if (s.hostDeviceName !== '') names.add(s.hostDeviceName);
  return [...names].sort();
}

export function deleteInterfaceStep(ctx: StepContext, name: string): Step {
  const network = ctx.ports.network;
  const recorded = (): boolean => ctx.ports.repo.devices(ctx.vm.id.uid).some((d) => d.name === name);
  /** Only a link whose alias names this VM (or that has none yet: crash before alias) is ours to delete. */
  const ownLink = async (): Promise<LinkInfo | undefined> => {
    const link = await network.getLink(name);
    if (link === undefined) return undefined;
    if (link.alias === undefined || parseDeviceAlias(link.alias)?.uid === ctx.vm.id.uid) return link;
    ctx.log.warn({ device: name, alias: link.alias }, "host device is not this microvm's (its alias names another owner); not deleting it");
    return undefined;
  };
  return {
    name: `network_iface_delete[${name}]`,
    shouldDo: async () => recorded() || (await ownLink()) !== undefined,
    do: async () => {
      if ((await ownLink()) !== undefined) await network.deleteLink(name);
      ctx.ports.repo.forgetDevice(name);
    },
  };
}
