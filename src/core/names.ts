// Host device names, guest MACs and device aliases: policies of the core, not of an adapter.
import { randomBytes } from 'node:crypto';
import type { IfaceType, VmId } from './model.js';

/** `fltap`/`flvtap` + 7 hex: 12-13 bytes, within IFNAMSIZ (15) and recognisable as ours. */
export function newHostDeviceName(type: IfaceType): string {
  const prefix = type === 'tap' ? 'fltap' : 'flvtap';
  return prefix + randomBytes(4).toString('hex').slice(0, 7);
}

/** A random locally administered (bit 1 set) unicast (bit 0 clear) MAC. */
export function generateGuestMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) | 0x02) & 0xfe;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const ALIAS_PREFIX = 'flintlock:';

/** The `ip link` alias that names a device's VM, so orphans can be found after a crash. */
export function deviceAlias(id: VmId): string {
  return `${ALIAS_PREFIX}${id.namespace}/${id.name}/${id.uid}`;
}

export function parseDeviceAlias(alias: string): VmId | undefined {
  if (!alias.startsWith(ALIAS_PREFIX)) return undefined;
  const parts = alias.slice(ALIAS_PREFIX.length).split('/');
  if (parts.length !== 3) return undefined;
  const [namespace, name, uid] = parts as [string, string, string];
  if (namespace === '' || name === '' || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(uid)) return undefined;
  return { namespace, name, uid };
}
