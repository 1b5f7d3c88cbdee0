// Host checks for virtiofs shares (issue 3): a share must be an existing directory under one of
// the configured `virtiofs-allowed-roots`, never `/`. Paths are resolved (symlinks included)
// before comparing, so a link inside an allowed root can't point the guest at /etc.
import { realpathSync, statSync } from 'node:fs';
import { sep } from 'node:path';
import { echo } from '../../core/identifiers.js';
import type { HostChecks } from '../../core/validation.js';

function resolved(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

export function virtiofsHostChecks(allowedRoots: readonly string[]): HostChecks {
  const roots = allowedRoots.map((r) => resolved(r) ?? r).filter((r) => r !== '/');
  return {
    virtiofsSource(path: string): string | undefined {
      if (roots.length === 0) return 'virtiofs shares are disabled: no virtiofs-allowed-roots are configured';
      const real = resolved(path);
      if (real === undefined) return `${echo(path)} does not exist`;
      if (real === '/') return 'the host root directory cannot be shared';
      if (!statSync(real).isDirectory()) return `${echo(path)} is not a directory`;
      if (!roots.some((root) => real === root || real.startsWith(root.endsWith(sep) ? root : root + sep))) {
        return `${echo(path)} is not under an allowed root (virtiofs-allowed-roots: ${allowedRoots.join(', ')})`;
      }
      return undefined;
    },
  };
}
