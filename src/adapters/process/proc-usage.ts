// What a process uses, read from /proc at the moment of asking (metrics scrapes): CPU time from
// /proc/<pid>/stat, resident memory from /proc/<pid>/status. The start time is checked first, so
// a pid reused by another process is never reported as the VMM.
import { readFile } from 'node:fs/promises';
import type { VmmProcess } from '../../core/ports.js';
import { readProcStat } from './process-table.js';

/**
 * Clock ticks per second of the /proc times (USER_HZ): 100 on every architecture Linux runs
 * VMMs on (the kernel's HZ differs, but /proc reports in USER_HZ); Node has no sysconf.
 */
const USER_HZ = 100;

export interface ProcessUsage {
  readonly cpuSeconds: number;
  readonly residentBytes: number;
}

/** VmRSS of /proc/<pid>/status in bytes; undefined when absent (a zombie has none). */
export function parseResidentBytes(status: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match?.[1] !== undefined ? Number(match[1]) * 1024 : undefined;
}

/** The process's usage, or undefined when it is gone or is another process now. */
export async function processUsage(process: VmmProcess): Promise<ProcessUsage | undefined> {
  const stat = await readProcStat(process.pid);
  if (stat === undefined || stat.startTime !== process.startTime) return undefined;
  let status: string;
  try {
    status = await readFile(`/proc/${process.pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const residentBytes = parseResidentBytes(status);
  if (residentBytes === undefined) return undefined;
  return { cpuSeconds: (stat.userTicks + stat.systemTicks) / USER_HZ, residentBytes };
}
