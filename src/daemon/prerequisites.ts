// The programs this daemon will run, checked once at start so a missing one stops the daemon with
// the program's name and its Debian package, instead of failing VMs later. Which programs depends
// on what is wired: the iproute2 network adapter runs `ip`, volumes are built with mkfs.ext4, the
// default provider needs its VMM and qemu-img when it opens qcow2 overlays. (The cidata disk is
// written in-process: no program for it.) Every VMM is started through the sandbox's
// launch chain (sh, perl, setpriv: ADR 0009): programs of
// Debian's priority-required packages, which host-dependencies.txt does not list, so their
// packages are named here.
import { missingProgramMessage, packageProviding } from '../adapters/host/dependencies.js';
import { findExecutable } from '../adapters/host/programs.js';
import type { NetworkService, ProviderRegistry, VmmProvider } from '../core/ports.js';

export interface ProgramNeed {
  readonly program: string;
  /** What it is for, as an operator reads it. */
  readonly for: string;
  /** Its Debian package when host-dependencies.txt does not list it (priority-required packages). */
  readonly package?: string;
}

export const VOLUME_PROGRAMS: readonly ProgramNeed[] = [{ program: 'mkfs.ext4', for: 'volumes from images' }];
/** The VMM launch chain (providers/sandbox.ts); all priority required on Debian, checked all the same. */
export const SANDBOX_PROGRAMS: readonly ProgramNeed[] = [
  { program: 'sh', for: 'putting VMMs in their cgroups', package: 'dash' },
  { program: 'perl', for: 'opening taps for VMMs', package: 'perl-base' },
  { program: 'setpriv', for: 'running VMMs as their own uids', package: 'util-linux' },
];

/** What `provider` needs besides its VMM binary (which its availability() checks). */
export function providerPrograms(provider: VmmProvider): ProgramNeed[] {
  const needs: ProgramNeed[] = [];
  if (provider.capabilities.has('qcow2-overlay')) needs.push({ program: 'qemu-img', for: `qcow2 volume overlays of ${provider.name} VMs` });
  return needs;
}

export interface PrerequisiteReport {
  /** Each makes the daemon refuse to start. */
  readonly errors: string[];
  /** Providers other than the default that can't run here (VMs naming them will fail). */
  readonly warnings: string[];
}

export function checkPrerequisites(
  providers: ProviderRegistry,
  common: readonly ProgramNeed[],
  find: (program: string) => string | undefined = findExecutable,
): PrerequisiteReport {
  const message = (n: ProgramNeed): string =>
    packageProviding(n.program) === undefined && n.package !== undefined
      ? `"${n.program}" not found (install the Debian package ${n.package})`
      : missingProgramMessage(n.program);
  const missing = (needs: readonly ProgramNeed[]): string[] =>
    needs.filter((n) => find(n.program) === undefined).map((n) => `${message(n)}, needed for ${n.for}`);
  const errors = missing(common);
  const warnings: string[] = [];
  for (const name of providers.names()) {
    const provider = providers.get(name);
    if (provider === undefined) continue;
    const availability = provider.availability();
    const problems = [...(availability.available ? [] : [availability.reason ?? 'not available']), ...missing(providerPrograms(provider))];
    if (problems.length === 0) continue;
    if (name === providers.defaultName()) errors.push(`the default microvm provider ${name} cannot run here: ${problems.join('; ')}`);
    else warnings.push(`microvm provider ${name} is not available: ${problems.join('; ')}`);
  }
  return { errors, warnings };
}

export class PrerequisiteError extends Error {
  constructor(errors: readonly string[]) {
    super(`missing prerequisites: ${errors.join('; ')}`);
    this.name = 'PrerequisiteError';
  }
}

/** One configured network mode and whether the host has its device, as it should be. */
export interface HostNetworkMode {
  readonly type: 'macvtap' | 'tap';
  readonly configKey: 'parent-iface' | 'bridge-name';
  readonly device: string;
  /** `missing`: may still appear (a bond or bridge made later); `wrong-kind`: a bridge-name that is no bridge. */
  readonly problem?: { readonly kind: 'missing' | 'wrong-kind'; readonly message: string };
}

/** The configured parent-iface and bridge-name (those set), as the host has them now. */
export async function hostNetworkModes(
  network: Pick<NetworkService, 'getLink'>,
  host: { readonly parentIface?: string; readonly bridgeName?: string },
): Promise<HostNetworkMode[]> {
  const modes: HostNetworkMode[] = [];
  if (host.parentIface !== undefined && host.parentIface !== '') {
    const parent = await network.getLink(host.parentIface);
    modes.push({
      type: 'macvtap',
      configKey: 'parent-iface',
      device: host.parentIface,
      ...(parent === undefined
        ? { problem: { kind: 'missing', message: `parent-iface "${host.parentIface}" does not exist (yet): macvtap VMs will fail until it does` } }
        : {}),
    });
  }
  if (host.bridgeName !== undefined && host.bridgeName !== '') {
    const bridge = await network.getLink(host.bridgeName);
    let problem: HostNetworkMode['problem'];
    if (bridge === undefined) problem = { kind: 'missing', message: `bridge-name "${host.bridgeName}" does not exist (yet): tap VMs will fail until it does` };
    else if (bridge.kind !== 'bridge')
      problem = {
        kind: 'wrong-kind',
        message: `bridge-name "${host.bridgeName}" is a ${bridge.kind === '' ? 'plain' : bridge.kind} device, not a bridge: name a bridge (ip link add NAME type bridge)`,
      };
    modes.push({ type: 'tap', configKey: 'bridge-name', device: host.bridgeName, ...(problem !== undefined ? { problem } : {}) });
  }
  return modes;
}

/**
 * The configured parent-iface and bridge-name, as the host has them. A bridge-name that names a
 * device which is not a bridge is a mistake no VM can survive: refused. A missing one may still
 * appear (a bond or bridge made after the daemon starts): a warning, and VMs needing it fail with
 * its name until it does.
 */
export async function checkHostNetwork(
  network: Pick<NetworkService, 'getLink'>,
  host: { readonly parentIface?: string; readonly bridgeName?: string },
): Promise<PrerequisiteReport> {
  const problems = (await hostNetworkModes(network, host)).flatMap((m) => (m.problem !== undefined ? [m.problem] : []));
  return {
    errors: problems.filter((p) => p.kind === 'wrong-kind').map((p) => p.message),
    warnings: problems.filter((p) => p.kind === 'missing').map((p) => p.message),
  };
}
