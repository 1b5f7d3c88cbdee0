// Network namespaces for tests: each test makes its own, uniquely named, and deletes it (which
// also deletes every device inside). Nothing here touches the host's own namespace.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { atExit } from './processes.js';

export interface TestNetns {
  readonly name: string;
  /** `ip -n <ns> ...` */
  ip(...args: string[]): string;
  /** `ip -n <ns> -json -details link show` parsed. */
  links(): NetnsLink[];
  link(name: string): NetnsLink | undefined;
  destroy(): void;
}

export interface NetnsLink {
  readonly ifname: string;
  readonly ifindex: number;
  readonly address: string;
  readonly flags: string[];
  readonly master?: string;
  readonly ifalias?: string;
  readonly link?: string;
  readonly mtu: number;
  readonly txqlen?: number;
  readonly linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
}

/**
 * A namespace with `lo` up and, unless `bare`, a veth `eth0` (peer `eth0p`, both up) and a
 * bridge `br0` (up).
 */
export function createTestNetns(prefix = 'fltest', options: { bare?: boolean } = {}): TestNetns {
  const name = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  const ip = (...args: string[]): string => execFileSync('ip', ['-n', name, ...args], { encoding: 'utf8' });
  try {
    ip('link', 'set', 'lo', 'up');
    if (options.bare === true) return handle(name, ip);
    ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    ip('link', 'set', 'eth0', 'up');
    ip('link', 'set', 'eth0p', 'up');
    ip('link', 'add', 'br0', 'type', 'bridge');
    ip('link', 'set', 'br0', 'up');
  } catch (e) {
    execFileSync('ip', ['netns', 'del', name]);
    throw e;
  }
  return handle(name, ip);
}

function handle(name: string, ip: (...args: string[]) => string): TestNetns {
  const links = (): NetnsLink[] => JSON.parse(ip('-json', '-details', 'link', 'show')) as NetnsLink[];
  // Also when the test file's process ends without reaching its after() (a failed before(), a
  // timeout's SIGTERM, Ctrl-C): a namespace must not outlive the test that made it.
  const destroy = atExit(() => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  return { name, ip, links, link: (ifname) => links().find((l) => l.ifname === ifname), destroy };
}
