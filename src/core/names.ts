// Names, MACs and aliases for the host network devices the daemon creates.
import { randomBytes } from 'node:crypto';

import type { IfaceType } from './model.js';

export type HostDeviceType = IfaceType;

// Kernel IFNAMSIZ is 16 including the NUL, so interface names are at most 15 bytes.
export const MAX_IFNAME_BYTES = 15;

const DEVICE_PREFIX: Record<HostDeviceType, string> = { tap: 'fltap', macvtap: 'flvtap' };
const DEVICE_SUFFIX_HEX = 7;

/**
 * A fresh host device name: `fltap` or `flvtap` + 7 random lowercase hex characters (12 or 13
 * bytes). 28 random bits keep collisions unlikely among the few hundred devices of one host; the
 * caller records the name before creating the device, so a collision is detected, not silent.
 */
export function newHostDeviceName(type: HostDeviceType): string {
  // 4 bytes give 8 hex characters; one is dropped to keep the prefix + suffix within IFNAMSIZ.
  return DEVICE_PREFIX[type] + randomBytes(4).toString('hex').slice(0, DEVICE_SUFFIX_HEX);
}

/**
 * A random locally administered unicast MAC in lowercase colon form. Locally administered (bit
 * 0x02 of the first octet) so it cannot clash with a vendor-assigned address; unicast (bit 0x01
 * clear) because the kernel refuses multicast addresses on a NIC.
 */
export function generateGuestMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) | 0x02) & 0xfe;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

const ALIAS_PREFIX = 'flintlock:';
// Same shape the API enforces for `id` and `namespace`; a ULID uid fits it too. Refusing '/' in a
// part is what makes the alias parse back unambiguously.
const ALIAS_PART = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** A daemon's owner id (its state dir's `daemon-id`). */
const OWNER = /^[a-f0-9]{12}$/;

export interface DeviceAliasParts {
  /** The daemon that made the device; undefined for an alias of the older, ownerless form. */
  readonly owner?: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/**
 * The `ip link` alias put on every device the daemon creates:
 * `flintlock:<owner>:<namespace>/<name>/<uid>`. It lets a restart find orphaned devices, tell which
 * VM they belonged to, and leave alone those another daemon (another state dir) owns. Throws when a
 * part could make the alias ambiguous (validation upstream should already have refused such names).
 */
export function deviceAlias(owner: string, uid: string, namespace: string, name: string): string {
  if (!OWNER.test(owner)) throw new Error(`cannot build a device alias: owner "${owner}" does not match ${OWNER.source}`);
  for (const [label, value] of [
    ['uid', uid],
    ['namespace', namespace],
    ['name', name],
  ] as const) {
    if (!ALIAS_PART.test(value)) {
      throw new Error(`cannot build a device alias: ${label} "${value}" does not match ${ALIAS_PART.source}`);
    }
  }
  return `${ALIAS_PREFIX}${owner}:${namespace}/${name}/${uid}`;
}

/**
 * The parts of an alias made by {@link deviceAlias}, or of the older ownerless form
 * `flintlock:<namespace>/<name>/<uid>` (owner undefined); undefined for any other alias.
 */
export function parseDeviceAlias(alias: string): DeviceAliasParts | undefined {
  if (!alias.startsWith(ALIAS_PREFIX)) return undefined;
  let rest = alias.slice(ALIAS_PREFIX.length);
  let owner: string | undefined;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    owner = rest.slice(0, colon);
    if (!OWNER.test(owner)) return undefined;
    rest = rest.slice(colon + 1);
  }
  const parts = rest.split('/');
  if (parts.length !== 3) return undefined;
  const [namespace, name, uid] = parts;
  if (namespace === undefined || name === undefined || uid === undefined) return undefined;
  if (!ALIAS_PART.test(namespace) || !ALIAS_PART.test(name) || !ALIAS_PART.test(uid)) return undefined;
  return { ...(owner !== undefined ? { owner } : {}), namespace, name, uid };
}
