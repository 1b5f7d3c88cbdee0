// Facts about this host that decide which VMMs can run: executables on PATH, a usable /dev/kvm.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Absolute path of an executable, searching PATH for a bare name. */
export function findExecutable(bin: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = bin.includes('/')
    ? [bin]
    : path
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => join(d, bin));
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
