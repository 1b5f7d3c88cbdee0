// Finding the programs the daemon runs: one lookup for every adapter and the start-up check.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** mkfs.* live in sbin, which a daemon started from a user shell may lack on PATH. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Where a bare program name is looked for: PATH, then the sbin directories. */
export function programSearchDirs(path = process.env.PATH ?? ''): string[] {
  return [...path.split(delimiter), ...SBIN_DIRS].filter((d) => d !== '');
}

/** Absolute path of an executable: `bin` itself when it has a slash, else the first in `dirs`. */
export function findExecutable(bin: string, dirs: readonly string[] = programSearchDirs()): string | undefined {
  const candidates = bin.includes('/') ? [bin] : dirs.map((d) => join(d, bin));
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
