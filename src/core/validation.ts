// Defaults and validation of a create request (COMPAT §2.3 and §2.9). Every rule reports the
// field by its API (proto) name and says what is wrong with the value; all problems are reported
// at once. Nothing is stored unless this passes.
import { isIP } from 'node:net';
import { echo, identifierProblem, inImagePathProblem } from './identifiers.js';
import { isImageRefError, parseImageRef } from './image-ref.js';
import { DEFAULT_METADATA_KB, REQUEST_LIMITS } from './limits.js';
import type { KernelSpec, MicroVMSpec, NetworkInterfaceSpec, VolumeSpec } from './model.js';
import { MAX_IFNAME_BYTES } from './names.js';
import type { ProviderCapability, ProviderRegistry } from './ports.js';
import { appError, err, ok, type AppError, type Result } from './result.js';

/**
 * A create request after conversion from the wire, before defaults: the spec's shape with the
 * name and namespace beside it, the kernel possibly absent, and zero/empty meaning "default".
 */
export interface CreateInput extends Omit<MicroVMSpec, 'kernel'> {
  readonly name: string;
  readonly namespace: string;
  /** Absent when the request had no kernel message. */
  readonly kernel?: KernelSpec;
}

export interface ValidatedCreate {
  readonly namespace: string;
  readonly name: string;
  readonly spec: MicroVMSpec;
}

export interface ValidationLimits {
  readonly minVcpu: number;
  readonly maxVcpu: number;
  readonly minMemoryMb: number;
  readonly maxMemoryMb: number;
  /** Metadata keys plus values, in bytes as sent (`maximum-metadata-kb`). */
  readonly maxMetadataBytes: number;
}

export const DEFAULT_LIMITS: ValidationLimits = { minVcpu: 1, maxVcpu: 64, minMemoryMb: 128, maxMemoryMb: 32768, maxMetadataBytes: DEFAULT_METADATA_KB * 1024 };
export const DEFAULT_NAMESPACE = 'default';

/** The unbridged tap through which a Firecracker guest reaches MMDS (COMPAT §3). */
export const METADATA_INTERFACE: NetworkInterfaceSpec = {
  deviceId: 'eth0',
  type: 'tap',
  guestMac: 'aa:ff:00:00:00:01',
  address: { address: '169.254.0.1/16', nameservers: [] },
  allowMetadata: true,
};
export const DEFAULT_VCPU = 2;
export const DEFAULT_MEMORY_MB = 1024;

const MAC_PATTERN = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$/;

export type ProviderLookup = Pick<ProviderRegistry, 'names' | 'get' | 'defaultName'>;

/** Checks that need the host; `undefined` means fine, else the problem. */
export interface HostChecks {
  /** A virtiofs share must be an existing directory under an allowed root, never `/`. */
  virtiofsSource(path: string): string | undefined;
}

export function validateCreate(input: CreateInput, limits: ValidationLimits, providers: ProviderLookup, host?: HostChecks): Result<ValidatedCreate, AppError> {
  const problems: string[] = [];
  const problem = (field: string, text: string): void => {
    problems.push(`${field}: ${text}`);
  };

  const namespace = input.namespace === '' ? DEFAULT_NAMESPACE : input.namespace;
  const vcpu = input.vcpu === 0 ? DEFAULT_VCPU : input.vcpu;
  const memoryMb = input.memoryMb === 0 ? DEFAULT_MEMORY_MB : input.memoryMb;
  const provider = input.provider === '' ? providers.defaultName() : input.provider;

  const identifier = (field: string, kind: Parameters<typeof identifierProblem>[0], value: string): boolean => {
    const wrong = identifierProblem(kind, value);
    if (wrong !== undefined) problem(field, wrong);
    return wrong === undefined;
  };
  if (input.name === '') problem('id', 'is required');
  else identifier('id', 'name', input.name);
  identifier('namespace', 'name', namespace);
  checkLabels(input.labels, problem);
  checkMetadata(input.metadata, limits.maxMetadataBytes, problem);

  if (!Number.isInteger(vcpu) || vcpu < limits.minVcpu || vcpu > limits.maxVcpu)
    problem('vcpu', `must be between ${limits.minVcpu} and ${limits.maxVcpu}, got ${vcpu}`);
  if (!Number.isInteger(memoryMb) || memoryMb < limits.minMemoryMb || memoryMb > limits.maxMemoryMb) {
    problem('memory_in_mb', `must be between ${limits.minMemoryMb} and ${limits.maxMemoryMb}, got ${memoryMb}`);
  }

  if (input.kernel === undefined) problem('kernel', 'is required');
  else {
    checkImage('kernel.image', input.kernel.image, problem);
    if (input.kernel.filename !== undefined) checkInImagePath('kernel.filename', input.kernel.filename, problem);
    checkCmdline(input.kernel.cmdline, problem);
  }
  if (input.initrd !== undefined) {
    checkImage('initrd.image', input.initrd.image, problem);
    if (input.initrd.filename !== undefined) checkInImagePath('initrd.filename', input.initrd.filename, problem);
  }

  if (input.rootVolume === undefined && input.initrd === undefined) problem('root_volume', 'a root volume or an initrd is required');
  const volumeIds = new Set<string>();
  let virtiofsCount = 0;
  const checkVolume = (field: string, v: VolumeSpec): void => {
    if (v.id === '') problem(`${field}.id`, 'is required');
    else if (identifier(`${field}.id`, 'name', v.id) && volumeIds.has(v.id)) problem(`${field}.id`, `${echo(v.id)} is used by another volume of this microvm`);
    volumeIds.add(v.id);
    if (v.partitionId !== undefined) identifier(`${field}.partition_id`, 'name', v.partitionId);
    const { containerImage, virtiofsPath } = v.source;
    if ((containerImage === undefined) === (virtiofsPath === undefined)) {
      problem(`${field}.source`, 'must have exactly one of container_source or virtiofs_source');
    }
    if (containerImage !== undefined) checkImage(`${field}.source.container_source`, containerImage, problem);
    if (virtiofsPath !== undefined) {
      virtiofsCount += 1;
      const pathProblem = guestOrHostPathProblem(virtiofsPath, REQUEST_LIMITS.hostPathBytes);
      if (pathProblem !== undefined) problem(`${field}.source.virtiofs_source`, pathProblem);
      else if (!virtiofsPath.startsWith('/')) problem(`${field}.source.virtiofs_source`, `${echo(virtiofsPath)} must be an absolute host path`);
      else {
        const hostProblem = host?.virtiofsSource(virtiofsPath);
        if (hostProblem !== undefined) problem(`${field}.source.virtiofs_source`, hostProblem);
      }
    }
    if (v.sizeMb !== undefined && (!Number.isInteger(v.sizeMb) || v.sizeMb < 0 || v.sizeMb > REQUEST_LIMITS.volumeSizeMb))
      problem(`${field}.size_in_mb`, `must be between 0 and ${REQUEST_LIMITS.volumeSizeMb} (1 TiB), got ${v.sizeMb}`);
    if (v.mountPoint !== undefined && v.mountPoint !== '') {
      const pathProblem = guestOrHostPathProblem(v.mountPoint, REQUEST_LIMITS.guestPathBytes);
      if (pathProblem !== undefined) problem(`${field}.mount_point`, pathProblem);
      else if (!v.mountPoint.startsWith('/')) problem(`${field}.mount_point`, `${echo(v.mountPoint)} must be an absolute guest path`);
    }
  };
  if (input.rootVolume !== undefined) {
    checkVolume('root_volume', input.rootVolume);
    if (input.rootVolume.source.virtiofsPath !== undefined) problem('root_volume.source', 'the root volume cannot be a virtiofs volume');
  }
  if (input.additionalVolumes.length > REQUEST_LIMITS.additionalVolumes)
    problem('additional_volumes', `at most ${REQUEST_LIMITS.additionalVolumes} volumes are allowed, got ${input.additionalVolumes.length}`);
  else input.additionalVolumes.forEach((v, i) => checkVolume(`additional_volumes[${i}]`, v));
  if (virtiofsCount > 1) problem('additional_volumes', `at most one virtiofs volume is allowed, got ${virtiofsCount}`);

  if (input.interfaces.length === 0) problem('interfaces', 'at least one network interface is required');
  if (input.interfaces.length > REQUEST_LIMITS.interfaces)
    problem('interfaces', `at most ${REQUEST_LIMITS.interfaces} network interfaces are allowed, got ${input.interfaces.length}`);
  const deviceIds = new Set<string>();
  input.interfaces.slice(0, REQUEST_LIMITS.interfaces).forEach((iface, i) => {
    const field = `interfaces[${i}]`;
    if (identifier(`${field}.device_id`, 'device', iface.deviceId) && deviceIds.has(iface.deviceId))
      problem(`${field}.device_id`, `${echo(iface.deviceId)} is used by another interface of this microvm`);
    deviceIds.add(iface.deviceId);
    // convert.ts keeps an enum number it doesn't know as `unknown(N)`: name it here.
    if (iface.type !== 'macvtap' && iface.type !== 'tap')
      problem(`${field}.type`, `${String(iface.type)} is not a known interface type (MACVTAP = 0 or TAP = 1)`);
    if (iface.guestMac !== undefined) {
      const macProblem = checkUnicastMac(iface.guestMac);
      if (macProblem !== undefined) problem(`${field}.guest_mac`, macProblem);
    }
    if (iface.bridgeName !== undefined && !isNetworkDeviceName(iface.bridgeName)) {
      problem(
        `${field}.overrides.bridge_name`,
        `${echo(iface.bridgeName)} is not a valid network device name (1-${MAX_IFNAME_BYTES} bytes, not '.' or '..', no whitespace, control characters, '/' or ':')`,
      );
    }
    const addr = iface.address;
    if (addr !== undefined) {
      if (!isCidr(addr.address)) problem(`${field}.address.address`, `${echo(addr.address)} is not a CIDR address such as 192.168.1.10/24 or fd00::10/64`);
      if (addr.gateway !== undefined && addr.gateway !== '' && isIP(stripPrefix(addr.gateway)) === 0)
        problem(`${field}.address.gateway`, `${echo(addr.gateway)} is not an IP address`);
      if (addr.nameservers.length > REQUEST_LIMITS.nameservers)
        problem(`${field}.address.nameservers`, `at most ${REQUEST_LIMITS.nameservers} are allowed, got ${addr.nameservers.length}`);
      else
        addr.nameservers.forEach((ns, j) => {
          if (isIP(ns) === 0) problem(`${field}.address.nameservers[${j}]`, `${echo(ns)} is not an IP address`);
        });
    }
  });

  const chosen = providers.get(provider);
  if (chosen === undefined) {
    problem('provider', `${echo(provider)} is not a known provider (known: ${providers.names().join(', ')})`);
  } else {
    const lacks = (cap: ProviderCapability): boolean => !chosen.capabilities.has(cap);
    if (input.interfaces.some((i) => i.type === 'macvtap') && lacks('macvtap'))
      problem('interfaces', `macvtap network interfaces not supported by the microvm provider ${provider}`);
    if (input.interfaces.some((i) => i.type === 'tap') && lacks('tap'))
      problem('interfaces', `tap network interfaces not supported by the microvm provider ${provider}`);
    if (virtiofsCount > 0 && lacks('virtiofs')) problem('additional_volumes', `virtiofs not supported by the microvm provider ${provider}`);
    if (input.allowGuestAgent && lacks('vsock')) problem('allow_guest_agent', `guest agent (vsock) not supported by the microvm provider ${provider}`);
    if (!lacks('metadata-service')) {
      input.interfaces.forEach((iface, i) => {
        if (iface.deviceId === METADATA_INTERFACE.deviceId)
          problem(`interfaces[${i}].device_id`, `eth0 is reserved for the metadata interface of the microvm provider ${provider}`);
      });
    }
  }

  if (problems.length > 0 || input.kernel === undefined) {
    return err(appError('invalid-argument', `invalid microvm spec: ${problems.join('; ')}`));
  }
  const spec: MicroVMSpec = {
    labels: input.labels,
    vcpu,
    memoryMb,
    kernel: input.kernel,
    ...(input.initrd !== undefined ? { initrd: input.initrd } : {}),
    ...(input.rootVolume !== undefined ? { rootVolume: input.rootVolume } : {}),
    additionalVolumes: input.additionalVolumes,
    interfaces: [
      // A metadata-service provider (Firecracker MMDS) gets its metadata NIC first, as eth0 (COMPAT §3).
      ...(chosen?.capabilities.has('metadata-service') === true ? [METADATA_INTERFACE] : []),
      ...input.interfaces.map((i) => (i.guestMac === undefined ? i : { ...i, guestMac: normalizeMac(i.guestMac) })),
    ],
    metadata: input.metadata,
    provider,
    allowGuestAgent: input.allowGuestAgent,
  };
  return ok({ namespace, name: input.name, spec });
}

function checkImage(field: string, ref: string, problem: (field: string, text: string) => void): void {
  if (ref === '') {
    problem(field, 'is required');
    return;
  }
  if (Buffer.byteLength(ref) > REQUEST_LIMITS.imageRefBytes) {
    problem(field, `${echo(ref)} is longer than ${REQUEST_LIMITS.imageRefBytes} bytes`);
    return;
  }
  const parsed = parseImageRef(ref);
  if (isImageRefError(parsed)) problem(field, `${echo(ref)} is not a valid image reference: it ${parsed.error}`);
}

function checkInImagePath(field: string, path: string, problem: (field: string, text: string) => void): void {
  const wrong = inImagePathProblem(path);
  if (wrong !== undefined) problem(field, wrong);
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A path the guest or the host will see: bounded, and no control characters (NUL, newline). */
function guestOrHostPathProblem(path: string, maxBytes: number): string | undefined {
  if (Buffer.byteLength(path) > maxBytes) return `${echo(path)} is longer than ${maxBytes} bytes`;
  if (CONTROL.test(path)) return `${echo(path)} must not contain control characters`;
  return undefined;
}

function checkLabels(labels: Readonly<Record<string, string>>, problem: (field: string, text: string) => void): void {
  const entries = Object.entries(labels);
  if (entries.length > REQUEST_LIMITS.labels) {
    problem('labels', `at most ${REQUEST_LIMITS.labels} labels are allowed, got ${entries.length}`);
    return;
  }
  for (const [key, value] of entries) {
    const wrong = identifierProblem('labelKey', key);
    if (wrong !== undefined) problem('labels', `key ${wrong}`);
    else if (Buffer.byteLength(value) > REQUEST_LIMITS.labelValueBytes || CONTROL.test(value))
      problem(`labels[${key}]`, `${echo(value)} must be at most ${REQUEST_LIMITS.labelValueBytes} bytes without control characters`);
  }
}

function checkMetadata(metadata: Readonly<Record<string, string>>, maxBytes: number, problem: (field: string, text: string) => void): void {
  const entries = Object.entries(metadata);
  if (entries.length > REQUEST_LIMITS.metadataKeys) {
    problem('metadata', `at most ${REQUEST_LIMITS.metadataKeys} keys are allowed, got ${entries.length}`);
    return;
  }
  let total = 0;
  for (const [key, value] of entries) {
    const wrong = identifierProblem('name', key);
    if (wrong !== undefined) problem('metadata', `key ${wrong}`);
    total += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (total > maxBytes) problem('metadata', `is ${total} bytes, more than the ${maxBytes} this daemon accepts (maximum-metadata-kb)`);
}

/** Kernel command-line keys: what Linux parameters look like (`console`, `net.ifnames`, `ds`). */
const CMDLINE_KEY = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$/;

function checkCmdline(cmdline: Readonly<Record<string, string>>, problem: (field: string, text: string) => void): void {
  const entries = Object.entries(cmdline);
  if (entries.length > REQUEST_LIMITS.cmdlineEntries) {
    problem('kernel.cmdline', `at most ${REQUEST_LIMITS.cmdlineEntries} entries are allowed, got ${entries.length}`);
    return;
  }
  let total = 0;
  for (const [key, value] of entries) {
    if (!CMDLINE_KEY.test(key) || Buffer.byteLength(key) > REQUEST_LIMITS.cmdlineKeyBytes)
      problem('kernel.cmdline', `key ${echo(key)} must be 1-${REQUEST_LIMITS.cmdlineKeyBytes} characters of letters, digits, '_', '.', ':', '/' or '-'`);
    // A double quote would end the quoting of a value with spaces; control characters end the line.
    else if (CONTROL.test(value) || value.includes('"')) problem(`kernel.cmdline[${key}]`, `${echo(value)} must not contain control characters or '"'`);
    total += Buffer.byteLength(key) + Buffer.byteLength(value) + 2;
  }
  if (total > REQUEST_LIMITS.cmdlineBytes)
    problem('kernel.cmdline', `renders to about ${total} bytes, more than the ${REQUEST_LIMITS.cmdlineBytes} left for it in Linux's 2048-byte command line`);
}

/**
 * The kernel's dev_valid_name(), as the iproute2 adapter enforces it before running `ip`: counted
 * in bytes (15 characters of 'é' are 30), and no control characters either.
 */
function isNetworkDeviceName(name: string): boolean {
  const bytes = Buffer.byteLength(name);
  return bytes >= 1 && bytes <= MAX_IFNAME_BYTES && name !== '.' && name !== '..' && !/[\s/:\p{Cc}]/u.test(name);
}

/** Returns what is wrong with a MAC for a guest NIC, or undefined when it is fine. */
export function checkUnicastMac(mac: string): string | undefined {
  if (!MAC_PATTERN.test(mac)) return `${echo(mac)} is not a MAC address such as 02:00:00:00:00:01`;
  const firstOctet = Number.parseInt(mac.slice(0, 2), 16);
  if ((firstOctet & 1) === 1) return `${echo(mac)} is a multicast address; a unicast MAC is required`;
  if (/^(0{2}[:-]){5}0{2}$/.test(mac)) return `${echo(mac)} is the all-zero address`;
  return undefined;
}

export function normalizeMac(mac: string): string {
  return mac.toLowerCase().replaceAll('-', ':');
}

function stripPrefix(ip: string): string {
  const slash = ip.indexOf('/');
  return slash >= 0 ? ip.slice(0, slash) : ip;
}

export function isCidr(value: string): boolean {
  const slash = value.indexOf('/');
  if (slash < 0) return false;
  const family = isIP(value.slice(0, slash));
  const prefixText = value.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText)) return false;
  const prefix = Number(prefixText);
  return prefix <= (family === 4 ? 32 : 128);
}
