// The Firecracker provider: configures the VMM through its API socket, then starts the guest.
//
// Start-up (all in the VM dir):
//   firecracker --api-sock <vmDir>/firecracker.sock --id <uid>   (stdout/stderr -> vmm.log)
// then, in this order (every body as the published OpenAPI spec allows it):
//   PUT /logger               log_path = the log FIFO
//   PUT /metrics              metrics_path = the metrics FIFO
//   PUT /serial               serial_out_path = the console log (else the serial goes to stdout)
//   PUT /machine-config       vcpu_count, mem_size_mib
//   PUT /boot-source          kernel_image_path, boot_args, initrd_path
//   PUT /drives/<id>          for each disk in the guest's order
//   PUT /network-interfaces/<eth N>   for each NIC in the guest's order (tap only)
//   PUT /vsock                when the guest agent is allowed
//   PUT /mmds/config          V1, the NICs that may reach the metadata service
//   PUT /mmds                 {"latest": {"meta-data": ..., "user-data": ..., ...}}
//   PUT /actions              {"action_type": "InstanceStart"}
//
// Logs and metrics go to FIFOs (`firecracker.log.fifo`, `firecracker.metrics.fifo`) that the daemon
// drains continuously: the log is appended to `firecracker.log`; `firecracker.metrics` holds only
// the latest metrics line (the original let a plain metrics file grow without bound). The daemon
// holds each FIFO open read-write, so the FIFO always has a reader when Firecracker opens it (it
// opens with O_NONBLOCK, which fails with ENXIO without a reader) and never sees EOF. Firecracker
// writes non-blocking and counts what it could not write, so a daemon restart (the drains are
// gone until the VM is started again) loses log lines but never stalls the VMM.
//
// MMDS is version V1: cloud-init's NoCloud datasource (`ds=nocloud-net;s=http://169.254.169.254/latest/`)
// does plain GETs and V2 would demand a session token. The metadata NIC itself (COMPAT §3: guest
// `eth0`, MAC AA:FF:00:00:00:01) is a LaunchNic with `allowMetadata` that the core puts first.
// Interface ids are the guest names (`eth0`, `eth1`, ...); drive ids are the volume ids reduced
// to the characters Firecracker accepts in ids (alphanumerics and `_`).
//
// Stop: `PUT /actions {"action_type": "SendCtrlAltDel"}` (the guest reboots, and Firecracker exits
// on a guest reboot), then SIGKILL once the timeout has passed.
//
// Confinement (ADR 0009). Firecracker installs its own seccomp filters. Without a jailer it runs
// through the launch chain of providers/sandbox.ts (cgroup joined before exec, the VM's uid/gid,
// /dev/kvm's group, no new privileges) and opens its taps by name, which needs /dev/net/tun open
// to it (Debian's udev makes it 0666; the core makes each tap owned by the VM's uid, so only that
// uid can attach to it). With `firecracker-jailer-bin` the jailer does the uid/gid, a chroot in
// the VM dir (`jail/<exec name>/<vm uid>/root`) with its own /dev/kvm and /dev/net/tun, and a
// mount namespace; the cgroup is still joined first by the chain's sh stage (the jailer's own
// cgroup support is not used: ours handles v1 and v2 alike). Everything Firecracker opens is
// linked into the chroot and named by its path there (jailLayout).
import { execFile } from 'node:child_process';
import { closeSync, constants, createWriteStream, fchmod, readdirSync, fchown, open as openFd, type WriteStream } from 'node:fs';
import { chmod, copyFile, link, mkdir, rm, unlink, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { LaunchNic, LaunchSpec, Logger, ProcessTable, ProviderAvailability, ProviderCapability, VmmProcess, VmmProvider } from '../../core/ports.js';
import { renderCmdline, rootDeviceArgs } from '../../core/guest.js';
import { killAndWait, tailOfFile, UnixSocketApiClient, waitForExit, waitForSocket } from './openapi-http.js';
import { findExecutable } from '../host/programs.js';
import { kvmUsable as defaultKvmUsable, vmmAvailability } from './host.js';
import { KVM_ROOT_ONLY, kvmDeviceStat, kvmGroupFor, sandboxedCommand } from './sandbox.js';

export const FIRECRACKER_FILES = {
  socket: 'firecracker.sock',
  vmmLog: 'vmm.log',
  logFifo: 'firecracker.log.fifo',
  log: 'firecracker.log',
  metricsFifo: 'firecracker.metrics.fifo',
  metrics: 'firecracker.metrics',
  vsock: 'guest-agent.vsock',
} as const;

/** MMDS address and the NoCloud seed URL cloud-init reads from it. */
export const MMDS_ADDRESS = '169.254.169.254';
export const NOCLOUD_SEED = `nocloud-net;s=http://${MMDS_ADDRESS}/latest/`;

export interface FirecrackerProviderOptions {
  readonly bin: string;
  readonly processes: ProcessTable;
  readonly log: Logger;
  readonly kvmUsable?: () => boolean;
  /** How long the API socket may take to appear (default 5 s). */
  readonly socketTimeoutMs?: number;
  /** `firecracker-jailer-bin`; empty or absent: no jailer. */
  readonly jailerBin?: string;
  /** VMMs run as uids of their own (`vmm-uid-range` set): /dev/kvm must be open to them, or the jailer used. */
  readonly sandboxed?: boolean;
  /** /dev/kvm's mode and group (default: stat of /dev/kvm). */
  readonly kvmDevice?: { readonly mode: number; readonly gid: number };
}

/** sun_path is 108 bytes including the NUL. */
const MAX_UNIX_PATH = 107;
/** The API socket inside the jail. */
const JAILED_SOCKET = `/${FIRECRACKER_FILES.socket}`;

const execFileAsync = promisify(execFile);
const openFdAsync = promisify(openFd);
const fchownAsync = promisify(fchown);
const fchmodAsync = promisify(fchmod);

/**
 * A FIFO the VMM writes to and the daemon reads continuously. Opened read-write and non-blocking,
 * so it has a reader before the VMM opens it and never reports EOF when a writer closes; read
 * through a libuv pipe handle (epoll), so it holds no thread-pool thread.
 */
export class FifoDrain {
  private partial = '';
  private writes: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly sink: WriteStream | undefined,
    private readonly lastLineFile: string | undefined,
    private readonly onError: (err: Error) => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.take(chunk));
    socket.on('error', (err) => onError(err));
    sink?.on('error', (err) => onError(err));
    // The drain must not keep the daemon alive on its own.
    socket.unref();
  }

  /**
   * Makes the FIFO (replacing whatever is at fifoPath) and starts draining it into target. With
   * a gid the FIFO is writable by that group (the VMM's), and target is made at once, by the
   * daemon: in a directory the VMM can write to, a target it made first could be a symlink.
   */
  static async open(fifoPath: string, target: string, mode: 'append' | 'last-line', onError: (err: Error) => void, gid?: number): Promise<FifoDrain> {
    await rm(fifoPath, { force: true });
    await execFileAsync('mkfifo', ['-m', '0600', fifoPath]);
    // A raw fd (not a FileHandle, which would close it when collected): the socket owns it.
    // O_NOFOLLOW, and ownership changed through the fd: the FIFO's directory may be the VMM's.
    const fd = await openFdAsync(fifoPath, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    try {
      if (gid !== undefined) {
        await fchownAsync(fd, process.getuid?.() ?? 0, gid);
        await fchmodAsync(fd, 0o620);
      }
      await writeFile(target, '', { flag: 'a', mode: 0o600 });
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    const socket = new Socket({ fd, readable: true, writable: false });
    const sink = mode === 'append' ? createWriteStream(target, { flags: 'a' }) : undefined;
    return new FifoDrain(socket, sink, mode === 'last-line' ? target : undefined, onError);
  }

  private take(chunk: Buffer): void {
    if (this.sink !== undefined) {
      this.sink.write(chunk);
      return;
    }
    const text = this.partial + chunk.toString('utf8');
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      this.partial = text;
      return;
    }
    this.partial = text.slice(end + 1);
    const lines = text
      .slice(0, end)
      .split('\n')
      .filter((l) => l.trim() !== '');
    const last = lines[lines.length - 1];
    const file = this.lastLineFile;
    if (last === undefined || file === undefined) return;
    this.writes = this.writes
      .then(() => writeFile(file, `${last}\n`))
      .catch((err: unknown) => this.onError(err instanceof Error ? err : new Error(String(err))));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.sink?.end();
  }
}

/** One API call of the start-up sequence. */
export interface ApiCall {
  readonly method: 'PUT';
  readonly path: string;
  readonly body: unknown;
}

/** A Firecracker id: alphanumerics and `_`, at most 64 characters, unique among `taken`. */
function firecrackerId(raw: string, taken: Set<string>): string {
  const base = (raw.replace(/[^A-Za-z0-9_]/g, '_') || 'drive').slice(0, 60);
  let id = base;
  for (let n = 2; taken.has(id); n++) id = `${base}_${n}`;
  taken.add(id);
  return id;
}

function metadataNics(nics: readonly LaunchNic[]): string[] {
  return nics.flatMap((nic, index) => (nic.allowMetadata === true ? [`eth${index}`] : []));
}

/** The API calls that configure and start a VM, in order (pure; exported for the docs and tests). */
export function firecrackerStartCalls(launch: LaunchSpec, bootArgs: string): ApiCall[] {
  const dir = launch.vmDir;
  const calls: ApiCall[] = [
    { method: 'PUT', path: '/logger', body: { log_path: join(dir, FIRECRACKER_FILES.logFifo), level: 'Info', show_level: true, show_log_origin: false } },
    { method: 'PUT', path: '/metrics', body: { metrics_path: join(dir, FIRECRACKER_FILES.metricsFifo) } },
    { method: 'PUT', path: '/serial', body: { serial_out_path: launch.consoleLogPath } },
    { method: 'PUT', path: '/machine-config', body: { vcpu_count: launch.vcpu, mem_size_mib: launch.memoryMb } },
    {
      method: 'PUT',
      path: '/boot-source',
      body: { kernel_image_path: launch.kernelPath, boot_args: bootArgs, ...(launch.initrdPath !== undefined ? { initrd_path: launch.initrdPath } : {}) },
    },
  ];
  const driveIds = new Set<string>();
  for (const disk of launch.disks) {
    const id = firecrackerId(disk.id, driveIds);
    calls.push({
      method: 'PUT',
      path: `/drives/${id}`,
      body: { drive_id: id, path_on_host: disk.path, is_root_device: disk.root, is_read_only: disk.readOnly },
    });
  }
  launch.nics.forEach((nic, index) => {
    const id = `eth${index}`;
    calls.push({ method: 'PUT', path: `/network-interfaces/${id}`, body: { iface_id: id, host_dev_name: nic.hostDevice, guest_mac: nic.mac } });
  });
  if (launch.vm.spec.allowGuestAgent) {
    calls.push({ method: 'PUT', path: '/vsock', body: { guest_cid: 3, uds_path: join(dir, FIRECRACKER_FILES.vsock) } });
  }
  const mmdsNics = metadataNics(launch.nics);
  if (mmdsNics.length > 0) {
    calls.push({ method: 'PUT', path: '/mmds/config', body: { version: 'V1', network_interfaces: mmdsNics, ipv4_address: MMDS_ADDRESS } });
    const { 'meta-data': metaData, 'user-data': userData, 'vendor-data': vendorData, 'network-config': networkConfig } = launch.cloudInit;
    const latest: Record<string, string> = { 'meta-data': metaData };
    if (userData !== undefined) latest['user-data'] = userData;
    if (vendorData !== undefined) latest['vendor-data'] = vendorData;
    if (networkConfig !== undefined) latest['network-config'] = networkConfig;
    calls.push({ method: 'PUT', path: '/mmds', body: { latest } });
  }
  calls.push({ method: 'PUT', path: '/actions', body: { action_type: 'InstanceStart' } });
  return calls;
}

/** A file Firecracker opens, linked into its jail. */
export interface JailLink {
  readonly from: string;
  readonly to: string;
  /** A copy will do when a hard link can't be made (another filesystem). */
  readonly readOnly: boolean;
}

/**
 * Under the jailer: the launch as Firecracker sees it from inside its chroot (`/kernel`,
 * `/initrd`, `/disk<N>`, `/console.log`, the FIFOs and sockets at the root) and the links that
 * put the host's files there (pure).
 */
export function jailLayout(launch: LaunchSpec, chroot: string): { readonly launch: LaunchSpec; readonly links: JailLink[] } {
  const links: JailLink[] = [{ from: launch.kernelPath, to: join(chroot, 'kernel'), readOnly: true }];
  if (launch.initrdPath !== undefined) links.push({ from: launch.initrdPath, to: join(chroot, 'initrd'), readOnly: true });
  const disks = launch.disks.map((disk, i) => {
    links.push({ from: disk.path, to: join(chroot, `disk${i}`), readOnly: disk.readOnly });
    return { ...disk, path: `/disk${i}` };
  });
  links.push({ from: launch.consoleLogPath, to: join(chroot, 'console.log'), readOnly: false });
  return {
    launch: {
      ...launch,
      vmDir: '/',
      kernelPath: '/kernel',
      ...(launch.initrdPath !== undefined ? { initrdPath: '/initrd' } : {}),
      disks,
      consoleLogPath: '/console.log',
    },
    links,
  };
}

export interface JailerArgsInput {
  readonly id: string;
  /** The Firecracker binary, absolute (the jailer copies it into the chroot). */
  readonly execFile: string;
  readonly uid: number;
  readonly gid: number;
  readonly chrootBase: string;
}

/** The jailer's command line (pure). The jailer passes `--id` to Firecracker itself. */
export function jailerArgs(input: JailerArgsInput): string[] {
  return [
    '--id',
    input.id,
    '--exec-file',
    input.execFile,
    '--uid',
    String(input.uid),
    '--gid',
    String(input.gid),
    '--chroot-base-dir',
    input.chrootBase,
    '--',
    '--api-sock',
    JAILED_SOCKET,
  ];
}

/** The chroot the jailer builds for a VM: `<chroot-base>/<exec file name>/<id>/root`. */
export function jailRoot(vmDir: string, execFile: string, id: string): string {
  return join(vmDir, 'jail', basename(execFile), id, 'root');
}

/** Hard link (else, for a read-only file, a copy) at `to`, replacing what is there. */
async function placeInJail(entry: JailLink): Promise<void> {
  await unlink(entry.to).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  });
  try {
    await link(entry.from, entry.to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV' || !entry.readOnly) throw e;
    await copyFile(entry.from, entry.to, constants.COPYFILE_FICLONE);
    await chmod(entry.to, 0o644);
  }
}

export class FirecrackerProvider implements VmmProvider {
  readonly name = 'firecracker';
  readonly capabilities: ReadonlySet<ProviderCapability> = new Set<ProviderCapability>(['tap', 'metadata-service', 'vsock', 'pause']);

  private readonly bin: string;
  private readonly processes: ProcessTable;
  private readonly log: Logger;
  private readonly kvmUsable: () => boolean;
  private readonly socketTimeoutMs: number;
  private readonly jailerBin: string;
  private readonly sandboxed: boolean;
  private readonly kvmDevice: { readonly mode: number; readonly gid: number } | undefined;
  /** The log and metrics drains of each running VM, by VM dir. */
  private readonly drains = new Map<string, FifoDrain[]>();

  constructor(options: FirecrackerProviderOptions) {
    this.bin = options.bin;
    this.processes = options.processes;
    this.log = options.log.child({ provider: 'firecracker' });
    this.kvmUsable = options.kvmUsable ?? defaultKvmUsable;
    this.socketTimeoutMs = options.socketTimeoutMs ?? 5000;
    this.jailerBin = options.jailerBin ?? '';
    this.sandboxed = options.sandboxed ?? false;
    this.kvmDevice = options.kvmDevice ?? kvmDeviceStat();
  }

  availability(): ProviderAvailability {
    const availability = vmmAvailability('firecracker-bin', this.bin, { vmm: 'Firecracker', usable: this.kvmUsable });
    if (!availability.available) return availability;
    if (this.jailerBin !== '') {
      const jailer = vmmAvailability('firecracker-jailer-bin', this.jailerBin);
      return jailer.available && !this.sandboxed ? { available: false, reason: 'the jailer needs vmm-uid-range (a uid and gid per VM)' } : jailer;
    }
    // The jailer makes its own /dev/kvm in the chroot; without it the host's must be open to the VM's uid.
    if (this.sandboxed && !kvmGroupFor(this.kvmDevice).usable) return { available: false, reason: KVM_ROOT_ONLY('firecracker') };
    return availability;
  }

  defaultCmdline(launch: Omit<LaunchSpec, 'cmdline'>): Readonly<Record<string, string>> {
    const entries: Record<string, string> = {
      console: 'ttyS0',
      reboot: 'k',
      panic: '1',
      pci: 'off',
      'i8042.noaux': '',
      'i8042.nomux': '',
      'i8042.nopnp': '',
      'i8042.dumbkbd': '',
    };
    Object.assign(entries, rootDeviceArgs(launch.disks));
    // Without a NIC that reaches MMDS the seed URL would only make cloud-init wait for nothing.
    if (metadataNics(launch.nics).length > 0) entries.ds = NOCLOUD_SEED;
    const networkConfig = launch.cloudInit['network-config'];
    if (networkConfig !== undefined) entries['network-config'] = Buffer.from(networkConfig, 'utf8').toString('base64');
    return entries;
  }

  async start(launch: LaunchSpec, signal?: AbortSignal): Promise<VmmProcess> {
    signal?.throwIfAborted();
    const macvtap = launch.nics.find((nic) => nic.type !== 'tap');
    if (macvtap !== undefined) {
      throw new Error(`firecracker does not support ${macvtap.type} interfaces (interface ${macvtap.deviceId}); use a tap interface`);
    }
    const dir = launch.vmDir;
    const identity = launch.sandbox?.identity;
    const cgroupProcs = launch.sandbox?.cgroupProcs ?? [];
    const bootArgs = renderCmdline(this.defaultCmdline(launch), launch.cmdline);
    const jailed = this.jailerBin !== '' && identity !== undefined;
    const execFile = jailed ? (findExecutable(this.bin) ?? this.bin) : this.bin;
    // Where Firecracker's own files are: the VM dir, or the chroot of its jail.
    const home = jailed ? jailRoot(dir, execFile, launch.vm.id.uid) : dir;
    const layout = jailed ? jailLayout(launch, home) : { launch, links: [] };
    const calls = firecrackerStartCalls(layout.launch, bootArgs);
    const socketPath = join(home, FIRECRACKER_FILES.socket);

    await mkdir(home, { recursive: true });
    this.closeDrains(dir);
    // A stale socket makes Firecracker fail with "Address in use".
    await rm(socketPath, { force: true });
    await rm(join(home, FIRECRACKER_FILES.vsock), { force: true });
    for (const entry of layout.links) await placeInJail(entry);
    const drains = await this.openDrains(dir, home, identity?.gid);

    let process: VmmProcess | undefined;
    try {
      const command = jailed
        ? sandboxedCommand({
            bin: this.jailerBin,
            args: jailerArgs({ id: launch.vm.id.uid, execFile, uid: identity.uid, gid: identity.gid, chrootBase: join(dir, 'jail') }),
            cgroupProcs,
          })
        : sandboxedCommand({
            bin: this.bin,
            args: ['--api-sock', socketPath, '--id', launch.vm.id.uid],
            cgroupProcs,
            ...(identity !== undefined ? { identity, groups: kvmGroupFor(this.kvmDevice).groups } : {}),
          });
      process = await this.processes.spawn(command.bin, command.args, {
        logPath: join(dir, FIRECRACKER_FILES.vmmLog),
        cwd: dir,
        pidFile: launch.pidFile,
      });
      const spawned = process;
      // A jail deep in a long VM dir overflows sun_path: then through the process's root.
      const clientPath = Buffer.byteLength(socketPath) <= MAX_UNIX_PATH || !jailed ? socketPath : `/proc/${spawned.pid}/root${JAILED_SOCKET}`;
      await waitForSocket(clientPath, {
        timeoutMs: this.socketTimeoutMs,
        stillRunning: () => this.processes.isAlive(spawned),
        what: 'firecracker',
        ...(signal !== undefined ? { signal } : {}),
      });
      const api = new UnixSocketApiClient(clientPath);
      for (const call of calls) {
        signal?.throwIfAborted();
        await api.request(call.method, call.path, call.body);
      }
      if (!(await this.processes.isAlive(spawned))) throw new Error('firecracker exited right after InstanceStart');
      this.drains.set(dir, drains);
      this.log.info({ pid: spawned.pid, vmDir: dir }, 'firecracker running the guest');
      return spawned;
    } catch (err) {
      if (process !== undefined) await killAndWait(this.processes, process);
      for (const drain of drains) drain.close();
      if (signal?.aborted === true) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      const tail = await tailOfFile(join(dir, FIRECRACKER_FILES.vmmLog));
      throw new Error(`firecracker failed to start: ${reason}${tail !== '' ? `; vmm.log ends with: ${tail}` : ''}`, { cause: err });
    }
  }

  /** `PATCH /vm` to Paused. */
  async pause(vmDir: string, process: VmmProcess): Promise<void> {
    await new UnixSocketApiClient(this.clientSocket(vmDir, process)).request('PATCH', '/vm', { state: 'Paused' });
  }

  /** `PATCH /vm` to Resumed. */
  async resume(vmDir: string, process: VmmProcess): Promise<void> {
    await new UnixSocketApiClient(this.clientSocket(vmDir, process)).request('PATCH', '/vm', { state: 'Resumed' });
  }

  async stop(vmDir: string, process: VmmProcess, timeoutMs: number): Promise<void> {
    try {
      if (!(await this.processes.isAlive(process))) return;
      const api = new UnixSocketApiClient(this.clientSocket(vmDir, process), Math.max(100, Math.min(timeoutMs, 5000)));
      try {
        await api.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
      } catch (err) {
        this.log.warn({ pid: process.pid, err: err instanceof Error ? err.message : String(err) }, 'SendCtrlAltDel failed; killing firecracker');
      }
      if (await waitForExit(this.processes, process, timeoutMs)) return;
      this.log.warn({ pid: process.pid, timeoutMs }, 'guest did not shut down in time; killing firecracker');
      if (!(await killAndWait(this.processes, process))) throw new Error(`firecracker process ${process.pid} survived SIGKILL`);
    } finally {
      this.closeDrains(vmDir);
    }
  }

  /**
   * The API socket of a running VM: in the VM dir, or in its jail (by the process's root when too
   * long). The jail's id is the VM's uid, so `jail/<exec name>/` holds one directory.
   */
  private clientSocket(vmDir: string, process: VmmProcess): string {
    const plain = join(vmDir, FIRECRACKER_FILES.socket);
    if (this.jailerBin === '') return plain;
    const jails = join(vmDir, 'jail', basename(findExecutable(this.bin) ?? this.bin));
    let ids: string[];
    try {
      ids = readdirSync(jails);
    } catch {
      return plain;
    }
    if (ids.length !== 1 || ids[0] === undefined) return plain;
    const jailed = join(jails, ids[0], 'root', FIRECRACKER_FILES.socket);
    return Buffer.byteLength(jailed) <= MAX_UNIX_PATH ? jailed : `/proc/${process.pid}/root${JAILED_SOCKET}`;
  }

  /** The FIFOs are where Firecracker opens them (`home`: its chroot under the jailer); the drained files stay in the VM dir. */
  private async openDrains(dir: string, home: string, gid: number | undefined): Promise<FifoDrain[]> {
    const onError = (err: Error): void => this.log.warn({ vmDir: dir, err: err.message }, 'firecracker log drain failed');
    const log = await FifoDrain.open(join(home, FIRECRACKER_FILES.logFifo), join(dir, FIRECRACKER_FILES.log), 'append', onError, gid);
    try {
      const metrics = await FifoDrain.open(join(home, FIRECRACKER_FILES.metricsFifo), join(dir, FIRECRACKER_FILES.metrics), 'last-line', onError, gid);
      return [log, metrics];
    } catch (err) {
      log.close();
      throw err;
    }
  }

  private closeDrains(dir: string): void {
    for (const drain of this.drains.get(dir) ?? []) drain.close();
    this.drains.delete(dir);
  }
}
