// A stand-in for the `firecracker` and `cloud-hypervisor` binaries (no /dev/kvm here, so the real
// ones can't run). Run as `node --import tsx test/helpers/fake-vmm-bin.ts <the VMM's arguments>`,
// through a small shell wrapper a test writes and hands to the provider as its `bin`.
//
// It tells the VMM from its arguments (`--api-sock` is Firecracker, `--api-socket` is Cloud
// Hypervisor), refuses arguments the real binary would not take, serves the VMM's OpenAPI
// document on the socket with FakeVmm (which refuses what the document does not allow), and
// writes next to the socket:
//   <socket>.requests.jsonl   every API request, one JSON line each, in order
//   <socket>.start.json       its argv, and for Cloud Hypervisor the VmConfig its command line
//                             means plus the targets of the fds it was given
// A few semantic rules of the real VMMs are modelled on top of the schema checks: files named in
// the config must exist, Firecracker's log/metrics paths are opened the way Firecracker opens them
// (write-only, non-blocking: a FIFO without a reader fails), MMDS may only name known interfaces,
// pre-boot calls are refused after InstanceStart.
//
// FAKE_VMM_STOP (environment): `ignore-acpi` ignores the guest shutdown request (Firecracker's
// SendCtrlAltDel, Cloud Hypervisor's vm.power-button); `ignore-all` also ignores vm.shutdown and
// vmm.shutdown (only SIGKILL ends it).
// FAKE_VMM_ROOT (environment, set by the fake jailer): Firecracker's paths are inside this
// directory, as they would be inside the jailer's chroot.
// The start file also records who the fake ran as (uid, gid, groups): the sandbox's doing.
import { closeSync, constants, existsSync, openSync, readFileSync, readlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiSpec, FakeVmm, requestLogPath, startInfoPath, type HookResult, type RecordedRequest } from './fake-vmm.js';

const specDir = process.env.FAKE_VMM_SPEC_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '../../../shared/ref');
const stopMode = process.env.FAKE_VMM_STOP ?? '';
const jailRoot = process.env.FAKE_VMM_ROOT ?? '';
/** A path as Firecracker names it, on the host (inside the fake jail, if any). */
const onHost = (path: string): string => (jailRoot !== '' && path.startsWith('/') ? join(jailRoot, path) : path);

function fail(message: string): never {
  process.stderr.write(`fake-vmm: ${message}\n`);
  process.exit(1);
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function exitSoon(): void {
  setTimeout(() => process.exit(0), 20);
}

// ---------------------------------------------------------------------------------------------
// Firecracker

function firecracker(argv: readonly string[]): {
  socketPath: string;
  hook: (r: RecordedRequest, p: Readonly<Record<string, string>>) => HookResult | undefined;
} {
  let socketPath: string | undefined;
  let id = 'anonymous-instance';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    // The jailer passes `--id=<id>` and its timings in the `--flag=value` form.
    const inline = /^(--id|--start-time-us|--start-time-cpu-us)=(.*)$/.exec(arg ?? '');
    if (inline !== null) {
      if (inline[1] === '--id') id = inline[2] ?? '';
      continue;
    }
    if (arg === '--api-sock' && value !== undefined) socketPath = onHost(value);
    else if (arg === '--id' && value !== undefined) id = value;
    else fail(`firecracker: unexpected argument "${arg}"`);
    i++;
  }
  if (socketPath === undefined) fail('firecracker: --api-sock is required by this fake');
  if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) fail(`firecracker: invalid --id "${id}"`);

  let started = false;
  let bootSource = false;
  const ifaces = new Set<string>();
  const bad = (fault: string): HookResult => ({ status: 400, body: { fault_message: fault } });
  const openLikeFirecracker = (path: string): number | undefined => {
    try {
      return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK | constants.O_CREAT, 0o600);
    } catch {
      return undefined;
    }
  };
  let metricsFd: number | undefined;
  const flushMetrics = (): void => {
    if (metricsFd !== undefined) writeSync(metricsFd, `${JSON.stringify({ utc_timestamp_ms: Date.now(), api_server: { process_startup_time_us: 1 } })}\n`);
  };

  const hook = (r: RecordedRequest, params: Readonly<Record<string, string>>): HookResult | undefined => {
    const body = isRecord(r.body) ? r.body : {};
    if (r.method === 'GET' && r.path === '/') {
      return { status: 200, body: { app_name: 'Firecracker', id, state: started ? 'Running' : 'Not started', vmm_version: '1.17.0-fake' } };
    }
    if (r.method !== 'PUT') return undefined;
    const preBoot =
      ['/logger', '/metrics', '/serial', '/machine-config', '/boot-source', '/mmds/config', '/vsock'].includes(r.path) ||
      r.path.startsWith('/drives/') ||
      r.path.startsWith('/network-interfaces/');
    if (started && preBoot) return bad('The requested operation is not supported after starting the microVM.');
    if (r.path === '/logger') {
      const fd = openLikeFirecracker(onHost(String(body.log_path)));
      if (fd === undefined) return bad(`Cannot initialize logging system: cannot open ${String(body.log_path)}`);
      writeSync(fd, 'fake-firecracker: logger configured\n');
      closeSync(fd);
    } else if (r.path === '/metrics') {
      metricsFd = openLikeFirecracker(onHost(String(body.metrics_path)));
      if (metricsFd === undefined) return bad(`Cannot initialize metrics system: cannot open ${String(body.metrics_path)}`);
      flushMetrics();
    } else if (r.path === '/boot-source') {
      for (const key of ['kernel_image_path', 'initrd_path']) {
        if (key in body && !existsSync(onHost(String(body[key])))) return bad(`${key} ${String(body[key])} does not exist`);
      }
      bootSource = true;
    } else if (r.path.startsWith('/drives/')) {
      if (!existsSync(onHost(String(body.path_on_host)))) return bad(`path_on_host ${String(body.path_on_host)} does not exist`);
    } else if (r.path.startsWith('/network-interfaces/')) {
      ifaces.add(params.iface_id ?? '');
    } else if (r.path === '/mmds/config') {
      const unknown = (Array.isArray(body.network_interfaces) ? body.network_interfaces : []).filter((n) => !ifaces.has(String(n)));
      if (unknown.length > 0) return bad(`The MMDS could not be configured: unknown network interfaces ${unknown.join(', ')}`);
    } else if (r.path === '/actions') {
      if (body.action_type === 'InstanceStart') {
        if (started) return bad('The microVM is already running.');
        if (!bootSource) return bad('Cannot start microvm without kernel configuration.');
        started = true;
        flushMetrics();
      } else if (body.action_type === 'SendCtrlAltDel') {
        if (!started) return bad('The microVM is not running.');
        if (stopMode === '') return { after: exitSoon };
      }
    }
    return undefined;
  };
  return { socketPath, hook };
}

// ---------------------------------------------------------------------------------------------
// Cloud Hypervisor

/** `k=v,k=v` with only the given keys. */
function options(flag: string, value: string, allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) fail(`cloud-hypervisor: ${flag} "${value}": "${part}" is not key=value`);
    const key = part.slice(0, eq);
    if (!allowed.includes(key)) fail(`cloud-hypervisor: ${flag} "${value}": unknown option "${key}"`);
    out[key] = part.slice(eq + 1);
  }
  return out;
}

function toggle(flag: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'on' || value === 'true') return true;
  if (value === 'off' || value === 'false') return false;
  return fail(`cloud-hypervisor: ${flag}: "${value}" is not on/off`);
}

function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) fail(`cloud-hypervisor: ${flag}: "${value}" is not a number`);
  return Number(value);
}

function byteSize(flag: string, value: string): number {
  const m = /^(\d+)([KMG]?)$/.exec(value);
  if (m === null) fail(`cloud-hypervisor: ${flag}: bad size "${value}"`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

const IMAGE_TYPES: Readonly<Record<string, string>> = { raw: 'Raw', qcow2: 'Qcow2', vhdx: 'Vhdx', fixed_vhd: 'FixedVhd' };
const MULTI = new Set(['--disk', '--net']);
const SINGLE = new Set([
  '--api-socket',
  '--kernel',
  '--initramfs',
  '--cmdline',
  '--cpus',
  '--memory',
  '--serial',
  '--console',
  '--vsock',
  '--log-file',
  '--seccomp',
]);

function cloudHypervisor(argv: readonly string[]): {
  socketPath: string;
  hook: (r: RecordedRequest) => HookResult | undefined;
  start: Json;
} {
  const single = new Map<string, string>();
  const multi = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    if (flag === '-v') continue;
    if (SINGLE.has(flag)) {
      const value = argv[++i];
      if (value === undefined) fail(`cloud-hypervisor: ${flag} needs a value`);
      if (single.has(flag)) fail(`cloud-hypervisor: ${flag} given twice`);
      single.set(flag, value);
    } else if (MULTI.has(flag)) {
      const values = multi.get(flag) ?? [];
      while (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('-')) values.push(argv[++i] ?? '');
      if (values.length === 0) fail(`cloud-hypervisor: ${flag} needs a value`);
      multi.set(flag, values);
    } else {
      fail(`cloud-hypervisor: unexpected argument "${flag}"`);
    }
  }
  const apiSocket = single.get('--api-socket');
  if (apiSocket === undefined) fail('cloud-hypervisor: --api-socket is required by this fake');
  const socketPath = apiSocket.startsWith('path=') ? (options('--api-socket', apiSocket, ['path']).path ?? '') : apiSocket;

  const seccomp = single.get('--seccomp') ?? 'true';
  if (!['true', 'false', 'log'].includes(seccomp)) fail(`cloud-hypervisor: --seccomp: "${seccomp}" is not true, false or log`);

  const kernel = single.get('--kernel');
  if (kernel === undefined) fail('cloud-hypervisor: this fake wants the VM on the command line (--kernel)');
  const mustExist = (what: string, path: string): void => {
    if (!existsSync(path)) fail(`cloud-hypervisor: ${what} ${path} does not exist`);
  };
  mustExist('kernel', kernel);
  const initramfs = single.get('--initramfs');
  if (initramfs !== undefined) mustExist('initramfs', initramfs);
  const payload: Json = { kernel, ...(initramfs !== undefined ? { initramfs } : {}), ...(single.has('--cmdline') ? { cmdline: single.get('--cmdline') } : {}) };

  const config: Json = { payload };
  const cpus = single.get('--cpus');
  if (cpus !== undefined) {
    const o = options('--cpus', cpus, ['boot', 'max']);
    const boot = integer('--cpus boot', o.boot) ?? 1;
    config.cpus = { boot_vcpus: boot, max_vcpus: integer('--cpus max', o.max) ?? boot };
  }
  const memory = single.get('--memory');
  if (memory !== undefined) {
    const o = options('--memory', memory, ['size', 'shared', 'hugepages']);
    config.memory = { size: byteSize('--memory size', o.size ?? '512M'), ...(o.shared !== undefined ? { shared: toggle('shared', o.shared) } : {}) };
  }
  const disks = multi.get('--disk');
  if (disks !== undefined) {
    config.disks = disks.map((value) => {
      const o = options('--disk', value, ['path', 'readonly', 'direct', 'image_type', 'id', 'serial', 'num_queues', 'queue_size']);
      if (o.path === undefined) fail(`cloud-hypervisor: --disk "${value}" has no path`);
      mustExist('disk', o.path);
      const imageType = o.image_type !== undefined ? IMAGE_TYPES[o.image_type] : undefined;
      if (o.image_type !== undefined && imageType === undefined) fail(`cloud-hypervisor: --disk: unknown image_type "${o.image_type}"`);
      return {
        path: o.path,
        ...(o.readonly !== undefined ? { readonly: toggle('readonly', o.readonly) } : {}),
        ...(o.direct !== undefined ? { direct: toggle('direct', o.direct) } : {}),
        ...(imageType !== undefined ? { image_type: imageType } : {}),
        ...(o.id !== undefined ? { id: o.id } : {}),
        ...(o.serial !== undefined ? { serial: o.serial } : {}),
        ...(o.num_queues !== undefined ? { num_queues: integer('num_queues', o.num_queues) } : {}),
        ...(o.queue_size !== undefined ? { queue_size: integer('queue_size', o.queue_size) } : {}),
      };
    });
  }
  const fds: Record<string, string> = {};
  const nets = multi.get('--net');
  if (nets !== undefined) {
    config.net = nets.map((value) => {
      const o = options('--net', value, ['tap', 'fd', 'mac', 'ip', 'mask', 'id', 'num_queues', 'queue_size', 'mtu']);
      // Stricter than CH, which would invent a tap of its own: a NIC must name its backend.
      if (o.tap === undefined && o.fd === undefined) fail(`cloud-hypervisor: --net "${value}" has neither tap nor fd`);
      if (o.mac === undefined || !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(o.mac)) fail(`cloud-hypervisor: --net "${value}": missing or invalid mac`);
      if (o.fd !== undefined) {
        for (const fd of o.fd.replace(/^\[|\]$/g, '').split(';')) {
          try {
            const target = readlinkSync(`/proc/self/fd/${fd}`);
            // A tap opened on /dev/net/tun says which tap in its fdinfo.
            const iff = target === '/dev/net/tun' ? /^iff:\s*(\S+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] : undefined;
            fds[fd] = iff !== undefined ? `${target} (${iff})` : target;
          } catch {
            fail(`cloud-hypervisor: --net fd=${fd}: the fd is not open`);
          }
        }
      }
      // The API's NetConfig has no fds: they travel outside the JSON (CLI or SCM_RIGHTS).
      return {
        ...(o.tap !== undefined ? { tap: o.tap } : {}),
        mac: o.mac,
        ...(o.ip !== undefined ? { ip: o.ip } : {}),
        ...(o.mask !== undefined ? { mask: o.mask } : {}),
        ...(o.id !== undefined ? { id: o.id } : {}),
        ...(o.num_queues !== undefined ? { num_queues: integer('num_queues', o.num_queues) } : {}),
        ...(o.mtu !== undefined ? { mtu: integer('mtu', o.mtu) } : {}),
      };
    });
  }
  const consoleMode = (flag: string, value: string): Json => {
    if (value.startsWith('file=')) return { mode: 'File', file: value.slice(5) };
    const mode = { off: 'Off', null: 'Null', tty: 'Tty', pty: 'Pty' }[value];
    if (mode === undefined) fail(`cloud-hypervisor: ${flag}: unknown mode "${value}"`);
    return { mode };
  };
  const serial = single.get('--serial');
  if (serial !== undefined) config.serial = consoleMode('--serial', serial);
  const consoleArg = single.get('--console');
  if (consoleArg !== undefined) config.console = consoleMode('--console', consoleArg);
  const vsock = single.get('--vsock');
  if (vsock !== undefined) {
    const o = options('--vsock', vsock, ['cid', 'socket']);
    config.vsock = { cid: integer('--vsock cid', o.cid), socket: o.socket };
  }

  const spec = ApiSpec.load(join(specDir, 'cloud-hypervisor-api.yaml'));
  const errors = spec.validate(spec.schema('VmConfig'), config, 'VmConfig');
  if (errors.length > 0) fail(`cloud-hypervisor: the command line makes an invalid VmConfig: ${errors.join('; ')}`);

  let state = 'Running';
  const hook = (r: RecordedRequest): HookResult | undefined => {
    const op = r.path.replace(/^\/api\/v1\//, '');
    switch (op) {
      case 'vm.info':
        return { status: 200, body: { config, state } };
      case 'vmm.ping':
        return { status: 200, body: { version: 'v0-fake', pid: process.pid } };
      case 'vm.power-button':
        if (state !== 'Running') return { status: 405, body: { fault_message: 'the VM is not running' } };
        if (stopMode !== '') return undefined;
        state = 'Shutdown';
        return { after: exitSoon };
      case 'vm.shutdown':
        if (stopMode !== 'ignore-all') state = 'Shutdown';
        return undefined;
      case 'vmm.shutdown':
        return stopMode === 'ignore-all' ? undefined : { after: exitSoon };
      default:
        return undefined;
    }
  };
  return { socketPath, hook, start: { config, fds, seccomp } };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let vmm: { socketPath: string; hook: (r: RecordedRequest, p: Readonly<Record<string, string>>) => HookResult | undefined; start?: Json };
  let specFile: string;
  if (argv.includes('--api-sock')) {
    vmm = firecracker(argv);
    specFile = 'firecracker-api.yaml';
  } else if (argv.includes('--api-socket')) {
    vmm = cloudHypervisor(argv);
    specFile = 'cloud-hypervisor-api.yaml';
  } else {
    fail(`can't tell which VMM to fake from: ${argv.join(' ')}`);
  }
  const identity = { uid: process.getuid?.(), gid: process.getgid?.(), groups: process.getgroups?.() };
  writeFileSync(startInfoPath(vmm.socketPath), JSON.stringify({ argv, identity, ...vmm.start }, null, 2));
  const fake = new FakeVmm({
    spec: ApiSpec.load(join(specDir, specFile)),
    socketPath: vmm.socketPath,
    logFile: requestLogPath(vmm.socketPath),
    onAccepted: vmm.hook,
  });
  await fake.listen();
  process.stdout.write(`fake-vmm: serving ${specFile} on ${vmm.socketPath}\n`);
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
