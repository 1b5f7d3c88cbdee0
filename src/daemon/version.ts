// The daemon's release: the package's version (what `flintlockd version` prints and GetHostInfo reports).
import { readFileSync } from 'node:fs';

export function daemonVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
