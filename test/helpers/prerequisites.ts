// What a test suite needs from the host, checked in one place. Outside CI a suite whose
// prerequisites are missing is skipped with what to install; under CI=true it fails instead,
// naming the prerequisite and its package, so a skip can never hide a missing part.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it, type SuiteContext, type TestOptions } from 'node:test';
import { packageProviding } from '../../src/adapters/host/dependencies.js';
import { findExecutable } from '../../src/adapters/host/programs.js';

export interface Prerequisite {
  /** What is missing, or undefined when it is there. */
  readonly check: () => string | undefined;
}

export const IN_CI = process.env.CI === 'true';

/** Reference documents shared with the other projects, beside the repository. */
export const SHARED_REF = resolve(import.meta.dirname, '../../../shared/ref');

/** A program on PATH (or in sbin); the message names its Debian package from host-dependencies.txt. */
export function program(name: string): Prerequisite {
  return {
    check: () => {
      if (findExecutable(name) !== undefined) return undefined;
      const pkg = packageProviding(name);
      return pkg !== undefined ? `${name} (Debian package ${pkg}: scripts/setup.sh installs it)` : `${name} (not in host-dependencies.txt)`;
    },
  };
}

export const programs = (...names: string[]): Prerequisite[] => names.map(program);

export const ROOT: Prerequisite = {
  check: () => (process.getuid?.() === 0 ? undefined : 'root (network namespaces, taps, macvtaps)'),
};

/** Root, and `ip netns` working. */
export const NETNS: Prerequisite = {
  check: () => {
    const notRoot = ROOT.check();
    if (notRoot !== undefined) return notRoot;
    const ip = program('ip').check();
    if (ip !== undefined) return ip;
    try {
      execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
      return undefined;
    } catch (e) {
      return `network namespaces (ip netns list failed: ${String(e)})`;
    }
  },
};

/** A file the suite reads; `hint` says where it comes from. */
export function file(path: string, hint: string): Prerequisite {
  return { check: () => (existsSync(path) ? undefined : `${path} (${hint})`) };
}

/** The messages of the prerequisites that are missing. */
export function missingPrerequisites(prerequisites: readonly Prerequisite[]): string[] {
  return prerequisites.map((p) => p.check()).filter((m): m is string => m !== undefined);
}

/**
 * describe() when every prerequisite is there. Otherwise: skipped with the missing ones listed,
 * or, under CI=true, one failing test in the suite's place that lists them.
 */
export function describeWith(name: string, prerequisites: readonly Prerequisite[], options: TestOptions, fn: (s: SuiteContext) => void | Promise<void>): void {
  const missing = missingPrerequisites(prerequisites);
  if (missing.length === 0) {
    describe(name, options, fn);
    return;
  }
  const what = `missing prerequisite${missing.length > 1 ? 's' : ''}: ${missing.join('; ')}`;
  if (IN_CI) {
    describe(name, () => {
      it('has its prerequisites (CI=true: a missing one is a failure, not a skip)', () => {
        throw new Error(what);
      });
    });
    return;
  }
  describe(name, { ...options, skip: what }, fn);
}

/** The programs a daemon with the QEMU provider runs (src/daemon/prerequisites.ts checks the same at start). */
export const QEMU_PROGRAMS: readonly Prerequisite[] = programs('mkfs.ext4', 'qemu-system-x86_64', 'qemu-img');

/** A real daemon with the QEMU provider and real host networking in a test namespace. */
export const QEMU_DAEMON: readonly Prerequisite[] = [NETNS, ...QEMU_PROGRAMS];

/** Real guests: the QEMU daemon, the test guest's build tools, dnsmasq, busybox (wget, ping). */
export const GUEST_LAB: readonly Prerequisite[] = [...QEMU_DAEMON, ...programs('dnsmasq', 'busybox', 'cpio')];

/** A VMM's OpenAPI document in ../shared/ref/ (beside the clone, as CI lays it out). */
export function vmmApiSpec(name: 'firecracker-api.yaml' | 'cloud-hypervisor-api.yaml'): Prerequisite {
  return file(join(SHARED_REF, name), "the VMM's OpenAPI spec: ../shared/ref/ must sit beside the clone, as CI lays it out");
}
