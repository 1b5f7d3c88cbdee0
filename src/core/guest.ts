// How the guest names what the VMM gives it; shared by every provider and by cloud-init, so the
// kernel command line and the vendor-data mounts agree with the VMM's real device order.
import type { LaunchDisk } from './ports.js';

/** The guest device name of the disk at `index` in the guest's order: vda, vdb, ..., vdz, vdaa. */
export function guestDiskName(index: number): string {
  let name = '';
  let n = index;
  do {
    name = String.fromCharCode(97 + (n % 26)) + name;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `vd${name}`;
}

/**
 * The kernel command line: the provider's defaults with the user's entries over them (the user
 * wins per key). Defaults keep their order, the user's extra keys follow sorted (stable output,
 * unlike the original's Go map order). An empty value renders a bare flag; a value with
 * whitespace is double-quoted.
 */
export function renderCmdline(defaults: Readonly<Record<string, string>>, user: Readonly<Record<string, string>>): string {
  const merged = new Map<string, string>(Object.entries(defaults));
  for (const key of Object.keys(user).sort()) merged.set(key, user[key] ?? '');
  const parts: string[] = [];
  for (const [key, value] of merged) {
    if (value === '') parts.push(key);
    else parts.push(`${key}=${/\s/.test(value) ? `"${value}"` : value}`);
  }
  return parts.join(' ');
}

/** `root=/dev/vdX` and `rw`/`ro` for the root disk (by its position in the guest's disk order), or nothing. */
export function rootDeviceArgs(disks: readonly LaunchDisk[]): Record<string, string> {
  const index = disks.findIndex((d) => d.root);
  const root = disks[index];
  return root === undefined ? {} : { root: `/dev/${guestDiskName(index)}`, [root.readOnly ? 'ro' : 'rw']: '' };
}
