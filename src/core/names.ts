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

export interface DeviceAliasParts {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/**
 * The `ip link` alias put on every device the daemon creates: `flintlock:<namespace>/<name>/<uid>`.
 * It lets a restart find orphaned devices and tell which VM they belonged to. Throws when a part
 * could make the alias ambiguous (validation upstream should already have refused such names).
 */
export function deviceAlias(uid: string, namespace: string, name: string): string {
  for (const [label, value] of [
    ['uid', uid],
    ['namespace', namespace],
    ['name', name],
  ] as const) {
    if (!ALIAS_PART.test(value)) {
      throw new Error(`cannot build a device alias: ${label} "${value}" does not match ${ALIAS_PART.source}`);
    }
  }
  return `${ALIAS_PREFIX}${namespace}/${name}/${uid}`;
}

/** The parts of an alias made by {@link deviceAlias}; undefined for any other alias. */
export function parseDeviceAlias(alias: string): DeviceAliasParts | undefined {
  if (!alias.startsWith(ALIAS_PREFIX)) return undefined;
  const parts = alias.slice(ALIAS_PREFIX.length).split('/');
  if (parts.length !== 3) return undefined;
  const [namespace, name, uid] = parts;
  if (namespace === undefined || name === undefined || uid === undefined) return undefined;
  if (!ALIAS_PART.test(namespace) || !ALIAS_PART.test(name) || !ALIAS_PART.test(uid)) return undefined;
  return { namespace, name, uid };
}
