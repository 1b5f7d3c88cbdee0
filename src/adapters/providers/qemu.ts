// The QEMU provider: `-M microvm` with virtio-mmio devices, KVM when it can run a normal guest,
// TCG otherwise. The serial console goes to a file in the VM dir, QMP on a unix socket there
// gives state and graceful shutdown (ACPI power button), and the process is spawned detached
// through the ProcessTable so it outlives the daemon.
//
// Facts this file relies on (measured, see shared/reference/lab-qemu-networking.md and the
// comments below):
// - Device order. Under `-M microvm` (QEMU 7.2, Debian cloud kernel 6.1, ACPI on) the guest
//   enumerates the virtio-mmio transports in command-line order: with NICs and disks interleaved
//   on the command line the kernel numbered them virtio0, virtio1, ... in that order, so the
//   disks became vda, vdb, ... and the NICs eth0, eth1, ... in the order of their `-device`
//   options (no reversal). So disks and NICs are emitted in LaunchSpec order. Each disk also
//   carries `serial=<disk id>` (<= 20 bytes, the virtio-blk limit) so the guest sees it in
//   /sys/block/vdX/serial and /dev/disk/by-id, and tests can check the order.
// - Under TCG about 30% of microvm boots hang in TSC calibration unless the guest command line
//   has `tsc_early_khz=<host TSC kHz>`: defaultCmdline() adds it under TCG.
// - Every NIC goes by fd (ADR 0009): QEMU runs as the VM's own uid and needs no /dev/net/tun. A
//   macvtap's fd comes from the tap character device node the core made in the VM dir (never
//   /dev/tapN, which can name another namespace's device), opened here: fd 3, 4, ... A tap is
//   opened by name (TUNSETIFF) in the launch chain before QEMU runs (providers/sandbox.ts), at the
//   fds after the macvtaps'; that needs the tap's network namespace (the daemon runs there; tests
//   use the `netns` option).
// - `-sandbox on,...` (QEMU's seccomp filter): besides the default deny list, no obsolete
//   syscalls, no setuid/setgid and friends, no fork/exec, no scheduler or affinity changes.
//   Accepted by QEMU 7.2 (checked: /proc/<pid>/status shows `Seccomp: 2`).
// - Never vhost: there is no /dev/vhost-net here and `vhost=on` aborts QEMU 7.2.
// - /dev/kvm can exist without being able to run a normal guest: on a PVM host (module kvm_pvm,
//   no kvm_intel/kvm_amd) KVM_CREATE_VM works but an ordinary kernel hangs right after
//   "Probing EDD". That counts as no KVM.
import { renderCmdline, rootDeviceArgs } from '../../core/guest.js';
import { existsSync, openSync, closeSync, constants, readFileSync } from 'node:fs';
import { appendFile, open, rm, stat } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';

import type { LaunchSpec, Logger, ProcessTable, ProviderAvailability, ProviderCapability, VmmProcess, VmmProvider } from '../../core/ports.js';
import { kvmSupport, vmmAvailability } from './host.js';
import { KVM_ROOT_ONLY, kvmDeviceStat, kvmGroupFor, nicFdPlan, sandboxedCommand } from './sandbox.js';

export interface QemuProviderOptions {
  readonly bin: string;
  readonly processes: ProcessTable;
  readonly log: Logger;
  /** Use KVM. Default: /dev/kvm is usable for ordinary guests (see kvmSupport()). */
  readonly kvm?: boolean;
  /** Host TSC frequency for `tsc_early_khz` under TCG. Default: /proc/cpuinfo `cpu MHz` * 1000. */
  readonly tscKhz?: number;
  /**
   * Start QEMU inside this network namespace (`ip netns exec <netns> qemu ...`), so taps are
   * found by name. For tests: the daemon itself runs in the taps' namespace and leaves it unset.
   */
  readonly netns?: string;
  /** How long start() waits for the guest to be running (default 10 s). */
  readonly startTimeoutMs?: number;
  /**
   * VMMs run as uids of their own (`vmm-uid-range` set): KVM only when /dev/kvm is open to them
   * (its group or everyone), since root alone could open a 0600 root:root /dev/kvm.
   */
  readonly sandboxed?: boolean;
}

/** QEMU's seccomp filter, as strict as QEMU 7.2 allows. */
export const QEMU_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

export const QEMU_CAPABILITIES: readonly ProviderCapability[] = ['macvtap', 'tap', 'pause', 'qcow2-overlay'];

const QMP_SOCKET = 'qmp.sock';
const VMM_LOG = 'vmm.log';
/** sun_path is 108 bytes including the NUL. */
const MAX_UNIX_PATH = 107;
/** virtio-blk serial (VIRTIO_BLK_ID_BYTES). */
const MAX_SERIAL = 20;

/** Host TSC kHz from /proc/cpuinfo (`cpu MHz` of the first CPU), or undefined. */
export function hostTscKhz(cpuinfo?: string): number | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(text);
  if (m?.[1] === undefined) return undefined;
  const khz = Math.round(Number(m[1]) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}

/** A QEMU option value: commas are doubled. */
function optValue(v: string): string {
  return v.replaceAll(',', ',,');
}

function serialFor(id: string): string | undefined {
  const s = id.slice(0, MAX_SERIAL);
  return /^[A-Za-z0-9._-]+$/.test(s) ? s : undefined;
}

/**
 * TCG's translation cache, MiB. QEMU's default (1 GiB in 7.2) is memory the VMM takes on top of the
 * guest's as the guest runs more code: a Debian guest with cloud-init filled it past the VMM
 * cgroup's allowance (`vmm-memory-overhead-mb`, 256) and was OOM-killed in a loop. 64 MiB keeps a
 * TCG VMM inside it; KVM has no translation cache.
 */
export const TCG_TB_SIZE_MB = 64;

export interface QemuArgsOptions {
  readonly kvm: boolean;
  /** The merged kernel command line. */
  readonly append: string;
  /** The -qmp socket path as QEMU sees it (relative to the VM dir when the absolute one is too long). */
  readonly qmpPath: string;
}

/**
 * The QEMU command line for a launch. Every NIC is an fd: macvtaps at 3, 4, ... in NIC order (the
 * caller passes the opened tap nodes in that order), then taps (see nicFdPlan).
 */
export function qemuArgs(launch: LaunchSpec, opts: QemuArgsOptions): string[] {
  const vmName = `${launch.vm.id.namespace}/${launch.vm.id.name}`;
  const args = [
    '-name',
    optValue(vmName),
    '-M',
    'microvm',
    '-accel',
    opts.kvm ? 'kvm' : `tcg,tb-size=${TCG_TB_SIZE_MB}`,
    ...(opts.kvm ? ['-cpu', 'host'] : []),
    '-smp',
    String(launch.vcpu),
    '-m',
    `${launch.memoryMb}M`,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-sandbox',
    QEMU_SANDBOX,
    // append=on: a restarted VMM adds to the console log instead of wiping the previous boot's.
    '-chardev',
    `file,id=console,path=${optValue(launch.consoleLogPath)},append=on`,
    '-serial',
    'chardev:console',
    '-kernel',
    launch.kernelPath,
  ];
  if (launch.initrdPath !== undefined) args.push('-initrd', launch.initrdPath);
  args.push('-append', opts.append);
  // Guest order == command-line order under microvm (see the header comment).
  launch.disks.forEach((disk, i) => {
    const id = `disk${i}`;
    const serial = serialFor(disk.id);
    args.push(
      '-drive',
      `if=none,format=${disk.format},file=${optValue(disk.path)},id=${id},readonly=${disk.readOnly ? 'on' : 'off'}`,
      '-device',
      `virtio-blk-device,drive=${id}${serial === undefined ? '' : `,serial=${serial}`}`,
    );
  });
  const { fds } = nicFdPlan(launch.nics);
  launch.nics.forEach((nic, i) => {
    const id = `net${i}`;
    args.push('-netdev', `tap,id=${id},fd=${fds[i]}`, '-device', `virtio-net-device,netdev=${id},mac=${nic.mac}`);
  });
  args.push('-qmp', `unix:${optValue(opts.qmpPath)},server=on,wait=off`);
  return args;
}

// ---------------------------------------------------------------------------------------------
// QMP

interface QmpReply {
  readonly return?: unknown;
  readonly error?: { readonly class: string; readonly desc: string };
  readonly event?: string;
  readonly QMP?: unknown;
  readonly id?: number;
}

/** A minimal QMP client: newline-delimited JSON, commands answered in order (matched by id). */
export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private greeting: ((ok: boolean) => void) | undefined;
  private closed: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('QMP connection closed')));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    const timer = setTimeout(() => client.fail(new Error(`QMP at ${path}: no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        client.greeting = (ok) => (ok ? resolve() : reject(client.closed ?? new Error('QMP connection closed')));
        if (client.closed !== undefined) reject(client.closed);
      });
      await client.execute('qmp_capabilities');
      return client;
    } catch (e) {
      client.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  execute(command: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
    if (this.closed !== undefined) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.fail(new Error('QMP connection closed'));
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      let msg: QmpReply;
      try {
        msg = JSON.parse(line) as QmpReply;
      } catch {
        continue;
      }
      if (msg.QMP !== undefined) {
        this.greeting?.(true);
        this.greeting = undefined;
        continue;
      }
      if (msg.event !== undefined || msg.id === undefined) continue;
      const waiter = this.pending.get(msg.id);
      if (waiter === undefined) continue;
      this.pending.delete(msg.id);
      if (msg.error !== undefined) waiter.reject(new Error(`QMP error ${msg.error.class}: ${msg.error.desc}`));
      else waiter.resolve(msg.return);
    }
  }

  private fail(e: Error): void {
    if (this.closed === undefined) this.closed = e;
    this.greeting?.(false);
    this.greeting = undefined;
    for (const w of this.pending.values()) w.reject(e);
    this.pending.clear();
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function tailFrom(path: string, offset: number, lines: number): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(offset, size - 16 * 1024);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** How the VMM is confined, for the line vmm.log gets at each start. */
export function describeSandbox(sandbox: LaunchSpec['sandbox']): string {
  if (sandbox === undefined) return '';
  const who = sandbox.identity !== undefined ? ` as uid ${sandbox.identity.uid} gid ${sandbox.identity.gid}` : '';
  const where = sandbox.cgroupProcs.length > 0 ? ` in ${sandbox.cgroupProcs.map((p) => p.replace(/\/cgroup\.procs$/, '')).join(' ')}` : '';
  return `${who}${where}`;
}

export class QemuProvider implements VmmProvider {
  readonly name = 'qemu';
  readonly capabilities: ReadonlySet<ProviderCapability> = new Set(QEMU_CAPABILITIES);
  private readonly bin: string;
  private readonly processes: ProcessTable;
  private readonly log: Logger;
  private readonly kvm: boolean;
  private readonly tscKhz: number | undefined;
  private readonly netns: string | undefined;
  private readonly startTimeoutMs: number;
  /** Supplementary groups a sandboxed QEMU keeps (/dev/kvm's, under KVM). */
  private readonly kvmGroups: number[];

  constructor(options: QemuProviderOptions) {
    this.bin = options.bin;
    this.processes = options.processes;
    this.log = options.log.child({ provider: 'qemu' });
    this.netns = options.netns;
    this.startTimeoutMs = options.startTimeoutMs ?? 10_000;
    if (this.netns !== undefined && !/^[^\s/]+$/.test(this.netns)) throw new Error(`invalid network namespace name "${this.netns}"`);
    let reason: string;
    if (options.kvm !== undefined) {
      this.kvm = options.kvm;
      reason = 'configured';
    } else {
      const support = kvmSupport();
      this.kvm = support.usable;
      reason = support.reason;
    }
    const kvmAccess = kvmGroupFor(kvmDeviceStat());
    this.kvmGroups = this.kvm ? kvmAccess.groups : [];
    if (this.kvm && options.sandboxed === true && options.kvm === undefined && !kvmAccess.usable) {
      this.kvm = false;
      reason = KVM_ROOT_ONLY('QEMU');
    }
    this.tscKhz = options.tscKhz ?? (this.kvm ? undefined : hostTscKhz());
    if (this.kvm) this.log.info({ accel: 'kvm', reason }, 'QEMU guests will run with KVM');
    else
      this.log.info(
        { accel: 'tcg', reason, tscKhz: this.tscKhz },
        'QEMU guests will run under TCG emulation (no usable KVM): slower boots, tsc_early_khz on the guest command line',
      );
    if (!this.kvm && this.tscKhz === undefined) {
      this.log.warn({}, 'host TSC frequency unknown: TCG microvm boots may hang in clock calibration');
    }
  }

  /** Whether guests run with KVM (else TCG). */
  get accel(): 'kvm' | 'tcg' {
    return this.kvm ? 'kvm' : 'tcg';
  }

  availability(): ProviderAvailability {
    // KVM is optional: without it QEMU runs guests under TCG.
    return vmmAvailability('qemu-bin', this.bin);
  }

  defaultCmdline(launch: Omit<LaunchSpec, 'cmdline'>): Readonly<Record<string, string>> {
    const out: Record<string, string> = { console: 'ttyS0', reboot: 'k', panic: '-1', quiet: '' };
    if (!this.kvm && this.tscKhz !== undefined) out.tsc_early_khz = String(this.tscKhz);
    Object.assign(out, rootDeviceArgs(launch.disks));
    return out;
  }

  async start(launch: LaunchSpec, signal?: AbortSignal): Promise<VmmProcess> {
    signal?.throwIfAborted();
    const { vmDir } = launch;
    const log = this.log.child({ vm: `${launch.vm.id.namespace}/${launch.vm.id.name}/${launch.vm.id.uid}` });
    const absQmp = join(vmDir, QMP_SOCKET);
    // A long VM dir would overflow sun_path: QEMU then binds relative to its cwd (the VM dir).
    const qmpPath = Buffer.byteLength(absQmp) <= MAX_UNIX_PATH ? absQmp : QMP_SOCKET;
    const { cmdline, ...rest } = launch;
    const append = renderCmdline(this.defaultCmdline(rest), cmdline);
    const args = qemuArgs(launch, { kvm: this.kvm, append, qmpPath });
    const plan = nicFdPlan(launch.nics);
    const sandbox = launch.sandbox;
    const command = sandboxedCommand({
      bin: this.bin,
      args,
      cgroupProcs: sandbox?.cgroupProcs ?? [],
      ...(this.netns !== undefined ? { netns: this.netns } : {}),
      taps: plan.taps,
      handedFds: plan.macvtapNodes.length,
      ...(sandbox?.identity !== undefined ? { identity: sandbox.identity, groups: this.kvmGroups } : {}),
    });

    await rm(absQmp, { force: true });
    const logPath = join(vmDir, VMM_LOG);
    await appendFile(logPath, `--- ${new Date().toISOString()} starting ${this.bin} ${args.join(' ')}${describeSandbox(sandbox)}\n`);
    const logOffset = (await stat(logPath)).size;

    const fds: number[] = [];
    let proc: VmmProcess;
    try {
      for (const node of plan.macvtapNodes) fds.push(openSync(node, constants.O_RDWR));
      const started = Date.now();
      // The pid file records the chain's first process, which execs its way to QEMU: the same
      // pid and start time, so what is recorded is QEMU itself (ADR 0007, ADR 0009).
      proc = await this.processes.spawn(command.bin, command.args, { logPath, extraFds: fds, cwd: vmDir, pidFile: launch.pidFile });
      log.debug({ pid: proc.pid, spawnMs: Date.now() - started, args }, 'QEMU spawned');
    } finally {
      for (const fd of fds) closeSync(fd);
    }

    try {
      await this.waitRunning(proc, this.clientPath(absQmp, proc), logPath, logOffset, signal);
    } catch (e) {
      await this.kill(proc);
      throw e;
    }
    log.info({ pid: proc.pid, accel: this.accel }, 'QEMU is running the guest');
    return proc;
  }

  async stop(vmDir: string, process: VmmProcess, timeoutMs: number): Promise<void> {
    if (!(await this.processes.isAlive(process))) return;
    const path = this.clientPath(join(vmDir, QMP_SOCKET), process);
    try {
      const qmp = await QmpClient.connect(path, Math.min(2000, Math.max(timeoutMs, 100)));
      try {
        await qmp.execute('system_powerdown', undefined, 2000);
      } finally {
        qmp.close();
      }
    } catch (e) {
      this.log.debug({ pid: process.pid, err: String(e) }, 'QMP system_powerdown failed; will kill');
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!(await this.processes.isAlive(process))) return;
      await sleep(100);
    }
    this.log.info({ pid: process.pid, timeoutMs }, 'QEMU did not power off in time: SIGKILL');
    await this.kill(process);
  }

  /** QMP `stop`: the vCPUs stop, the guest's memory and devices stay. */
  async pause(vmDir: string, process: VmmProcess): Promise<void> {
    await this.command(vmDir, process, 'stop', 'paused');
  }

  /** QMP `cont`. */
  async resume(vmDir: string, process: VmmProcess): Promise<void> {
    await this.command(vmDir, process, 'cont', 'running');
  }

  /** Runs a QMP command, then checks `query-status` says what it should. */
  private async command(vmDir: string, process: VmmProcess, command: string, expected: string): Promise<void> {
    const qmp = await QmpClient.connect(this.clientPath(join(vmDir, QMP_SOCKET), process), 2000);
    try {
      await qmp.execute(command, undefined, 2000);
      const status = (await qmp.execute('query-status', undefined, 2000)) as { status?: string } | undefined;
      if (status?.status !== expected) throw new Error(`QEMU reports the guest ${status?.status ?? 'in an unknown state'} after ${command}, not ${expected}`);
    } finally {
      qmp.close();
    }
  }

  /** The QMP socket path for a client; /proc/<pid>/cwd/ when the absolute path is too long. */
  private clientPath(absQmp: string, proc: VmmProcess): string {
    return Buffer.byteLength(absQmp) <= MAX_UNIX_PATH ? absQmp : `/proc/${proc.pid}/cwd/${QMP_SOCKET}`;
  }

  private async kill(proc: VmmProcess): Promise<void> {
    await this.processes.signal(proc, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (await this.processes.isAlive(proc)) {
      if (Date.now() > deadline) throw new Error(`QEMU pid ${proc.pid} still alive 5 s after SIGKILL`);
      await sleep(20);
    }
  }

  private async waitRunning(proc: VmmProcess, qmpPath: string, logPath: string, logOffset: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    let last = 'no QMP connection yet';
    // QEMU is usually running within ~50 ms: poll fast first, then back off (5 ms up to 50 ms).
    let pause = 5;
    for (;;) {
      signal?.throwIfAborted();
      if (!(await this.processes.isAlive(proc))) {
        // Let the exit be recorded (the child's exit event) before reading the reason.
        await sleep(20);
        const reason = this.processes.exitReason(proc) ?? 'exited';
        const tail = await tailFrom(logPath, logOffset, 15);
        throw new Error(`QEMU ${reason} before the guest ran${tail === '' ? '' : `:\n${tail}`}`);
      }
      if (Date.now() > deadline) {
        const tail = await tailFrom(logPath, logOffset, 15);
        throw new Error(`QEMU did not run the guest within ${this.startTimeoutMs} ms (${last})${tail === '' ? '' : `:\n${tail}`}`);
      }
      if (existsSync(qmpPath)) {
        try {
          const qmp = await QmpClient.connect(qmpPath, 1000);
          try {
            const status = (await qmp.execute('query-status', undefined, 1000)) as { status?: string } | undefined;
            if (status?.status === 'running') return;
            last = `status ${status?.status ?? 'unknown'}`;
            if (status?.status !== undefined && ['shutdown', 'internal-error', 'guest-panicked', 'io-error'].includes(status.status)) {
              throw new Error(`QEMU reports the guest ${status.status}`);
            }
          } finally {
            qmp.close();
          }
        } catch (e) {
          if (e instanceof Error && e.message.startsWith('QEMU reports')) throw e;
          last = String(e);
        }
      }
      await sleep(pause);
      pause = Math.min(50, pause * 2);
    }
  }
}
