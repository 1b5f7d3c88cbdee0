// The stand-in VMM (qemu-standin.pl beside this file) for the control-plane bench and its test:
// its path, and how to see from /proc which stand-ins run and which taps they hold.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const QEMU_STANDIN = join(import.meta.dirname, 'qemu-standin.pl');

/** The pids whose command line names both the stand-in and `mention` (e.g. a daemon's state dir). */
export function standinPids(mention: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(QEMU_STANDIN) && cmdline.includes(mention)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** The taps the fds of `pid` are attached to (`iff:` in /proc/<pid>/fdinfo/<fd>: tun/tap fds only). */
export function attachedTaps(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fdinfo`).flatMap((fd) => {
    try {
      const m = /^iff:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      return m?.[1] !== undefined ? [m[1]] : [];
    } catch {
      return [];
    }
  });
}
