// The Cloud Hypervisor provider.
//
// Why the VM is configured on the command line and not with `PUT /api/v1/vm.create`:
// a macvtap NIC reaches Cloud Hypervisor as an open file descriptor, and CH takes descriptors in
// exactly two ways: `--net fd=<n>` on its command line (inherited fds), or SCM_RIGHTS ancillary
// data on the API socket with `vm.add-net`/`vm.restore`. A `fds` field in a `vm.create` body is
// not part of the published API (NetConfig in cloud-hypervisor-api.yaml has no `fds`), and CH
// itself discards it ("Ignoring FDs sent via the HTTP request body"), leaving a NIC with neither
// tap nor fd, for which CH invents a tap of its own: the guest would silently get no network.
// Node can't send SCM_RIGHTS over a socket, so the whole VM goes on the command line, the form
// CH's own macvtap guide uses (`--net fd=3,mac=...` with fd 3 inherited), and the API socket is
// used for what it is good at: state (`GET vm.info`) and shutdown. CH creates and boots a VM
// given on its command line at once.
//
//   cloud-hypervisor --api-socket path=<vmDir>/ch.sock
//     --kernel <kernel> [--initramfs <initrd>] --cmdline "<cmdline>"
//     --cpus boot=<vcpu> --memory size=<mem>M
//     --disk path=<root>,readonly=off,image_type=raw path=<vol>,readonly=on,image_type=raw ... path=<cidata>,readonly=on,image_type=raw
//     --net fd=<n>,mac=<mac> ...
//     --serial file=<console log> --console off
//     [--vsock cid=3,socket=<vmDir>/guest-agent.vsock]
//     --seccomp true
//
// Every NIC is an fd (ADR 0009): macvtaps' tap nodes opened here (fd 3, 4, ...), taps opened by
// name in the launch chain (providers/sandbox.ts) at the next fds, so CH, running as the VM's own
// uid, needs no /dev/net/tun. `--seccomp true` is CH's default (its own per-thread filters),
// spelled out so the command line says so.
//
// The original's CH bugs, avoided: the initrd is passed (`--initramfs`), `readonly=on` is honoured
// for read-only volumes and the cidata disk, `mac=` is always the NIC's resolved MAC (a macvtap's
// own MAC, so DHCP and cloud-init match), and the tap-node fds are closed in the daemon right
// after the spawn (the child holds its own copies). `image_type=raw` is explicit because CH
// refuses writes to sector 0 of a disk whose raw type it only guessed, and an ext4 image
// without a partition table keeps its superblock in block 0.
//
// Start-up waits for the API socket, then polls `GET /api/v1/vm.info` until the VM is Running.
// Stop: `PUT vm.power-button` (ACPI; CH exits when the guest powers off), wait up to the timeout,
// then `PUT vm.shutdown` and `PUT vmm.shutdown`, and SIGKILL if the process is still there.
import { constants } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { LaunchSpec, Logger, ProcessTable, ProviderAvailability, ProviderCapability, VmmProcess, VmmProvider } from '../../core/ports.js';
import { renderCmdline, rootDeviceArgs } from '../../core/guest.js';
import { killAndWait, tailOfFile, UnixSocketApiClient, waitForExit, waitForSocket } from './openapi-http.js';
import { kvmUsable as defaultKvmUsable, vmmAvailability } from './host.js';
import { KVM_ROOT_ONLY, kvmDeviceStat, kvmGroupFor, nicFdPlan, sandboxedCommand } from './sandbox.js';

export const CLOUD_HYPERVISOR_FILES = {
  socket: 'ch.sock',
  vmmLog: 'vmm.log',
  vsock: 'guest-agent.vsock',
} as const;

/** Where the API lives on the socket (the spec's `servers` URL). */
export const CH_API_BASE = '/api/v1';

export interface CloudHypervisorProviderOptions {
  readonly bin: string;
  readonly processes: ProcessTable;
  readonly log: Logger;
  readonly kvmUsable?: () => boolean;
  /** How long the API socket may take to appear (default 5 s). */
  readonly socketTimeoutMs?: number;
  /** How long the VM may take to reach Running once the socket is up (default 10 s). */
  readonly bootTimeoutMs?: number;
  /** /dev/kvm's mode and group (default: stat of /dev/kvm), for the group a sandboxed CH keeps. */
  readonly kvmDevice?: { readonly mode: number; readonly gid: number };
  /** VMMs run as uids of their own (`vmm-uid-range` set): /dev/kvm must be open to them. */
  readonly sandboxed?: boolean;
}

/** CH splits option values on commas and `=`: a path with them can't be said on its command line. */
function optionValue(what: string, value: string): string {
  if (/[,"]/.test(value)) throw new Error(`cloud-hypervisor can't take ${what} "${value}": it contains a comma or a quote`);
  return value;
}

/**
 * The command line for a VM (pure; exported for docs and tests). `fds[i]` is NIC i's fd in the
 * child (see nicFdPlan).
 */
export function cloudHypervisorArgs(launch: LaunchSpec, cmdline: string, socketPath: string, fds: readonly number[]): string[] {
  const args = ['--api-socket', `path=${optionValue('the API socket path', socketPath)}`, '--kernel', launch.kernelPath];
  if (launch.initrdPath !== undefined) args.push('--initramfs', launch.initrdPath);
  args.push('--cmdline', cmdline, '--cpus', `boot=${launch.vcpu}`, '--memory', `size=${launch.memoryMb}M`);
  if (launch.disks.length > 0) {
    args.push(
      '--disk',
      ...launch.disks.map((d) => `path=${optionValue(`the disk path of ${d.id}`, d.path)},readonly=${d.readOnly ? 'on' : 'off'},image_type=raw`),
    );
  }
  if (launch.nics.length > 0) {
    args.push(
      '--net',
      ...launch.nics.map((nic, i) => {
        const fd = fds[i];
        if (fd === undefined) throw new Error(`no fd for interface ${nic.deviceId}`);
        return `fd=${fd},mac=${nic.mac}`;
      }),
    );
  }
  args.push('--serial', `file=${optionValue('the console log path', launch.consoleLogPath)}`, '--console', 'off');
  if (launch.vm.spec.allowGuestAgent) args.push('--vsock', `cid=3,socket=${optionValue('the vsock path', join(launch.vmDir, CLOUD_HYPERVISOR_FILES.vsock))}`);
  args.push('--seccomp', 'true');
  return args;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function vmState(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null || !('state' in json)) return undefined;
  const state = json.state;
  return typeof state === 'string' ? state : undefined;
}

export class CloudHypervisorProvider implements VmmProvider {
  readonly name = 'cloudhypervisor';
  readonly capabilities: ReadonlySet<ProviderCapability> = new Set<ProviderCapability>(['macvtap', 'tap', 'virtiofs', 'vsock', 'pause']);

  private readonly bin: string;
  private readonly processes: ProcessTable;
  private readonly log: Logger;
  private readonly kvmUsable: () => boolean;
  private readonly socketTimeoutMs: number;
  private readonly bootTimeoutMs: number;
  private readonly kvmDevice: { readonly mode: number; readonly gid: number } | undefined;
  private readonly sandboxed: boolean;

  constructor(options: CloudHypervisorProviderOptions) {
    this.bin = options.bin;
    this.processes = options.processes;
    this.log = options.log.child({ provider: 'cloudhypervisor' });
    this.kvmUsable = options.kvmUsable ?? defaultKvmUsable;
    this.socketTimeoutMs = options.socketTimeoutMs ?? 5000;
    this.bootTimeoutMs = options.bootTimeoutMs ?? 10_000;
    this.kvmDevice = options.kvmDevice ?? kvmDeviceStat();
    this.sandboxed = options.sandboxed ?? false;
  }

  availability(): ProviderAvailability {
    const availability = vmmAvailability('cloudhypervisor-bin', this.bin, { vmm: 'Cloud Hypervisor', usable: this.kvmUsable });
    if (!availability.available || !this.sandboxed || kvmGroupFor(this.kvmDevice).usable) return availability;
    return { available: false, reason: KVM_ROOT_ONLY('cloud-hypervisor') };
  }

  defaultCmdline(launch: Omit<LaunchSpec, 'cmdline'>): Readonly<Record<string, string>> {
    const entries: Record<string, string> = { console: 'ttyS0', reboot: 'k', panic: '1' };
    Object.assign(entries, rootDeviceArgs(launch.disks));
    return entries;
  }

  async start(launch: LaunchSpec, signal?: AbortSignal): Promise<VmmProcess> {
    signal?.throwIfAborted();
    const dir = launch.vmDir;
    const socketPath = join(dir, CLOUD_HYPERVISOR_FILES.socket);
    const cmdline = renderCmdline(this.defaultCmdline(launch), launch.cmdline);
    await mkdir(dir, { recursive: true });
    await rm(socketPath, { force: true });
    await rm(join(dir, CLOUD_HYPERVISOR_FILES.vsock), { force: true });

    let process: VmmProcess | undefined;
    try {
      const tapNodes: FileHandle[] = [];
      try {
        const plan = nicFdPlan(launch.nics);
        for (const node of plan.macvtapNodes) tapNodes.push(await open(node, constants.O_RDWR));
        const args = cloudHypervisorArgs(launch, cmdline, socketPath, plan.fds);
        const sandbox = launch.sandbox;
        const command = sandboxedCommand({
          bin: this.bin,
          args,
          cgroupProcs: sandbox?.cgroupProcs ?? [],
          taps: plan.taps,
          handedFds: plan.macvtapNodes.length,
          ...(sandbox?.identity !== undefined ? { identity: sandbox.identity, groups: kvmGroupFor(this.kvmDevice).groups } : {}),
        });
        process = await this.processes.spawn(command.bin, command.args, {
          logPath: join(dir, CLOUD_HYPERVISOR_FILES.vmmLog),
          cwd: dir,
          extraFds: tapNodes.map((h) => h.fd),
          pidFile: launch.pidFile,
        });
      } finally {
        // The child has its own copies now; the daemon keeps none (the original leaked them).
        await Promise.all(tapNodes.map((h) => h.close()));
      }
      const spawned = process;
      const stillRunning = (): Promise<boolean> => this.processes.isAlive(spawned);
      await waitForSocket(socketPath, { timeoutMs: this.socketTimeoutMs, stillRunning, what: 'cloud-hypervisor', ...(signal !== undefined ? { signal } : {}) });
      await this.waitRunning(new UnixSocketApiClient(socketPath), stillRunning, signal);
      this.log.info({ pid: spawned.pid, vmDir: dir }, 'cloud-hypervisor running the guest');
      return spawned;
    } catch (err) {
      if (process !== undefined) await killAndWait(this.processes, process);
      if (signal?.aborted === true) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      const tail = await tailOfFile(join(dir, CLOUD_HYPERVISOR_FILES.vmmLog));
      throw new Error(`cloud-hypervisor failed to start: ${reason}${tail !== '' ? `; vmm.log ends with: ${tail}` : ''}`, { cause: err });
    }
  }

  /** Polls `vm.info` until the VM is Running (CH creates and boots a command-line VM itself). */
  private async waitRunning(api: UnixSocketApiClient, stillRunning: () => Promise<boolean>, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.bootTimeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const res = await api.raw('GET', `${CH_API_BASE}/vm.info`);
      const state = res.status === 200 ? vmState(res.json) : undefined;
      if (state === 'Running') return;
      if (state === 'Shutdown' || state === 'BreakPoint') throw new Error(`the VM is ${state} right after start`);
      const last = state !== undefined ? `state ${state}` : `HTTP ${res.status} ${res.text.trim()}`;
      if (!(await stillRunning())) throw new Error(`cloud-hypervisor exited before the VM ran (last vm.info: ${last})`);
      if (Date.now() > deadline) throw new Error(`the VM was not Running within ${this.bootTimeoutMs} ms (last vm.info: ${last})`);
      await sleep(50);
    }
  }

  /** `PUT vm.pause`. */
  async pause(vmDir: string): Promise<void> {
    await new UnixSocketApiClient(join(vmDir, CLOUD_HYPERVISOR_FILES.socket)).request('PUT', `${CH_API_BASE}/vm.pause`);
  }

  /** `PUT vm.resume`. */
  async resume(vmDir: string): Promise<void> {
    await new UnixSocketApiClient(join(vmDir, CLOUD_HYPERVISOR_FILES.socket)).request('PUT', `${CH_API_BASE}/vm.resume`);
  }

  async stop(vmDir: string, process: VmmProcess, timeoutMs: number): Promise<void> {
    if (!(await this.processes.isAlive(process))) return;
    const api = new UnixSocketApiClient(join(vmDir, CLOUD_HYPERVISOR_FILES.socket), Math.max(100, Math.min(timeoutMs, 5000)));
    const put = async (what: string): Promise<void> => {
      try {
        await api.request('PUT', `${CH_API_BASE}/${what}`);
      } catch (err) {
        this.log.warn({ pid: process.pid, err: err instanceof Error ? err.message : String(err) }, `${what} failed`);
      }
    };
    await put('vm.power-button');
    if (await waitForExit(this.processes, process, timeoutMs)) return;
    this.log.warn({ pid: process.pid, timeoutMs }, 'guest did not power off in time; shutting the VMM down');
    if (await this.processes.isAlive(process)) await put('vm.shutdown');
    if (await this.processes.isAlive(process)) await put('vmm.shutdown');
    if (await waitForExit(this.processes, process, 1000)) return;
    if (!(await killAndWait(this.processes, process))) throw new Error(`cloud-hypervisor process ${process.pid} survived SIGKILL`);
  }
}
