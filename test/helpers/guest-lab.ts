// The lab for real boots: the test guest (scripts/build-guest-image.sh), dnsmasq in a test
// namespace, Debian's docker-registry in a test namespace, and the guest's console markers.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeTempDir } from './daemon.js';
import { createTestNetns, type TestNetns } from './netns.js';
import { atExit, killIfNamed, spawnTracked } from './processes.js';
import { waitFor } from './wait.js';

const REPO = resolve(import.meta.dirname, '../..');
export const GUEST_DIR = join(REPO, '.cache/guest');
export const KERNEL = join(GUEST_DIR, 'vmlinuz');
export const INITRD = join(GUEST_DIR, 'initramfs.cpio.gz');
export const QEMU = 'qemu-system-x86_64';
export const BOOT_DEADLINE_MS = 30_000;

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

/** Builds the test guest once (cached in .cache/guest). */
export function ensureGuestImage(): void {
  if (existsSync(KERNEL) && existsSync(INITRD)) return;
  execFileSync(join(REPO, 'scripts/build-guest-image.sh'), [GUEST_DIR], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 180_000 });
}

/**
 * dnsmasq (daemon mode, --no-ping) in a namespace on one interface; stopped by pid, at the latest
 * when the test file's process ends. `hosts`: fixed addresses by MAC (`--dhcp-host=<mac>,<ip>`).
 */
export function startDnsmasq(
  ns: string,
  iface: string,
  range: string,
  dir: string,
  hosts: Readonly<Record<string, string>> = {},
): { leases: string; stop: () => void } {
  mkdirSync(dir, { recursive: true, mode: 0o755 }); // dnsmasq drops to nobody
  const leases = join(dir, 'dnsmasq.leases');
  const pidFile = join(dir, 'dnsmasq.pid');
  // dnsmasq forks into the background and leaves its pid in the file: ended by that pid.
  const stop = atExit(() => {
    if (existsSync(pidFile)) killIfNamed(Number(readFileSync(pidFile, 'utf8').trim()), 'dnsmasq');
  });
  sh('ip', [
    'netns',
    'exec',
    ns,
    'dnsmasq',
    '--port=0',
    `--interface=${iface}`,
    '--bind-interfaces',
    `--dhcp-range=${range},255.255.255.0,1h`,
    '--dhcp-authoritative',
    '--no-ping',
    ...Object.entries(hosts).map(([mac, ip]) => `--dhcp-host=${mac},${ip}`),
    `--dhcp-leasefile=${leases}`,
    `--pid-file=${pidFile}`,
    '--log-dhcp',
    `--log-facility=${join(dir, 'dnsmasq.log')}`,
  ]);
  return { leases, stop };
}

/** Waits for `FLINTLOCK-GUEST <ifname> <mac> <ip/prefix>` on the console; returns the ip/prefix. */
export async function guestAddress(consoleLog: string, ifname: string, mac: string, deadlineMs = BOOT_DEADLINE_MS): Promise<string> {
  // The line must be complete (its newline written): a read that lands mid-line would see '192.'.
  const re = new RegExp(`^FLINTLOCK-GUEST ${ifname} ${mac.toLowerCase()} (\\S+)[ \\t\\r]*\\n`, 'm');
  const read = (): string => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  try {
    return await waitFor(
      `${ifname} ${mac} address on the guest console`,
      () => {
        const text = read();
        if (text.includes(`FLINTLOCK-GUEST-DHCP-FAILED ${ifname}`)) throw new Error(`guest: no DHCP lease on ${ifname}`);
        const found = re.exec(text)?.[1];
        if (found === undefined && text.includes('FLINTLOCK-GUEST-READY')) throw new Error(`guest ready without an address on ${ifname}`);
        return found;
      },
      deadlineMs,
      50,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; console:\n${read().split('\n').slice(-40).join('\n')}`, { cause: e });
  }
}

export function pingFrom(ns: string, ip: string): void {
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      sh('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', '2', ip]);
      return;
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`no ping reply from ${ip} in ${ns}: ${String(last)}`);
}

/**
 * Debian's docker-registry on 127.0.0.1:5000 inside a namespace, storing under dir; stopped by pid,
 * at the latest when the test file's process ends (also when it never answers).
 */
export async function startRegistry(ns: string, dir: string): Promise<{ address: string; stop: () => void }> {
  const config = join(dir, 'registry.yml');
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'registry')}\nhttp:\n  addr: 127.0.0.1:5000\n`,
  );
  // Debian's docker-registry, extracted (not installed) by scripts/fetch-registry.sh.
  const bin = sh(join(REPO, 'scripts/fetch-registry.sh'), []).trim().split('\n').at(-1) ?? 'docker-registry';
  const child: ChildProcess = spawnTracked('ip', ['netns', 'exec', ns, bin, 'serve', config], { stdio: 'ignore' });
  const stop = (): void => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
  };
  const address = '127.0.0.1:5000';
  try {
    await waitFor(
      'the registry to answer',
      () => {
        try {
          // Quietly: the registry refuses connections until it is up.
          execFileSync('ip', ['netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '/dev/null', `http://${address}/v2/`], { stdio: 'ignore' });
          return true;
        } catch {
          return false;
        }
      },
      15_000,
      100,
    );
  } catch (e) {
    stop();
    throw e;
  }
  return { address, stop };
}

/** Pushes the test guest (boot/vmlinuz, boot/initrd) as an OCI image from inside the namespace. */
export function pushGuest(ns: string, ref: string): string {
  return sh('ip', [
    'netns',
    'exec',
    ns,
    process.execPath,
    '--import',
    'tsx',
    join(REPO, 'scripts/oci-push.ts'),
    ref,
    `boot/vmlinuz=${KERNEL}`,
    `boot/initrd=${INITRD}`,
  ]).trim();
}

// ---------------------------------------------------------------------------------------------
// The sample Debian 12 image (scripts/build-debian-image.sh): real cloud-init, systemd-networkd.

export const DEBIAN_DIR = join(REPO, '.cache/debian12');
const DEBIAN_SCRIPT = join(REPO, 'scripts/build-debian-image.sh');

/** Builds the Debian image unless .cache/debian12 holds this script's build (minutes on a miss). */
export function ensureDebianImage(): void {
  execFileSync(DEBIAN_SCRIPT, [DEBIAN_DIR], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
}

/**
 * Pushes the Debian image from inside the namespace (the script's own --push): returns the kernel
 * image (boot/vmlinuz, boot/initrd) and the root filesystem image references.
 */
export function pushDebian(ns: string, prefix: string, tag: string): { kernel: string; root: string } {
  sh('ip', ['netns', 'exec', ns, DEBIAN_SCRIPT, '--push', `${prefix}:${tag}`, DEBIAN_DIR]);
  return { kernel: `${prefix}/debian12-kernel:${tag}`, root: `${prefix}/debian12-root:${tag}` };
}

/**
 * A benchmark's lab: a temp dir the VMMs may search (0755), a test network namespace, and the
 * registry once started. `remove` (once; later calls do nothing) stops the registry, deletes the
 * namespace with every device in it, and removes the dir. The caller registers it with atExit
 * after the daemon helper's own cleanups, so that a daemon still writing into the dir goes first.
 */
export interface BenchLab {
  readonly dir: string;
  readonly netns: TestNetns;
  startRegistry(): Promise<void>;
  remove(): void;
}

export function createBenchLab(prefix: string): BenchLab {
  const dir = makeTempDir(`${prefix}-`);
  chmodSync(dir, 0o755);
  const netns = createTestNetns(prefix);
  let registry: { stop: () => void } | undefined;
  let removed = false;
  return {
    dir,
    netns,
    startRegistry: async () => {
      registry = await startRegistry(netns.name, dir);
    },
    remove: () => {
      if (removed) return;
      removed = true;
      registry?.stop();
      netns.destroy();
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}
