// The VMM sandbox in pure terms (ADR 0009): which uid/gid a VM's VMM runs as, and the cgroup
// limits its spec implies. No I/O: the steps and the adapters apply these.
import type { VmmAccess, VmmCgroupLimits, VmmIdentity } from './ports.js';

/** Modes of what a VMM reaches in its VM dir; owner root (the daemon), group the VM's gid. */
export const VMM_ACCESS_MODES: Readonly<Record<VmmAccess, number>> = { read: 0o640, 'read-write': 0o660, dir: 0o750 };
/**
 * The VM dir: sticky and group-writable, so the VMM can create its sockets but can neither
 * remove nor replace the daemon's files (which it could otherwise swap for symlinks).
 */
export const VM_DIR_MODE = 0o1770;
/** The VM dir when VMMs keep the daemon's uid: nobody else's business. */
export const PRIVATE_VM_DIR_MODE = 0o700;

/** `vmm-uid-range`: VM number i (0-based) runs as uid = gid = start + i. */
export interface VmmIdRange {
  readonly start: number;
  readonly count: number;
}

/** The largest valid uid: (uid_t)-1 means "no change" to setresuid(2). */
const MAX_ID = 2 ** 32 - 2;

/** Parses `START:COUNT` (empty: no range, VMMs keep the daemon's uid); a message when invalid. */
export function parseVmmIdRange(text: string): VmmIdRange | undefined | { readonly error: string } {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const m = /^(\d+):(\d+)$/.exec(trimmed);
  if (m === null) return { error: `"${trimmed.slice(0, 64)}" is not START:COUNT (such as 1879048192:65536)` };
  const start = Number(m[1]);
  const count = Number(m[2]);
  // uid 0 is root: a range starting there would hand VMMs the daemon's privileges back.
  if (start < 1) return { error: 'the range must not include uid 0' };
  if (count < 1) return { error: 'the range must hold at least one uid' };
  if (start + count - 1 > MAX_ID) return { error: `the range ends above ${MAX_ID}` };
  return { start, count };
}

export function isVmmIdRange(v: ReturnType<typeof parseVmmIdRange>): v is VmmIdRange {
  return v !== undefined && 'start' in v;
}

/**
 * The lowest uid of the range that no other VM holds. Callers allocate and store it in one
 * synchronous turn (look up, pick, save), so two reconciles can't pick the same one.
 */
export function allocateVmmIdentity(range: VmmIdRange, inUse: (uid: number) => boolean): VmmIdentity | { readonly error: string } {
  for (let i = 0; i < range.count; i++) {
    const uid = range.start + i;
    if (!inUse(uid)) return { uid, gid: uid };
  }
  return { error: `vmm-uid-range ${range.start}:${range.count} has no free uid left (one per VM)` };
}

export interface VmmLimitsConfig {
  /** Added to the guest's memory for the VMM itself (device emulation, TCG translation cache, page cache). */
  readonly memoryOverheadMb: number;
  /** Processes and threads (pids.max counts both). */
  readonly pidsMax: number;
}

const MiB = 1024 * 1024;

export function vmmCgroupLimits(memoryMb: number, config: VmmLimitsConfig): VmmCgroupLimits {
  return { memoryBytes: (memoryMb + config.memoryOverheadMb) * MiB, pidsMax: config.pidsMax };
}

/** `vmm-cgroup-parent`: a relative cgroup path of plain names (no `.`, `..` or empty segments). */
export function validCgroupParent(parent: string): boolean {
  return parent.split('/').every((p) => /^[A-Za-z0-9_.-]+$/.test(p) && p !== '.' && p !== '..');
}
