// Runs the real daemon (bin/flintlockd, the built code) for integration tests, optionally inside
// a test network namespace. The API listens on a unix socket so a daemon inside a namespace is
// reachable from the test process; every process is ended by its PID, and whatever is still
// running when the test file's process ends (the daemon, the VMMs it started, which outlive it by
// design) is killed then.
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { atExit, killProcessesMentioning, spawnTracked } from './processes.js';
import { HOST_CGROUP_ROOT, removeCgroupTree } from './sandbox.js';
import { waitFor } from './wait.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const FLINTLOCKD = join(REPO_ROOT, 'bin/flintlockd');
export const FL = join(REPO_ROOT, 'bin/fl');

export interface DaemonHandle {
  readonly dir: string;
  readonly stateDir: string;
  readonly socket: string;
  /** `unix:<socket>` for grpc-js clients. */
  readonly endpoint: string;
  readonly process: ChildProcess;
  readonly output: () => string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash) and wait for exit. */
  kill(): Promise<void>;
}

export interface DaemonOptions {
  readonly netns?: string;
  readonly config: Record<string, unknown>;
  /** Reuse a directory (restart tests). */
  readonly dir?: string;
  readonly args?: string[];
  /** Node.js options before the script (benchmarks: `--cpu-prof`). */
  readonly nodeArgs?: string[];
}

/**
 * The VMM cgroup settings a test daemon gets unless its config says otherwise: a parent named
 * after its directory (so a restarted daemon finds its VMs' cgroups), removed with everything in
 * it when the test file's process ends; and, for a daemon in a namespace, the host's hierarchy
 * through this process's root: `ip netns exec` mounts a sysfs of the namespace's own on /sys,
 * which hides the cgroup hierarchies mounted below it.
 */
function cgroupConfig(options: DaemonOptions, dir: string): { config: Record<string, string>; parent?: string } {
  const config: Record<string, string> = {};
  if (options.netns !== undefined && options.config['vmm-cgroup-root'] === undefined) {
    config['vmm-cgroup-root'] = `/proc/${process.pid}/root${HOST_CGROUP_ROOT}`;
  }
  if (options.config['vmm-cgroup-parent'] !== undefined) return { config };
  const parent = `flintlock-test-${process.pid}-${basename(dir)}`;
  config['vmm-cgroup-parent'] = parent;
  return { config, parent };
}
const cleanedParents = new Set<string>();

export function makeTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startDaemon(options: DaemonOptions): Promise<DaemonHandle> {
  const dir = options.dir ?? makeTempDir('fl-daemon-');
  mkdirSync(dir, { recursive: true });
  const stateDir = join(dir, 'state');
  const socket = join(dir, 'grpc.sock');
  const configFile = join(dir, 'config.yaml');
  const cgroups = cgroupConfig(options, dir);
  writeFileSync(
    configFile,
    stringify({
      'state-dir': stateDir,
      'grpc-endpoint': `unix:${socket}`,
      insecure: true,
      'log-format': 'json',
      verbosity: 2,
      ...cgroups.config,
      ...options.config,
    }),
  );
  rmSync(socket, { force: true });
  const node = [process.execPath, ...(options.nodeArgs ?? []), FLINTLOCKD];
  const command = options.netns !== undefined ? ['ip', ['netns', 'exec', options.netns, ...node]] : [node[0], node.slice(1)];
  const [bin, prefix] = command as [string, string[]];
  const child = spawnTracked(bin, [...prefix, 'run', '--config', configFile, ...(options.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The VMMs' command lines name the state dir, a unique temporary path of this test's.
  atExit(() => killProcessesMentioning(stateDir));
  // After the kill above, so the cgroups are empty by then.
  const parent = cgroups.parent;
  if (parent !== undefined && !cleanedParents.has(parent)) {
    cleanedParents.add(parent);
    atExit(() => removeCgroupTree(HOST_CGROUP_ROOT, parent));
  }
  const logOutput = options.config['log-output'];
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const handle: DaemonHandle = {
    dir,
    stateDir,
    socket,
    endpoint: `unix:${socket}`,
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
      return exited;
    },
    kill: async () => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      await exited;
    },
  };
  try {
    await waitFor(
      'daemon to listen',
      () => {
        if (child.exitCode !== null) throw new Error(`flintlockd exited with ${child.exitCode}:\n${output}`);
        // The log goes to stdout unless the config sends it to a file (benchmarks: no log in memory).
        const log =
          typeof logOutput === 'string' && logOutput !== 'stdout' && logOutput !== 'stderr' && existsSync(logOutput) ? readFileSync(logOutput, 'utf8') : output;
        return existsSync(socket) && log.includes('starting grpc server listening');
      },
      15_000,
      25,
    );
  } catch (e) {
    await handle.kill();
    throw e;
  }
  return handle;
}

/** Runs the daemon to completion (for start-up failures): exit code and output. */
export async function runDaemonExpectingExit(
  config: Record<string, unknown>,
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number | null; output: string }> {
  const dir = makeTempDir('fl-daemon-');
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, stringify({ 'state-dir': join(dir, 'state'), 'grpc-endpoint': `unix:${join(dir, 'grpc.sock')}`, ...config }));
  const child = spawnTracked(process.execPath, [FLINTLOCKD, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  clearTimeout(timer);
  rmSync(dir, { recursive: true, force: true });
  return { code, output };
}
