// Every process a test file starts ends when that file's tests are done, or when its process ends,
// however it ends: passed, failed, timed out by the runner (SIGTERM) or interrupted. Tests register
// the cleanup *before* they wait for anything, so a hook that throws while waiting leaves nothing
// running. The cleanup also runs as a file-level after() hook: a child left running would keep the
// file's process alive, and `--test-force-exit` is no way out (Node 20 then drops test results
// from the report: nodejs/node#64833).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { after } from 'node:test';

const cleanups = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const cleanup of [...cleanups]) {
    cleanups.delete(cleanup);
    try {
      cleanup();
    } catch {
      // best effort: the others must still run
    }
  }
}

// Under the test runner (which sets NODE_TEST_CONTEXT in each file's process) the file's root
// suite ends everything its tests started. Registered at import, before any test runs; a bench
// script that uses these helpers is not a test and gets no test harness.
if (process.env.NODE_TEST_CONTEXT !== undefined) after(runAll);

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  process.on('uncaughtExceptionMonitor', runAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      runAll();
      // Die of the same signal, as if no handler had been installed.
      process.kill(process.pid, signal);
    });
  }
}

/** Runs `cleanup` when the process ends; the returned function runs it now (once) instead. */
export function atExit(cleanup: () => void): () => void {
  install();
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    cleanups.delete(once);
    cleanup();
  };
  cleanups.add(once);
  return once;
}

/**
 * spawn() in a process group of its own, killed (the whole group, SIGKILL) when the file's process
 * ends unless it exited first. `ip netns exec` execs its command, so the group is the command.
 */
export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, [...args], { ...options, detached: true });
  const pid = child.pid;
  if (pid === undefined) return child;
  const kill = atExit(() => {
    if (child.exitCode === null && child.signalCode === null) killGroup(pid);
  });
  child.once('exit', () => kill());
  return child;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Sends `signal` to `pid` only if it is still a process named `comm` (never a reused pid). */
export function killIfNamed(pid: number, comm: string, signal: NodeJS.Signals = 'SIGTERM'): void {
  try {
    if (pid > 0 && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) process.kill(pid, signal);
  } catch {
    // not running
  }
}

/**
 * SIGKILLs every process whose command line contains `marker` (a unique temporary path of the
 * test's, such as a daemon's state dir): VMMs outlive the daemon that started them, by design.
 */
export function killProcessesMentioning(marker: string): number[] {
  const killed: number[] = [];
  for (const { pid } of processesMentioning(marker)) {
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return killed;
}

/** Every other process whose command line (NUL-separated) contains `marker`. */
export function processesMentioning(marker: string): Array<{ pid: number; cmdline: string }> {
  const found: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(marker)) found.push({ pid, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
