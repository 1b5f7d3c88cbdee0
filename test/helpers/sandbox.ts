// What tests of the VMM sandbox (ADR 0009) share: a VMM uid for test processes, a VM dir laid out
// the way the core lays it out for that uid, real cgroups under a parent of this test file's
// own, removed when the file's process ends however it ends.
import { chmodSync, chownSync, existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmmIdentity } from '../../src/core/ports.js';
import { atExit } from './processes.js';
import type { Prerequisite } from './prerequisites.js';

/** Near the top of the default `vmm-uid-range`, where the daemon's own tests allocate last. */
export const TEST_VMM: VmmIdentity = { uid: 1_879_048_192 + 65_000, gid: 1_879_048_192 + 65_000 };

export const HOST_CGROUP_ROOT = '/sys/fs/cgroup';

/** A cgroup hierarchy with the memory and pids controllers (v2, or v1 as on this kind of host), and root. */
export const CGROUPS: Prerequisite = {
  check: () => {
    if (process.getuid?.() !== 0) return 'root (cgroups)';
    const v2 = existsSync(join(HOST_CGROUP_ROOT, 'cgroup.controllers'));
    const v1 = existsSync(join(HOST_CGROUP_ROOT, 'memory', 'memory.limit_in_bytes')) && existsSync(join(HOST_CGROUP_ROOT, 'pids', 'cgroup.procs'));
    return v2 || v1 ? undefined : `a cgroup hierarchy with memory and pids at ${HOST_CGROUP_ROOT}`;
  },
};

/**
 * A cgroup parent of this test file's own (never the daemon's default `flintlock`, which other
 * daemons on the host may be using). Everything below it is removed when the process ends:
 * cgroups are directories that rmdir(2) removes once no process is in them. Call it after
 * registering the atExit that kills the processes put in them.
 */
export function testCgroupParent(tag: string): string {
  const parent = `flintlock-test-${tag}-${process.pid}`;
  atExit(() => removeCgroupTree(HOST_CGROUP_ROOT, parent));
  return parent;
}

/** Removes `<root>/[memory/|pids/]<parent>` and the cgroups directly in it (sync: for atExit). */
export function removeCgroupTree(root: string, parent: string): void {
  for (const hierarchy of ['', 'memory', 'pids']) {
    const dir = join(root, hierarchy, parent);
    if (!existsSync(join(dir, 'cgroup.procs'))) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) rmdirCgroup(join(dir, entry.name));
    }
    rmdirCgroup(dir);
  }
}

/**
 * rmdir, retried for a moment while the cgroup is busy: register this after the cleanup that
 * kills its processes (atExit runs cleanups in order), and a SIGKILLed process still takes a
 * moment to leave.
 */
export function rmdirCgroup(dir: string, waitMs = 2000): void {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/** The VM dir as the core makes it for `identity`: root's, the VM's group, sticky, group-writable. */
export function makeVmmDir(dir: string, identity: VmmIdentity): void {
  chownSync(dir, 0, identity.gid);
  chmodSync(dir, 0o1770);
}

/** The fake VMMs (node with tsx) leave tsx's cache in /tmp/tsx-<uid> when they run as a VMM uid. */
export function removeTsxCache(identity: VmmIdentity = TEST_VMM): void {
  rmSync(join(tmpdir(), `tsx-${identity.uid}`), { recursive: true, force: true });
}

/**
 * The fake VMMs are Node scripts: on a loaded host one can take more than the providers' 5 s to
 * open its API socket (seen under CI-like load), and that timeout is not what the provider tests check.
 */
export const FAKE_TIMEOUTS = { socketTimeoutMs: 30_000 } as const;
