// Builds the MicroVMSpec that `fl microvm create` sends, from already-parsed command-line options.
// Pure apart from reading metadata files (passed in as a function so tests need no disk).
// The shape follows the original fl (labels `created-with: fl`, root volume `root` at `/`), with
// its silent fallbacks turned into errors: a mistyped flag should never create a different VM.
import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import {
  MicroVMSpecSchema,
  NetworkInterfaceSchema,
  NetworkInterface_IfaceType,
  VolumeSchema,
  type MicroVMSpec,
  type NetworkInterface,
  type Volume,
} from '../../gen/flintlock/types/microvm_pb.js';

/** A problem with what the user typed; the CLI reports it as a usage error (exit 2). */
export class SpecError extends Error {
  override readonly name = 'SpecError';
}

export interface CreateOptions {
  readonly name?: string;
  readonly nameAutogenerate?: boolean;
  readonly namespace: string;
  readonly vcpu: number;
  readonly memoryMb: number;
  readonly kernelImage: string;
  readonly kernelFilename?: string;
  /** `key=value` or a bare `flag`. */
  readonly kernelCmdline: readonly string[];
  readonly addNetconf: boolean;
  readonly rootImage?: string;
  readonly initrdImage?: string;
  readonly initrdFilename?: string;
  /** `name[:type[:mac][:cidr][:bridge]]`. */
  readonly networkInterfaces: readonly string[];
  /** `key=path`. */
  readonly metadataFromFile: readonly string[];
  /** `name=image=mountpoint`. */
  readonly containerVolumes: readonly string[];
  readonly provider?: string;
}

export type ReadFile = (path: string) => Buffer;

const MAC_AT_START = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}(?=:|$)/;
// The prefix length ends an address, so the colons inside IPv6 addresses are not separators.
const CIDR_AT_START = /^([^/\s]+\/\d{1,3})(?=:|$)/;

const INTERFACE_FORMAT = 'expected name[:type[:mac][:cidr][:bridge]] with type macvtap or tap';

/**
 * Parses `--network-interface`. MACs and IPv6 addresses contain colons themselves, so the fields
 * after the type are recognised by shape rather than split blindly (the original split on every
 * colon, which made MACs unusable). Empty fields are allowed: `eth1:tap::10.0.0.2/24`.
 */
export function parseNetworkInterface(value: string): NetworkInterface {
  const bad = (why: string): SpecError => new SpecError(`invalid --network-interface "${value}": ${why}`);
  const firstColon = value.indexOf(':');
  const name = firstColon < 0 ? value : value.slice(0, firstColon);
  if (name === '') throw bad(`the interface name is empty; ${INTERFACE_FORMAT}`);
  if (name === 'eth0') throw new SpecError('you cannot use eth0 as the name of the interface as this is reserved');
  if (firstColon < 0) return create(NetworkInterfaceSchema, { deviceId: name, type: NetworkInterface_IfaceType.MACVTAP });

  let rest = value.slice(firstColon + 1);
  const typeEnd = rest.indexOf(':');
  const typeText = typeEnd < 0 ? rest : rest.slice(0, typeEnd);
  rest = typeEnd < 0 ? '' : rest.slice(typeEnd + 1);
  let type: NetworkInterface_IfaceType;
  if (typeText === '' || typeText === 'macvtap') type = NetworkInterface_IfaceType.MACVTAP;
  else if (typeText === 'tap') type = NetworkInterface_IfaceType.TAP;
  else throw bad(`unknown interface type "${typeText}"; ${INTERFACE_FORMAT}`);

  let mac: string | undefined;
  const macMatch = MAC_AT_START.exec(rest);
  if (macMatch !== null) {
    mac = macMatch[0];
    rest = rest.slice(mac.length + 1);
  } else if (rest.startsWith(':')) {
    rest = rest.slice(1);
  } else if (rest !== '' && !CIDR_AT_START.test(rest)) {
    throw bad(`"${rest}" is neither a MAC address (such as 02:00:00:00:00:01) nor a CIDR address (such as 10.0.0.2/24); ${INTERFACE_FORMAT}`);
  }

  let cidr: string | undefined;
  const cidrMatch = CIDR_AT_START.exec(rest);
  if (cidrMatch?.[1] !== undefined) {
    cidr = cidrMatch[1];
    rest = rest.slice(cidr.length + 1);
  } else if (rest.startsWith(':')) {
    rest = rest.slice(1);
  } else if (rest !== '' && rest.includes(':')) {
    throw bad(`"${rest}" is not a CIDR address such as 10.0.0.2/24 or fd00::2/64; ${INTERFACE_FORMAT}`);
  } else if (rest !== '') {
    // A lone word here is ambiguous (an address without prefix, or a bridge without the
    // separator for an empty address): refuse rather than guess.
    throw bad(`"${rest}" is not a CIDR address such as 10.0.0.2/24 (to give only a bridge, leave the address empty: name:tap:::bridge)`);
  }

  const bridge = rest === '' ? undefined : rest;
  if (bridge !== undefined && bridge.includes(':')) throw bad(`"${bridge}" is not a bridge name; ${INTERFACE_FORMAT}`);
  return create(NetworkInterfaceSchema, {
    deviceId: name,
    type,
    ...(mac !== undefined ? { guestMac: mac } : {}),
    ...(cidr !== undefined ? { address: { address: cidr } } : {}),
    ...(bridge !== undefined ? { overrides: { bridgeName: bridge } } : {}),
  });
}

function splitOnce(value: string, separator: string): [string, string] | undefined {
  const at = value.indexOf(separator);
  return at < 0 ? undefined : [value.slice(0, at), value.slice(at + separator.length)];
}

/** `--metadata-from-file key=path`: the file's bytes, base64-encoded as the API contract wants. */
export function parseMetadataFromFile(value: string, readFile: ReadFile): [string, string] {
  const parts = splitOnce(value, '=');
  if (parts === undefined || parts[0] === '' || parts[1] === '') throw new SpecError(`invalid --metadata-from-file "${value}": expected key=path`);
  const [key, path] = parts;
  let content: Buffer;
  try {
    content = readFile(path);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new SpecError(`cannot read metadata file for key "${key}": ${reason}`);
  }
  return [key, content.toString('base64')];
}

/** `--container-volume name=image=mountpoint`. Image references may not contain `=`, so this is unambiguous. */
export function parseContainerVolume(value: string): Volume {
  const parts = value.split('=');
  if (parts.length !== 3 || parts.some((p) => p === '')) {
    throw new SpecError(`invalid --container-volume "${value}": expected name=containerimage=mountpoint`);
  }
  const [id = '', image = '', mountPoint = ''] = parts;
  return create(VolumeSchema, { id, isReadOnly: false, mountPoint, source: { containerSource: image } });
}

/** `--kernel-cmdline key=value`; a bare word (`quiet`) is a flag with an empty value. */
export function parseKernelCmdline(values: readonly string[]): Record<string, string> {
  const cmdline: Record<string, string> = {};
  for (const value of values) {
    const parts = splitOnce(value, '=');
    const [key, arg] = parts ?? [value, ''];
    if (key === '') throw new SpecError(`invalid --kernel-cmdline "${value}": expected key=value`);
    cmdline[key] = arg;
  }
  return cmdline;
}

const ADJECTIVES = [
  'amber',
  'brave',
  'calm',
  'eager',
  'fancy',
  'gentle',
  'happy',
  'jolly',
  'keen',
  'lucid',
  'merry',
  'nimble',
  'quiet',
  'rapid',
  'sunny',
  'witty',
];
const NOUNS = [
  'badger',
  'comet',
  'falcon',
  'glacier',
  'harbor',
  'lynx',
  'meadow',
  'nebula',
  'otter',
  'pine',
  'quartz',
  'raven',
  'summit',
  'tundra',
  'willow',
  'zephyr',
];

/**
 * A random name for `--name-autogenerate`, like `brave-otter-3f9a`. Hyphens rather than the
 * original's underscores because names also become host labels.
 */
export function generateName(random: (bytes: number) => Buffer = randomBytes): string {
  const bytes = random(4);
  const adjective = ADJECTIVES[(bytes[0] ?? 0) % ADJECTIVES.length] ?? 'calm';
  const noun = NOUNS[(bytes[1] ?? 0) % NOUNS.length] ?? 'otter';
  return `${adjective}-${noun}-${bytes.subarray(2, 4).toString('hex')}`;
}

/** Resolves `--name` / `--name-autogenerate` (exactly one of them). */
export function resolveName(name: string | undefined, autogenerate: boolean | undefined, random?: (bytes: number) => Buffer): string {
  const hasName = name !== undefined && name !== '';
  if (hasName && autogenerate === true) throw new SpecError('only one of --name or --name-autogenerate can be specified');
  if (hasName) return name;
  if (autogenerate === true) return generateName(random);
  throw new SpecError('you must supply one of --name or --name-autogenerate');
}

export function buildSpec(options: CreateOptions, readFile: ReadFile, random?: (bytes: number) => Buffer): MicroVMSpec {
  const id = resolveName(options.name, options.nameAutogenerate, random);
  if (options.kernelImage === '') throw new SpecError('--kernel-image is required');
  if ((options.initrdFilename ?? '') !== '' && (options.initrdImage ?? '') === '') throw new SpecError('--initrd-filename needs --initrd-image');
  const metadata = Object.fromEntries(options.metadataFromFile.map((m) => parseMetadataFromFile(m, readFile)));
  const rootImage = options.rootImage ?? '';
  const initrdImage = options.initrdImage ?? '';
  const provider = options.provider ?? '';
  return create(MicroVMSpecSchema, {
    id,
    namespace: options.namespace,
    labels: { 'created-with': 'fl' },
    vcpu: options.vcpu,
    memoryInMb: options.memoryMb,
    kernel: {
      image: options.kernelImage,
      cmdline: parseKernelCmdline(options.kernelCmdline),
      addNetworkConfig: options.addNetconf,
      ...(options.kernelFilename !== undefined && options.kernelFilename !== '' ? { filename: options.kernelFilename } : {}),
    },
    ...(initrdImage !== ''
      ? {
          initrd: {
            image: initrdImage,
            ...(options.initrdFilename !== undefined && options.initrdFilename !== '' ? { filename: options.initrdFilename } : {}),
          },
        }
      : {}),
    ...(rootImage !== '' ? { rootVolume: { id: 'root', isReadOnly: false, mountPoint: '/', source: { containerSource: rootImage } } } : {}),
    additionalVolumes: options.containerVolumes.map(parseContainerVolume),
    interfaces: options.networkInterfaces.map(parseNetworkInterface),
    metadata,
    ...(provider !== '' ? { provider } : {}),
  });
}
