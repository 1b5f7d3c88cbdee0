// The host dependency list (host-dependencies.txt at the repository root, shipped beside dist/):
// which Debian package provides each program flintlock-ts runs, so a missing program is reported
// with the package that brings it. scripts/setup.sh installs from the same file.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface HostDependency {
  /** Debian package name. */
  readonly package: string;
  /** `install` (apt-get install) or `extract` (unpacked into .cache/, never installed). */
  readonly how: 'install' | 'extract';
  /** Who needs it: daemon, qemu, cloudhypervisor, firecracker, build, demo, test, ci. */
  readonly who: readonly string[];
  /** Programs we run from it (bare names). */
  readonly programs: readonly string[];
}

/** Parses the list: `package how who[,who...] program...` per line, `#` comments. */
export function parseHostDependencies(text: string): HostDependency[] {
  const deps: HostDependency[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const [pkg, how, who, ...programs] = line.split(/\s+/);
    if (pkg === undefined || (how !== 'install' && how !== 'extract') || who === undefined || programs.length === 0) {
      throw new Error(`host-dependencies.txt line ${index + 1}: expected "package install|extract who program..." (got "${raw}")`);
    }
    deps.push({ package: pkg, how, who: who.split(','), programs });
  });
  return deps;
}

export const HOST_DEPENDENCIES_FILE = new URL('../../../host-dependencies.txt', import.meta.url);

let cached: HostDependency[] | undefined;

/** The list shipped with this build; empty if the file is missing (messages then name no package). */
export function hostDependencies(): readonly HostDependency[] {
  if (cached === undefined) {
    try {
      cached = parseHostDependencies(readFileSync(HOST_DEPENDENCIES_FILE, 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      cached = [];
    }
  }
  return cached;
}

/** The Debian package that provides `program` (a bare name or a path), if the list has it. */
export function packageProviding(program: string, deps: readonly HostDependency[] = hostDependencies()): string | undefined {
  const name = basename(program);
  return deps.find((d) => d.programs.includes(name))?.package;
}

/** `"qemu-img" not found (install the Debian package qemu-utils)`: what an operator reads. */
export function missingProgramMessage(program: string, deps?: readonly HostDependency[]): string {
  const pkg = packageProviding(program, deps);
  return pkg !== undefined ? `"${program}" not found (install the Debian package ${pkg})` : `"${program}" not found`;
}
