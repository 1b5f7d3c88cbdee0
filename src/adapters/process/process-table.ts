// ProcessTable on Linux: VMMs are spawned detached (own session, so they outlive the daemon and a
// signal to the daemon's process group never reaches them), with stdout/stderr appended to a log
// file and extra descriptors (macvtap fds) handed over as fd 3, 4, ...
//
// The child gets nothing else of the daemon's: only the descriptors listed (Node marks every other
// fd close-on-exec) and an environment of PATH alone, since the daemon's environment may carry
// its configuration's secrets (FLINTLOCKD_BASIC_AUTH_TOKEN, registry credentials), which a VMM
// could read back from its own /proc/<pid>/environ.
//
// A process is identified by pid AND start time (field 22 of /proc/<pid>/stat, clock ticks since
// boot): after a daemon restart, or after a VMM died long ago, its pid may belong to an unrelated
// process, which must never be taken for the VMM nor signalled.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open, readdir, readFile, readlink } from 'node:fs/promises';

import type { ProcessMention, ProcessTable, SpawnOptions, VmmProcess } from '../../core/ports.js';

/** The fields of /proc/<pid>/stat this module needs. */
export interface ProcStat {
  /** Field 3: R, S, D, Z, T, t, X, I, ... */
  readonly state: string;
  /** Field 6. */
  readonly session: number;
  /** Field 22: start time in clock ticks since boot. */
  readonly startTime: number;
  /** Fields 14 and 15: CPU time in user and kernel mode, in clock ticks. */
  readonly userTicks: number;
  readonly systemTicks: number;
}

/**
 * Parses /proc/<pid>/stat. Field 2 (comm) is in parentheses and may itself contain spaces and
 * parentheses, so the remaining fields are split after the LAST ')'.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields 3.. (state is field 3, so index 0 here).
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const state = rest[0];
  const session = Number(rest[6 - 3]);
  const startTime = Number(rest[22 - 3]);
  const userTicks = Number(rest[14 - 3]);
  const systemTicks = Number(rest[15 - 3]);
  if (state === undefined || ![session, startTime, userTicks, systemTicks].every(Number.isSafeInteger)) return undefined;
  return { state, session, startTime, userTicks, systemTicks };
}

export function readProcStatSync(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

function key(process: VmmProcess): string {
  return `${process.pid}:${process.startTime}`;
}

/** PATH for the VMM when the daemon has none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The whole environment a VMM starts with. */
export function vmmEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return { PATH: env.PATH ?? DEFAULT_PATH };
}

/** How many ended processes' exit reasons are remembered (oldest forgotten first). */
const MAX_REMEMBERED_EXITS = 1024;

/** How long isAlive() waits for a zombie child's exit event (so its exit reason is known). */
const ZOMBIE_EXIT_WAIT_MS = 1000;

/**
 * `<pid> <start time>\n`, renamed into place: whole or absent across a crash of the daemon. Not
 * fsynced (4.8 ms per VMM start on the reconcile thread, bench/control-plane.ts): the file only
 * matters while its VMM lives, and a power cut that could lose it ends the VMM too; a file left
 * empty or torn by one reads as no file (recorded()).
 * The VM dir is writable by the VMM's group (ADR 0009: it makes its sockets there), so the partial
 * gets a name no VMM can guess and is created with O_EXCL, which never follows a symlink planted
 * there; the rename replaces whatever is at `path` without following it either.
 */
function writePidFileSync(path: string, process: VmmProcess): void {
  const partial = `${path}.${randomBytes(8).toString('hex')}.partial`;
  const fd = openSync(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${process.pid} ${process.startTime}\n`);
  } finally {
    closeSync(fd);
  }
  renameSync(partial, path);
}

export class LinuxProcessTable implements ProcessTable {
  private readonly exits = new Map<string, string>();
  /** Children spawned here that have not been reaped yet: resolves on their 'exit' event. */
  private readonly running = new Map<string, Promise<void>>();

  async spawn(bin: string, args: readonly string[], options: SpawnOptions): Promise<VmmProcess> {
    const logFd = openSync(options.logPath, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o640);
    let child: ChildProcess;
    try {
      child = spawn(bin, [...args], {
        detached: true,
        env: vmmEnvironment(),
        stdio: ['ignore', logFd, logFd, ...(options.extraFds ?? [])],
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      });
    } finally {
      closeSync(logFd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      // Not started at all (e.g. ENOENT): the 'error' event carries the reason.
      return await new Promise<never>((_resolve, reject) => {
        child.once('error', (e) => reject(new Error(`cannot start ${bin}: ${e.message}`)));
      });
    }
    // Read synchronously, before the event loop can reap a child that already exited: a zombie's
    // stat is still there, so even a process that died at once gets its real start time.
    const startTime = readProcStatSync(pid)?.startTime ?? 0;
    const process: VmmProcess = { pid, startTime };
    if (options.pidFile !== undefined) {
      try {
        writePidFileSync(options.pidFile, process);
      } catch (e) {
        // A VMM nothing can find again (the status is written later) must not run.
        child.kill('SIGKILL');
        child.unref();
        throw e;
      }
    }
    this.running.set(
      key(process),
      new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          this.remember(process, signal !== null ? `killed by ${signal}` : `exited with code ${code ?? 'unknown'}`);
          this.running.delete(key(process));
          resolve();
        });
      }),
    );
    // A failure after the pid exists (rare: the process is already running) is not fatal here.
    child.on('error', () => undefined);
    child.unref();
    return process;
  }

  async isAlive(process: VmmProcess): Promise<boolean> {
    const stat = await readProcStat(process.pid);
    if (stat === undefined || stat.startTime !== process.startTime) return false;
    if (stat.state !== 'Z' && stat.state !== 'X') return true;
    // A zombie child of ours: its exit event comes with the next reap (libuv's SIGCHLD handling).
    // Wait for it, so that a caller seeing "not alive" can read exitReason() at once.
    const exited = this.running.get(key(process));
    if (exited !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, ZOMBIE_EXIT_WAIT_MS)))]);
      clearTimeout(timer);
    }
    return false;
  }

  exitReason(process: VmmProcess): string | undefined {
    return this.exits.get(key(process));
  }

  async signal(process: VmmProcess, signal: NodeJS.Signals): Promise<void> {
    if (!(await this.isAlive(process))) return;
    try {
      globalThis.process.kill(process.pid, signal);
    } catch (e) {
      // Gone between the check and the kill: nothing to signal.
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }

  async recorded(pidFile: string): Promise<VmmProcess | undefined> {
    let text: string;
    try {
      // Only a file the daemon wrote: one the VMM made in its group-writable VM dir (ADR 0009)
      // could name any process on the host for the daemon to adopt and later kill.
      const fh = await open(pidFile, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const st = await fh.stat();
        if (!st.isFile() || st.uid !== (globalThis.process.getuid?.() ?? 0)) return undefined;
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch {
      return undefined;
    }
    const m = /^(\d+) (\d+)\n$/.exec(text);
    if (m === null) return undefined;
    const process = { pid: Number(m[1]), startTime: Number(m[2]) };
    return (await this.isAlive(process)) ? process : undefined;
  }

  async listMentioning(dir: string): Promise<ProcessMention[]> {
    const found: ProcessMention[] = [];
    for (const entry of await readdir('/proc')) {
      const pid = Number(entry);
      if (!Number.isSafeInteger(pid) || pid <= 0 || pid === globalThis.process.pid) continue;
      const mention = await mentioning(pid, dir);
      if (mention !== undefined) found.push(mention);
    }
    return found;
  }

  private remember(process: VmmProcess, reason: string): void {
    this.exits.set(key(process), reason);
    if (this.exits.size > MAX_REMEMBERED_EXITS) {
      const oldest = this.exits.keys().next().value;
      if (oldest !== undefined) this.exits.delete(oldest);
    }
  }
}

/**
 * The process, when it leads a session of its own (spawn() starts every VMM so, and exec keeps
 * it, so each stage of a launch chain counts; an operator's `tail -f <vm dir>/console.log` does
 * not) and names a path under `dir`. Its stat is read first: if the pid is reused before the
 * names are read, the start time still belongs to the process that was there, and signal() then
 * refuses the newcomer.
 */
async function mentioning(pid: number, dir: string): Promise<ProcessMention | undefined> {
  const stat = await readProcStat(pid);
  if (stat === undefined || stat.session !== pid || stat.state === 'Z' || stat.state === 'X') return undefined;
  let argv: string[];
  try {
    argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
  } catch {
    return undefined; // gone meanwhile
  }
  const links = await Promise.all(['cwd', 'root'].map((link) => readlink(`/proc/${pid}/${link}`).catch(() => undefined)));
  const names = [...argv, ...links.filter((l): l is string => l !== undefined)];
  const under = `${dir.replace(/\/+$/, '')}/`;
  return names.some((name) => name.includes(under)) ? { pid, startTime: stat.startTime, names } : undefined;
}
