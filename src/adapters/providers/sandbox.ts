// How a VMM is started confined (ADR 0009): a chain of small programs, each exec-ing the next, so
// the pid (and the start time the ProcessTable identifies it by) is the VMM's from the first:
//
//   sh -c <join>  <cgroup.procs...> --   writes its own pid into the VM's cgroup(s): the VMM is
//                                        inside its limits before it runs (no window after spawn)
//   [ip netns exec <ns>]                 tests only: the taps' namespace (after the join: it
//                                        remounts /sys, hiding the cgroup hierarchies)
//   perl -e <fds> <n> <fd>=<tap>... --   closes every fd but stdio and the n the daemon handed over
//                                        (Node marks its own close-on-exec, not ones the daemon
//                                        inherited), then opens each tap on /dev/net/tun (TUNSETIFF)
//                                        as root and leaves it at its fd: the VMM needs no /dev/net/tun
//   setpriv --reuid --regid ...  --      the VM's uid/gid, no supplementary groups but /dev/kvm's,
//                                        no new privileges, no inheritable capabilities
//   <vmm> <args>
//
// Every stage is priority-required on Debian (dash, iproute2 is the daemon's anyway, perl-base,
// util-linux). Pure: the providers run what this returns through the ProcessTable.
import { statSync } from 'node:fs';

import type { LaunchNic, VmmIdentity } from '../../core/ports.js';

/** The first fd a child gets from SpawnOptions.extraFds. */
export const FIRST_EXTRA_FD = 3;

/**
 * Writes `$$` (which exec keeps) to each file up to `--`, then execs the rest. A failed write
 * ends it with status 125 before the VMM ever runs.
 */
export const CGROUP_JOIN_SCRIPT = 'while [ "$#" -gt 0 ] && [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

/**
 * Closes every fd above 2 + <n> (the first argument), opens each tap named `<fd>=<name>` up to
 * `--` and puts it at that fd, then execs the rest. TUNSETIFF on a name that doesn't exist would
 * create a new tap, so the name must already be a tun device (its sysfs tun_flags).
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR = 0x5002, as QEMU and Cloud Hypervisor open taps; TUNSETIFF =
 * 0x400454ca (struct ifreq: 16-byte name, flags, 40 bytes). `$^F` high: no fd perl opens gets
 * close-on-exec, and the handles are kept until the exec. Builtins only on the usual path
 * (nothing stray to close, each tap opened at the lowest free fd, which is its target): loading
 * POSIX costs 10-17 ms of CPU per VMM start (bench/control-plane.ts), so it is required only when
 * needed.
 */
export const FD_STAGE_SCRIPT = [
  'BEGIN { $^F = 1 << 20 } use strict;',
  'my $n = shift(@ARGV); $n =~ /^\\d+$/ or die "flintlock-vmm-fds: bad fd count\\n";',
  'opendir(my $dh, "/proc/self/fd") or die "flintlock-vmm-fds: /proc/self/fd: $!\\n";',
  'my @stray = grep { /^\\d+$/ && $_ > 2 + $n && $_ != fileno($dh) } readdir($dh);',
  'closedir($dh); if (@stray) { require POSIX; POSIX::close($_) for @stray }',
  'my @keep;',
  'while (@ARGV && $ARGV[0] ne "--") {',
  '  my ($fd, $name) = shift(@ARGV) =~ /^(\\d+)=([^\\/]{1,15})$/ or die "flintlock-vmm-fds: bad tap argument\\n";',
  '  -e "/sys/class/net/$name/tun_flags" or die "flintlock-vmm-fds: $name is not a tap device here\\n";',
  '  open(my $tun, "+<", "/dev/net/tun") or die "flintlock-vmm-fds: /dev/net/tun: $!\\n";',
  '  ioctl($tun, 0x400454ca, pack("a16 s x22", $name, 0x5002)) or die "flintlock-vmm-fds: TUNSETIFF $name: $!\\n";',
  '  if (fileno($tun) == $fd) { push @keep, $tun } else { require POSIX; defined(POSIX::dup2(fileno($tun), $fd)) or die "flintlock-vmm-fds: dup2: $!\\n"; close $tun }',
  '}',
  'shift @ARGV; exec { $ARGV[0] } @ARGV or die "flintlock-vmm-fds: exec $ARGV[0]: $!\\n";',
].join('\n');

export interface TapFd {
  readonly name: string;
  readonly fd: number;
}

export interface SandboxedCommand {
  readonly bin: string;
  readonly args: string[];
}

export interface SandboxCommandInput {
  readonly bin: string;
  readonly args: readonly string[];
  /** cgroup.procs files to join first; empty: no cgroup stage. */
  readonly cgroupProcs: readonly string[];
  /** Run inside this network namespace (tests: QemuProvider's `netns`). */
  readonly netns?: string;
  /** Taps to open for the VMM. */
  readonly taps?: readonly TapFd[];
  /** How many fds the daemon hands over (SpawnOptions.extraFds): 3 .. 2 + n stay open, the rest is closed. */
  readonly handedFds?: number;
  /** Drop to this uid/gid; absent: keep the daemon's (or the jailer drops them itself). */
  readonly identity?: VmmIdentity;
  /** Supplementary groups to keep after the drop (the group of /dev/kvm). */
  readonly groups?: readonly number[];
}

/** The command that runs `bin args` confined as described above (pure). */
export function sandboxedCommand(input: SandboxCommandInput): SandboxedCommand {
  let argv = [input.bin, ...input.args];
  if (input.identity !== undefined) {
    const groups = input.groups ?? [];
    argv = [
      'setpriv',
      `--reuid=${input.identity.uid}`,
      `--regid=${input.identity.gid}`,
      groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups',
      // Nothing the VMM execs can gain privileges (setuid binaries, file capabilities).
      '--no-new-privs',
      '--inh-caps=-all',
      '--',
      ...argv,
    ];
  }
  const taps = input.taps ?? [];
  // With the VMM's own uid or taps to open (not for the jailer, which closes fds itself).
  if (input.identity !== undefined || taps.length > 0) {
    argv = ['perl', '-e', FD_STAGE_SCRIPT, String(input.handedFds ?? 0), ...taps.map((t) => `${t.fd}=${t.name}`), '--', ...argv];
  }
  if (input.netns !== undefined) argv = ['ip', 'netns', 'exec', input.netns, ...argv];
  if (input.cgroupProcs.length > 0) argv = ['sh', '-c', CGROUP_JOIN_SCRIPT, 'flintlock-cgroup-join', ...input.cgroupProcs, '--', ...argv];
  const [bin, ...args] = argv as [string, ...string[]];
  return { bin, args };
}

/**
 * Where each NIC's fd is in the VMM: macvtaps first (the daemon opens their tap nodes and passes
 * them as extraFds: fd 3, 4, ...), then taps (opened by the tap stage at the next fds), each in
 * NIC order. `fds[i]` is NIC i's fd.
 */
export function nicFdPlan(nics: readonly LaunchNic[]): { readonly fds: number[]; readonly macvtapNodes: string[]; readonly taps: TapFd[] } {
  const macvtaps = nics.filter((n) => n.type === 'macvtap');
  const macvtapNodes = macvtaps.map((n) => {
    if (n.tapNode === undefined) throw new Error(`macvtap interface ${n.deviceId} has no tap device node`);
    return n.tapNode;
  });
  let nextMacvtap = FIRST_EXTRA_FD;
  let nextTap = FIRST_EXTRA_FD + macvtaps.length;
  const taps: TapFd[] = [];
  const fds = nics.map((n) => {
    if (n.type === 'macvtap') return nextMacvtap++;
    const fd = nextTap++;
    taps.push({ name: n.hostDevice, fd });
    return fd;
  });
  return { fds, macvtapNodes, taps };
}

/**
 * The supplementary group a VMM needs for /dev/kvm after dropping to its own uid: none when
 * everyone may open it, its group when the group may (Debian: root:kvm 0660), else undefined
 * with `usable: false` (root:root 0600: only root could, so a sandboxed VMM can't use KVM).
 */
export function kvmGroupFor(stat: { readonly mode: number; readonly gid: number } | undefined): { readonly usable: boolean; readonly groups: number[] } {
  if (stat === undefined) return { usable: false, groups: [] };
  if ((stat.mode & 0o006) === 0o006) return { usable: true, groups: [] };
  if ((stat.mode & 0o060) === 0o060 && stat.gid !== 0) return { usable: true, groups: [stat.gid] };
  return { usable: false, groups: [] };
}

/** Why a sandboxed VMM can't use KVM here. */
export const KVM_ROOT_ONLY = (vmm: string): string =>
  `/dev/kvm is open to root only, and ${vmm} runs as the VM's own uid (give /dev/kvm a group, e.g. kvm with mode 0660)`;

export function kvmDeviceStat(path = '/dev/kvm'): { mode: number; gid: number } | undefined {
  try {
    const st = statSync(path);
    return { mode: st.mode, gid: st.gid };
  } catch {
    return undefined;
  }
}
