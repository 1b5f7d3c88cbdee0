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
import { execFile } from 'node:child_process';
import { constants, createWriteStream, open as openFd, type WriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LaunchNic, LaunchSpec, Logger, ProcessTable, ProviderAvailability, ProviderCapability, VmmProcess, VmmProvider } from '../../core/ports.js';
import { renderCmdline, rootDeviceArgs } from '../../core/guest.js';
import { killAndWait, tailOfFile, UnixSocketApiClient, waitForExit, waitForSocket } from './openapi-http.js';
import { kvmUsable as defaultKvmUsable, vmmAvailability } from './host.js';

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
}

const execFileAsync = promisify(execFile);
const openFdAsync = promisify(openFd);

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

  /** Makes the FIFO (replacing whatever is at fifoPath) and starts draining it into target. */
  static async open(fifoPath: string, target: string, mode: 'append' | 'last-line', onError: (err: Error) => void): Promise<FifoDrain> {
    await rm(fifoPath, { force: true });
    await execFileAsync('mkfifo', ['-m', '0600', fifoPath]);
    // A raw fd (not a FileHandle, which would close it when collected): the socket owns it.
    const fd = await openFdAsync(fifoPath, constants.O_RDWR | constants.O_NONBLOCK);
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

export class FirecrackerProvider implements VmmProvider {
  readonly name = 'firecracker';
  readonly capabilities: ReadonlySet<ProviderCapability> = new Set<ProviderCapability>(['tap', 'metadata-service', 'vsock']);

  private readonly bin: string;
  private readonly processes: ProcessTable;
  private readonly log: Logger;
  private readonly kvmUsable: () => boolean;
  private readonly socketTimeoutMs: number;
  /** The log and metrics drains of each running VM, by VM dir. */
  private readonly drains = new Map<string, FifoDrain[]>();

  constructor(options: FirecrackerProviderOptions) {
    this.bin = options.bin;
    this.processes = options.processes;
    this.log = options.log.child({ provider: 'firecracker' });
    this.kvmUsable = options.kvmUsable ?? defaultKvmUsable;
    this.socketTimeoutMs = options.socketTimeoutMs ?? 5000;
  }

  availability(): ProviderAvailability {
    return vmmAvailability('firecracker-bin', this.bin, { vmm: 'Firecracker', usable: this.kvmUsable });
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

  async start(launch: LaunchSpec): Promise<VmmProcess> {
    const macvtap = launch.nics.find((nic) => nic.type !== 'tap');
    if (macvtap !== undefined) {
      throw new Error(`firecracker does not support ${macvtap.type} interfaces (interface ${macvtap.deviceId}); use a tap interface`);
    }
    const dir = launch.vmDir;
    const socketPath = join(dir, FIRECRACKER_FILES.socket);
    const bootArgs = renderCmdline(this.defaultCmdline(launch), launch.cmdline);
    const calls = firecrackerStartCalls(launch, bootArgs);

    await mkdir(dir, { recursive: true });
    this.closeDrains(dir);
    // A stale socket makes Firecracker fail with "Address in use".
    await rm(socketPath, { force: true });
    await rm(join(dir, FIRECRACKER_FILES.vsock), { force: true });
    const drains = await this.openDrains(dir);

    let process: VmmProcess | undefined;
    try {
      process = await this.processes.spawn(this.bin, ['--api-sock', socketPath, '--id', launch.vm.id.uid], {
        logPath: join(dir, FIRECRACKER_FILES.vmmLog),
        cwd: dir,
        pidFile: launch.pidFile,
      });
      const spawned = process;
      await waitForSocket(socketPath, { timeoutMs: this.socketTimeoutMs, stillRunning: () => this.processes.isAlive(spawned), what: 'firecracker' });
      const api = new UnixSocketApiClient(socketPath);
      for (const call of calls) await api.request(call.method, call.path, call.body);
      if (!(await this.processes.isAlive(spawned))) throw new Error('firecracker exited right after InstanceStart');
      this.drains.set(dir, drains);
      this.log.info({ pid: spawned.pid, vmDir: dir }, 'firecracker running the guest');
      return spawned;
    } catch (err) {
      if (process !== undefined) await killAndWait(this.processes, process);
      for (const drain of drains) drain.close();
      const reason = err instanceof Error ? err.message : String(err);
      const tail = await tailOfFile(join(dir, FIRECRACKER_FILES.vmmLog));
      throw new Error(`firecracker failed to start: ${reason}${tail !== '' ? `; vmm.log ends with: ${tail}` : ''}`, { cause: err });
    }
  }

  async stop(vmDir: string, process: VmmProcess, timeoutMs: number): Promise<void> {
    try {
      if (!(await this.processes.isAlive(process))) return;
      const api = new UnixSocketApiClient(join(vmDir, FIRECRACKER_FILES.socket), Math.max(100, Math.min(timeoutMs, 5000)));
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

  private async openDrains(dir: string): Promise<FifoDrain[]> {
    const onError = (err: Error): void => this.log.warn({ vmDir: dir, err: err.message }, 'firecracker log drain failed');
    const log = await FifoDrain.open(join(dir, FIRECRACKER_FILES.logFifo), join(dir, FIRECRACKER_FILES.log), 'append', onError);
    try {
      const metrics = await FifoDrain.open(join(dir, FIRECRACKER_FILES.metricsFifo), join(dir, FIRECRACKER_FILES.metrics), 'last-line', onError);
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
