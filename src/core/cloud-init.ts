// cloud-init NoCloud data for a VM (COMPAT §4): the files the guest reads (meta-data, user-data,
// vendor-data, network-config), derived from the spec's metadata and the launch's real disk and NIC
// order. Pure functions, no I/O; delivery (cidata disk or Firecracker MMDS) is the providers' job.
//
// YAML we generate is rendered with the YAML 1.1 schema because the guest side (cloud-init's
// PyYAML, netplan's libyaml) reads YAML 1.1: a MAC like 52:54:00:12:34:56 is a base-60 integer
// there unless quoted, and `yes`/`no`/`on`/`off` are booleans.
import { guestDiskName } from './guest.js';
import { Document, isMap, isScalar, isSeq, parseDocument, stringify, YAMLSeq } from 'yaml';
import { decodeBase64Strict, injectInstanceId } from './metadata.js';
import type { MicroVM, StaticAddress } from './model.js';
import type { CloudInitFiles, LaunchDisk, LaunchNic } from './ports.js';
import { appError, err, errorMessage, ok, type AppError, type Result } from './result.js';

export const CLOUD_CONFIG_HEADER = '#cloud-config';
/** What user-data defaults to: NoCloud needs a user-data file (or URL) to exist, even empty. */
export const EMPTY_CLOUD_CONFIG = `${CLOUD_CONFIG_HEADER}\n`;

/** The Firecracker MMDS interface's guest address (COMPAT §3); no gateway. */
export const MMDS_GUEST_ADDRESS = '169.254.0.1/16';

const YAML_OUT = { version: '1.1', defaultStringType: 'QUOTE_DOUBLE', defaultKeyType: 'PLAIN', lineWidth: 0 } as const;

// ---------------------------------------------------------------------------------------------
// Metadata values

/** C0 controls other than tab, LF, FF, CR, plus DEL and the replacement character of bad UTF-8. */
// eslint-disable-next-line no-control-regex
const NOT_TEXT = /[\u0000-\u0008\u000B\u000E-\u001F\u007F\uFFFD]/;

/**
 * A `spec.metadata` value as text. Values are base64; raw text is tolerated for every key but
 * `meta-data` (validated as base64 at create). A value is taken as base64 when it is valid strict
 * base64 and decodes to text; otherwise it is used as written (raw `#cloud-config` text is never
 * valid base64, and short raw words that happen to be, like `true`, decode to binary).
 */
export function decodeMetadataValue(key: string, value: string): Result<string, AppError> {
  const decoded = decodeBase64Strict(value);
  if (key === 'meta-data') {
    if (decoded === undefined) return err(appError('invalid-argument', 'metadata[meta-data] must be base64-encoded YAML'));
    return ok(decoded);
  }
  if (decoded !== undefined && !NOT_TEXT.test(decoded)) return ok(decoded);
  return ok(value);
}

// ---------------------------------------------------------------------------------------------
// network-config (netplan v2)

export interface NetworkConfigInterface {
  /** Keys the `ethernets` entry (the spec's device_id). */
  readonly deviceId: string;
  /** The guest NIC's MAC; required (the core generates network-config once devices exist). */
  readonly mac?: string;
  readonly address?: StaticAddress;
  /** Firecracker's MMDS NIC: static 169.254.0.1/16 whatever else is given. */
  readonly allowMetadata?: boolean;
}

interface Ethernet {
  match: { macaddress: string };
  dhcp4: boolean;
  dhcp6: boolean;
  'dhcp-identifier'?: 'mac';
  addresses?: string[];
  routes?: Array<{ to: string; via: string }>;
  nameservers?: { addresses: string[] };
}

const isV6 = (ip: string): boolean => ip.includes(':');

/** The IP of a gateway given with or without a prefix (`10.0.0.1/24` -> `10.0.0.1`). */
export function gatewayIp(gateway: string): string {
  const slash = gateway.indexOf('/');
  return (slash < 0 ? gateway : gateway.slice(0, slash)).trim();
}

function staticEthernet(mac: string, address: StaticAddress): Ethernet {
  const entry: Ethernet = { match: { macaddress: mac }, dhcp4: false, dhcp6: false, addresses: [address.address] };
  const gateway = address.gateway === undefined ? '' : gatewayIp(address.gateway);
  // Default routes rather than gateway4/gateway6: netplan deprecated those, and rather than
  // `to: default`, which netplan < 0.103 and cloud-init's own v2 parser (used on distros without
  // netplan, e.g. Debian's ENI/networkd renderers) reject as "not a valid ip network".
  if (gateway !== '') entry.routes = [{ to: isV6(gateway) ? '::/0' : '0.0.0.0/0', via: gateway }];
  if (address.nameservers.length > 0) entry.nameservers = { addresses: [...address.nameservers] };
  return entry;
}

/** How network-config is generated (daemon settings). */
export interface NetworkConfigOptions {
  /**
   * `network-config-dhcp6`: DHCP interfaces ask for DHCPv6 as well (`dhcp6: true`, the original's
   * choice; the default). ifupdown guests wait minutes for a DHCPv6 server that is not there (ADR 0012).
   */
  readonly dhcp6?: boolean;
}

/**
 * netplan v2 `network-config` text: one ethernet per interface keyed by device id, matched on
 * the guest MAC (not renamed). DHCP (v4, and v6 unless `options.dhcp6` is false; client id from
 * the MAC) unless a static address is given; the MMDS interface gets 169.254.0.1/16 with no gateway.
 */
export function networkConfig(interfaces: readonly NetworkConfigInterface[], options: NetworkConfigOptions = {}): Result<string, AppError> {
  const dhcp6 = options.dhcp6 ?? true;
  const ethernets: Record<string, Ethernet> = {};
  for (const iface of interfaces) {
    if (iface.mac === undefined || iface.mac === '') return err(appError('internal', `network-config: interface ${iface.deviceId} has no MAC address yet`));
    if (Object.hasOwn(ethernets, iface.deviceId)) return err(appError('internal', `network-config: interface ${iface.deviceId} is listed twice`));
    const mac = iface.mac.toLowerCase();
    if (iface.allowMetadata === true) ethernets[iface.deviceId] = staticEthernet(mac, { address: MMDS_GUEST_ADDRESS, nameservers: [] });
    else if (iface.address !== undefined) ethernets[iface.deviceId] = staticEthernet(mac, iface.address);
    else ethernets[iface.deviceId] = { match: { macaddress: mac }, dhcp4: true, dhcp6, 'dhcp-identifier': 'mac' };
  }
  return ok(stringify({ version: 2, ethernets }, YAML_OUT));
}

// ---------------------------------------------------------------------------------------------
// vendor-data mounts

export interface GuestMount {
  /** Guest block device, e.g. `/dev/vdb`. */
  readonly device: string;
  readonly mountPoint: string;
  /** Adds `ro` to the mount options. */
  readonly readOnly?: boolean;
}

export interface VendorDataResult {
  /** The vendor-data to deliver; undefined when there is none at all. */
  readonly vendorData: string | undefined;
  readonly warnings: string[];
}

/** Options beyond cloud-init's defaults: a missing volume must not stop the guest's boot. */
const MOUNT_OPTIONS = 'defaults,nofail';

function mountEntry(mount: GuestMount): string[] {
  return [mount.device, mount.mountPoint, 'auto', mount.readOnly === true ? `${MOUNT_OPTIONS},ro` : MOUNT_OPTIONS];
}

/** The first line is exactly `#cloud-config` (not `#cloud-config-archive`, not a jinja header). */
export function isCloudConfig(text: string): boolean {
  const newline = text.indexOf('\n');
  return /^#cloud-config(?:\s.*)?$/.test(newline < 0 ? text : text.slice(0, newline));
}

/** Drops the first line (the `#cloud-config` header) of a cloud-config text. */
function cloudConfigBody(text: string): string {
  const newline = text.indexOf('\n');
  return newline < 0 ? '' : text.slice(newline + 1);
}

function entryField(entry: unknown, index: number): string | undefined {
  if (!Array.isArray(entry)) return undefined;
  const value: unknown = entry[index];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Merges cloud-config `mounts` entries (`[device, mountPoint, auto, "defaults,nofail"]`) into the
 * user's vendor-data. A `#cloud-config` mapping keeps all its keys (and comments); entries go after
 * an existing `mounts` list, and a device or mount point the user already lists is left to the
 * user's entry (with a warning when they differ). A jinja-headed cloud-config gets the mounts
 * appended (appendMountsToTemplate). Vendor-data that is not cloud-config (a script, MIME
 * multipart, invalid YAML) is returned untouched with a warning: the mounts are not delivered, and
 * the caller should say so.
 */
export function vendorDataWithMounts(vendorData: string | undefined, mounts: readonly GuestMount[]): VendorDataResult {
  try {
    return mergeMounts(vendorData, mounts);
  } catch (e) {
    // yaml parses an alias to no anchor (or one that expands past maxAliasCount) without error and
    // throws when the document is read or written: that is the client's YAML, not a reason for
    // the reconcile to fail on every retry.
    const wanted = mounts.map((m) => `${m.device} on ${m.mountPoint}`).join(', ');
    return {
      vendorData,
      warnings: [
        `vendor-data is not valid YAML (${errorMessage(e).split('\n')[0] ?? ''}): left as given, so the volume mounts (${wanted}) are not configured through cloud-init`,
      ],
    };
  }
}

const JINJA_HEADER = /^## template: jinja[ \t]*\r?\n/;

/**
 * A jinja-headed cloud-config (`## template: jinja` then `#cloud-config`, as the original's Get
 * returns vendor-data): cloud-init renders the template before it reads YAML, so the text need not
 * be YAML (`hostname: {{ ds.meta_data.local_hostname }}`) and is not parsed here. The mounts are
 * appended as a top-level list after the template, which leaves every template expression as
 * written; a template with its own top-level `mounts` is left to the user.
 */
function appendMountsToTemplate(
  vendorData: string,
  header: string,
  mounts: readonly GuestMount[],
  untouched: (why: string) => VendorDataResult,
): VendorDataResult {
  const body = vendorData.slice(header.length);
  if (!isCloudConfig(body)) return untouched('is a jinja template but not of a #cloud-config document');
  if (/^mounts[ \t]*:/m.test(body)) return untouched('is a jinja template with its own `mounts`');
  // JSON strings are YAML flow scalars; devices and mount points are validated paths.
  const entries = mounts
    .map(
      (m) =>
        `  - [${mountEntry(m)
          .map((field) => JSON.stringify(field))
          .join(', ')}]\n`,
    )
    .join('');
  return { vendorData: `${vendorData}${vendorData.endsWith('\n') ? '' : '\n'}mounts:\n${entries}`, warnings: [] };
}

function mergeMounts(vendorData: string | undefined, mounts: readonly GuestMount[]): VendorDataResult {
  if (mounts.length === 0) return { vendorData, warnings: [] };
  const warnings: string[] = [];
  const wanted = mounts.map((m) => `${m.device} on ${m.mountPoint}`).join(', ');
  const untouched = (why: string): VendorDataResult => ({
    vendorData,
    warnings: [`vendor-data ${why}: left as given, so the volume mounts (${wanted}) are not configured through cloud-init`],
  });
  const jinja = vendorData === undefined ? null : JINJA_HEADER.exec(vendorData);
  if (vendorData !== undefined && jinja !== null) return appendMountsToTemplate(vendorData, jinja[0], mounts, untouched);

  let doc: Document.Parsed | undefined;
  if (vendorData !== undefined && vendorData.trim() !== '') {
    if (!isCloudConfig(vendorData)) return untouched('is not a plain #cloud-config document');
    doc = parseDocument(cloudConfigBody(vendorData), { version: '1.1' });
    if (doc.errors.length > 0) return untouched(`is not valid YAML (${doc.errors[0]?.message.split('\n')[0] ?? ''})`);
    if (doc.contents !== null && !isMap(doc.contents)) return untouched('is not a YAML mapping');
  }
  const document: Document = doc ?? new Document({}, { version: '1.1' });
  // Only a header (or only comments): start the mapping, keeping those comments.
  if (document.contents === null) document.contents = document.createNode({});

  const current = document.get('mounts', true);
  let list: YAMLSeq;
  if (isSeq(current)) list = current;
  else if (current === undefined || (isScalar(current) && current.value === null)) {
    list = new YAMLSeq(document.schema);
    document.set('mounts', list);
  } else return untouched('has a `mounts` key that is not a list');

  const existing: unknown[] = list.toJSON();
  for (const mount of mounts) {
    const sameDevice = existing.find((e) => entryField(e, 0) === mount.device);
    const samePoint = existing.find((e) => entryField(e, 1) === mount.mountPoint);
    if (sameDevice !== undefined || samePoint !== undefined) {
      if (sameDevice === undefined || sameDevice !== samePoint)
        warnings.push(
          `vendor-data already mounts ${sameDevice !== undefined ? mount.device : mount.mountPoint}; ${mount.device} on ${mount.mountPoint} is not added`,
        );
      continue;
    }
    list.add(document.createNode(mountEntry(mount), { flow: true }));
  }
  return { vendorData: `${CLOUD_CONFIG_HEADER}\n${document.toString({ lineWidth: 0 })}`, warnings };
}

// ---------------------------------------------------------------------------------------------
// Guest devices

/** The guest's virtio-blk device for the disk at `index` in the guest's order: vda..vdz, vdaa... */
export function guestDiskDevice(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`invalid disk index ${index}`);
  return `/dev/${guestDiskName(index)}`;
}

// ---------------------------------------------------------------------------------------------
// The files for a VM

export interface CloudInitResult {
  readonly files: CloudInitFiles;
  /** Things the guest will not get as asked (log them, maybe surface them in status). */
  readonly warnings: string[];
}

function metadataText(vm: MicroVM, key: string): Result<string | undefined, AppError> {
  const value = vm.spec.metadata[key];
  if (value === undefined) return ok(undefined);
  const decoded = decodeMetadataValue(key, value);
  if (!decoded.ok) return decoded;
  return ok(decoded.value);
}

/** True when a cloud-config text sets `key` at the top level. */
function cloudConfigHasKey(text: string | undefined, key: string): boolean {
  if (text === undefined || !isCloudConfig(text)) return false;
  const doc = parseDocument(cloudConfigBody(text), { version: '1.1' });
  return doc.errors.length === 0 && isMap(doc.contents) && doc.has(key);
}

/**
 * NoCloud reads `instance-id` (hyphen); kubelet templates and the original read `instance_id`.
 * Without `instance-id` every VM's cloud-init instance id is `nocloud`, so the delivered meta-data
 * carries both, the same value (the stored spec keeps what the client sent plus `instance_id`).
 */
function withNoCloudInstanceId(metaData: string): string {
  const doc = parseDocument(metaData, { logLevel: 'error' });
  if (doc.errors.length > 0 || !isMap(doc.contents) || doc.has('instance-id')) return metaData;
  const id: unknown = doc.get('instance_id');
  if (typeof id !== 'string' && typeof id !== 'number') return metaData;
  doc.set('instance-id', String(id));
  return doc.toString({ lineWidth: 0 });
}

/**
 * The NoCloud files for a VM about to launch with these NICs and disks (the guest's order).
 * - meta-data: the spec's, with `instance_id` (added here too if a stored spec lacks it) and
 *   NoCloud's `instance-id` of the same value.
 * - user-data: the spec's, else an empty `#cloud-config` (NoCloud needs one).
 * - vendor-data: the spec's, plus `mounts` for additional volumes with a mount point, named by
 *   the position of the volume's disk in `disks` (virtiofs volumes have no disk and no letter).
 * - network-config: the spec's own wins; else generated when `kernel.addNetworkConfig` (with
 *   `options`); else none.
 */
export function cloudInitFiles(
  vm: MicroVM,
  nics: readonly LaunchNic[],
  disks: readonly LaunchDisk[],
  options: NetworkConfigOptions = {},
): Result<CloudInitResult, AppError> {
  const warnings: string[] = [];

  const withId = injectInstanceId(vm.spec.metadata, vm.id.uid);
  if (!withId.ok) return withId;
  const metaDataValue = withId.value['meta-data'];
  if (metaDataValue === undefined) return err(appError('internal', 'meta-data is missing'));
  const decodedMetaData = decodeMetadataValue('meta-data', metaDataValue);
  if (!decodedMetaData.ok) return decodedMetaData;
  const metaData = withNoCloudInstanceId(decodedMetaData.value);

  const userData = metadataText(vm, 'user-data');
  if (!userData.ok) return userData;
  const userVendorData = metadataText(vm, 'vendor-data');
  if (!userVendorData.ok) return userVendorData;
  const userNetworkConfig = metadataText(vm, 'network-config');
  if (!userNetworkConfig.ok) return userNetworkConfig;

  const mounts: GuestMount[] = [];
  for (const volume of vm.spec.additionalVolumes) {
    if (volume.mountPoint === undefined || volume.mountPoint === '') continue;
    const index = disks.findIndex((d) => !d.root && d.id === volume.id);
    if (index < 0) {
      if (volume.source.containerImage !== undefined) return err(appError('internal', `volume ${volume.id} has no disk in the launch`));
      warnings.push(`volume ${volume.id} is not a block device (virtiofs): its mount_point ${volume.mountPoint} is not configured through cloud-init`);
      continue;
    }
    mounts.push({ device: guestDiskDevice(index), mountPoint: volume.mountPoint, readOnly: volume.readOnly });
  }
  const vendor = vendorDataWithMounts(userVendorData.value, mounts);
  warnings.push(...vendor.warnings);
  if (mounts.length > 0 && vendor.vendorData !== userVendorData.value && cloudConfigHasKey(userData.value, 'mounts'))
    warnings.push("user-data has its own `mounts`, which replaces vendor-data's volume mounts (cloud-init's default merge)");

  let network = userNetworkConfig.value;
  if (network === undefined && vm.spec.kernel.addNetworkConfig) {
    const byId = new Map(vm.spec.interfaces.map((i) => [i.deviceId, i]));
    const generated = networkConfig(
      nics.map((nic) => {
        const address = byId.get(nic.deviceId)?.address;
        return {
          deviceId: nic.deviceId,
          mac: nic.mac,
          ...(address !== undefined ? { address } : {}),
          ...(nic.allowMetadata === true ? { allowMetadata: true } : {}),
        };
      }),
      options,
    );
    if (!generated.ok) return generated;
    network = generated.value;
  }

  const files: CloudInitFiles = {
    'meta-data': metaData,
    'user-data': userData.value ?? EMPTY_CLOUD_CONFIG,
    ...(vendor.vendorData !== undefined ? { 'vendor-data': vendor.vendorData } : {}),
    ...(network !== undefined ? { 'network-config': network } : {}),
  };
  return ok({ files, warnings });
}

// ---------------------------------------------------------------------------------------------
// Firecracker MMDS

export interface MmdsPayload {
  readonly latest: Partial<Record<keyof CloudInitFiles, string>>;
}

/** Firecracker's MMDS content: NoCloud's `ds=nocloud-net;s=http://169.254.169.254/latest/` reads it. */
export function mmdsPayload(files: CloudInitFiles): MmdsPayload {
  const latest: Partial<Record<keyof CloudInitFiles, string>> = {};
  for (const key of ['meta-data', 'user-data', 'vendor-data', 'network-config'] as const) {
    const value = files[key];
    if (value !== undefined) latest[key] = value;
  }
  return { latest };
}
