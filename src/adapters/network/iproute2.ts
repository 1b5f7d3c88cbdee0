// NetworkService on top of iproute2's `ip` command.
//
// Why `ip` and not raw netlink: Node has no netlink sockets without a native addon, and `ip` is on
// every host that can run microVMs. Each `ip` process costs ~5-12 ms to start while the kernel
// work is ~0.4 ms (deletes excepted: ~17 ms of RCU wait), so `ip` is not started per call: three
// long-lived `ip -batch -` processes (ip-batch-session.ts) take requests, one for reads (`-force`,
// a missing device is an answer), one for changes (stops at the first failed line, so nothing
// runs after a failed create), one for deletes (so their RCU wait never holds up a create). An
// `ensure*` call is a read request and, when something must change, one change request (its
// commands, then a show of the result). Rare paths (names or aliases `ip -batch` cannot quote,
// listing every link, neighbours, sysfs in a test namespace) still run one `ip` each.
//
// ip's name cache decides who reads a deleted name. Each process remembers the ifindex of every
// link it printed; a name deleted by another process is then still found under its old ifindex,
// and a show of it fails with ENODEV, after which ip exits (a new reader costs a fork of this
// whole daemon, ~10-60 ms of CPU on the event loop). A process that deletes a link itself drops
// it from its cache. So the deleter is a `-force` process too, and a name it deleted is read by
// the deleter, not the reader, until the reader is next replaced: the delete plan's re-check,
// and a VM that makes the same device again, never meet the reader's stale entry.
import { readFile } from 'node:fs/promises';

import type { CharDeviceNumbers, LinkInfo, MacvtapRequest, NetworkService, TapRequest } from '../../core/ports.js';
import { MAX_IFNAME_BYTES } from '../../core/names.js';
import { execFileOffThread } from '../host/off-thread-exec.js';
import { IpBatchFailure, IpBatchSession, SENTINEL_NAME } from './ip-batch-session.js';

export interface Iproute2Options {
  /** The `ip` executable (default `ip`, looked up in PATH). */
  readonly ipBinary?: string;
  /**
   * Work inside this named network namespace (`ip -n <netns>`; sysfs through `ip netns exec`).
   * For tests and benchmarks: the daemon manages its own namespace and leaves this unset.
   */
  readonly netns?: string;
  /** Kill an `ip` process that runs longer than this (default 30 s): a wedged RTNL must not hang a reconcile forever. */
  readonly timeoutMs?: number;
  /** Long-lived `ip -batch` processes (default true); false: one `ip` process per call (the way before issue 11, for comparison). */
  readonly batchProcesses?: boolean;
}

/** An `ip` invocation that failed. `step` is the index of the failing command within a batch. */
export class IpCommandError extends Error {
  override readonly name = 'IpCommandError';
  constructor(
    message: string,
    readonly command: readonly string[],
    readonly stderr: string,
    readonly exitCode: number | string | undefined,
    readonly step: number | undefined,
    /** What ip printed before failing (a batch prints the output of the commands that ran). */
    readonly stdout: string,
  ) {
    super(message);
  }
}

// IFALIASZ is 256 including the NUL.
const MAX_ALIAS_BYTES = 255;
const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;
// `ip -batch` splits lines on these and has no escape character; see batchLine().
const BATCH_BARE_WORD = /^[^\s"'#\\]+$/;

/** A link as read from `ip -json -details`, plus what LinkInfo has no field for. */
interface ParsedLink {
  readonly info: LinkInfo;
  /** For kind `tun`: `tap` or `tun` (linkinfo.info_data.type). */
  readonly tunType?: string;
}

type Command = readonly string[];

export class Iproute2NetworkService implements NetworkService {
  private readonly ipBinary: string;
  private readonly netns: string | undefined;
  private readonly timeoutMs: number;
  private readonly sessions: { readonly read: IpBatchSession; readonly change: IpBatchSession; readonly remove: IpBatchSession } | undefined;
  /** Names the deleter deleted since the reader's process started: the reader may have them cached (see above). */
  private deletedByRemover = new Set<string>();
  private readerGeneration = -1;

  constructor(options: Iproute2Options = {}) {
    this.ipBinary = options.ipBinary ?? 'ip';
    this.netns = options.netns;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    if (this.netns !== undefined && !/^[^\s/]+$/.test(this.netns)) {
      throw new Error(`invalid network namespace name "${this.netns}"`);
    }
    if (options.batchProcesses !== false) {
      const session = (args: string[], force: boolean): IpBatchSession =>
        new IpBatchSession({ bin: this.ipBinary, args: [...this.netnsArgs(), ...args], force, timeoutMs: this.timeoutMs });
      this.sessions = {
        read: session(['-json', '-details'], true),
        change: session(['-json', '-details'], false),
        remove: session(['-json', '-details'], true),
      };
    }
  }

  /** Ends the long-lived `ip` processes (they also end with this process: their stdin closes). */
  close(): void {
    for (const s of Object.values(this.sessions ?? {})) s.close();
  }

  private netnsArgs(): string[] {
    return this.netns === undefined ? [] : ['-n', this.netns];
  }

  ensureMacvtap(req: MacvtapRequest): Promise<LinkInfo> {
    return this.retryingStaleCache(() => this.ensureMacvtapOnce(req));
  }

  ensureTap(req: TapRequest): Promise<LinkInfo> {
    return this.retryingStaleCache(() => this.ensureTapOnce(req));
  }

  /**
   * ENODEV from a change: the change process looked a name up in its cache and found a device
   * deleted since (made again elsewhere). That process has exited (a failed line ends it), and a
   * create it had half done was removed (afterFailedCreate): one more attempt, on fresh
   * processes, sees the kernel as it is.
   */
  private async retryingStaleCache(ensure: () => Promise<LinkInfo>): Promise<LinkInfo> {
    try {
      return await ensure();
    } catch (err) {
      if (this.sessions === undefined || !(err instanceof IpCommandError) || !/No such device/.test(err.stderr)) throw err;
      this.sessions.read.restart();
      this.sessions.change.restart();
      return ensure();
    }
  }

  private async ensureMacvtapOnce(req: MacvtapRequest): Promise<LinkInfo> {
    validateIfName(req.name, 'macvtap device name');
    validateIfName(req.parent, 'parent network device name');
    validateAlias(req.alias);
    const mac = req.mac === undefined ? undefined : normalizeMac(req.mac);

    // One process answers both "does the parent exist" and "does the device exist".
    const links = await this.readLinks([req.parent, req.name]);
    const parent = links.get(req.parent);
    if (parent === undefined) throw missingParent(req.parent);

    let current = links.get(req.name);
    if (current === undefined) {
      const add: string[] = ['link', 'add', 'link', req.parent, 'name', req.name];
      if (mac !== undefined) add.push('address', mac);
      // MTU and txqueuelen copied from the parent (COMPAT §3); the kernel would otherwise pick its
      // own txqueuelen. `up` is honoured at creation; `alias` is not (the kernel only applies
      // IFLA_IFALIAS on an existing link), hence the second command.
      add.push('mtu', String(parent.info.mtu), 'txqueuelen', String(parent.info.txqlen), 'up');
      add.push('type', 'macvtap', 'mode', 'bridge');
      try {
        return await this.applyAndShow([add, ['link', 'set', 'dev', req.name, 'alias', req.alias]], req.name);
      } catch (err) {
        current = await this.afterFailedCreate(err, req.name, req.parent, () => missingParent(req.parent));
      }
    }

    const { info } = current;
    if (info.kind !== 'macvtap' || info.parent !== req.parent) {
      const what = info.kind === 'macvtap' ? `a macvtap on "${info.parent ?? '?'}"` : `a ${describeKind(info.kind)} device`;
      throw new Error(`network device "${req.name}" already exists and is ${what}, not a macvtap on "${req.parent}"; refusing to reuse it`);
    }
    const set: string[] = [];
    if (info.alias !== req.alias) set.push('alias', req.alias);
    if (mac !== undefined && info.mac !== mac) set.push('address', mac);
    if (!info.up) set.push('up');
    // Link-type arguments must come last on an `ip link set` line.
    if (info.macvtapMode !== 'bridge') set.push('type', 'macvtap', 'mode', 'bridge');
    if (set.length === 0) return info;
    return this.applyAndShow([['link', 'set', 'dev', req.name, ...set]], req.name);
  }

  private async ensureTapOnce(req: TapRequest): Promise<LinkInfo> {
    validateIfName(req.name, 'tap device name');
    if (req.bridge !== undefined) validateIfName(req.bridge, 'bridge name');
    validateAlias(req.alias);
    if (req.owner !== undefined && (!Number.isSafeInteger(req.owner) || req.owner < 0)) throw new Error(`invalid tap owner uid ${req.owner}`);

    const links = await this.readLinks(req.bridge !== undefined ? [req.bridge, req.name] : [req.name]);
    if (req.bridge !== undefined) {
      const bridge = links.get(req.bridge);
      if (bridge === undefined) throw missingBridge(req.bridge);
      if (bridge.info.kind !== 'bridge') {
        throw new Error(`network device "${req.bridge}" is a ${describeKind(bridge.info.kind)} device, not a bridge`);
      }
    }
    // A standalone tap (no bridge: Firecracker's metadata NIC) is just left without a master.
    const attach = req.bridge !== undefined ? ['master', req.bridge] : [];

    let current = links.get(req.name);
    if (current === undefined) {
      try {
        return await this.applyAndShow(
          [
            // Persistent, so the tap outlives this process and the VMM opens it by name. Owned
            // by the VM's uid: an ownerless tap may be attached by anyone who can open
            // /dev/net/tun. (An existing tap keeps its owner: changing it means re-creating it.)
            ['tuntap', 'add', 'dev', req.name, 'mode', 'tap', ...(req.owner !== undefined ? ['user', String(req.owner)] : [])],
            ['link', 'set', 'dev', req.name, ...attach, 'alias', req.alias, 'up'],
          ],
          req.name,
        );
      } catch (err) {
        const bridgeName = req.bridge;
        current = await this.afterFailedCreate(err, req.name, bridgeName ?? req.name, () =>
          bridgeName !== undefined ? missingBridge(bridgeName) : asError(err),
        );
      }
    }

    const { info } = current;
    if (info.kind !== 'tun' || (current.tunType !== undefined && current.tunType !== 'tap')) {
      const what = info.kind === 'tun' ? `a ${current.tunType ?? 'tun'}-mode tun device` : `a ${describeKind(info.kind)} device`;
      throw new Error(`network device "${req.name}" already exists and is ${what}, not a tap; refusing to reuse it`);
    }
    const set: string[] = [];
    if (info.master !== req.bridge) set.push(...(req.bridge !== undefined ? ['master', req.bridge] : ['nomaster']));
    if (info.alias !== req.alias) set.push('alias', req.alias);
    if (!info.up) set.push('up');
    if (set.length === 0) return info;
    return this.applyAndShow([['link', 'set', 'dev', req.name, ...set]], req.name);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    validateIfName(name, 'network device name');
    if (this.sessions !== undefined && batchLine(['link', 'show', 'dev', name]) !== undefined) return (await this.readLinks([name])).get(name)?.info;
    return (await this.getParsed(name))?.info;
  }

  async listLinks(): Promise<LinkInfo[]> {
    return parseLinks(await this.run(['-json', '-details', 'link', 'show'])).map((l) => l.info);
  }

  async neighbours(): Promise<Array<{ ip: string; mac: string }>> {
    const parsed: unknown = JSON.parse((await this.run(['-json', 'neigh', 'show'])) || '[]');
    if (!Array.isArray(parsed)) return [];
    return parsed.flatMap((entry: unknown) => {
      const { dst, lladdr, state } = (entry ?? {}) as { dst?: unknown; lladdr?: unknown; state?: unknown };
      // FAILED/INCOMPLETE entries name an address nobody answered for.
      const dead = Array.isArray(state) && state.some((s) => s === 'FAILED' || s === 'INCOMPLETE');
      return typeof dst === 'string' && typeof lladdr === 'string' && !dead ? [{ ip: dst, mac: lladdr.toLowerCase() }] : [];
    });
  }

  async deleteLink(name: string): Promise<void> {
    validateIfName(name, 'network device name');
    const del = ['link', 'del', 'dev', name];
    const sessions = this.sessions;
    if (sessions === undefined || batchLine(del) === undefined) {
      try {
        await this.run(del);
      } catch (err) {
        // ip's wording for a missing device on `link del`; anything else is a real failure.
        if (err instanceof IpCommandError && err.stderr.includes(`Cannot find device "${name}"`)) return;
        throw err;
      }
      return;
    }
    // Before and after: a reader started meanwhile may have read the device before it went.
    this.rememberDeleted(name);
    for (let attempt = 0; ; attempt++) {
      const { stderr } = await this.request(sessions.remove, [del]).finally(() => this.rememberDeleted(name));
      const complaints = stderr.split('\n').filter((l) => l.trim() !== '' && !/^Command failed -:\d+$/.test(l) && !l.includes(`"${SENTINEL_NAME}"`));
      // Gone already: what a retried delete (or a delete plan after a crash) meets.
      if (complaints.every((l) => l.includes(`Cannot find device "${name}"`))) return;
      // ENODEV: the deleter had the name cached (it read the device when it existed) and the
      // device was deleted elsewhere since; one with the same name may exist now. Once more, on
      // a fresh process.
      if (attempt === 0 && complaints.some((l) => /No such device/.test(l))) {
        sessions.remove.restart();
        continue;
      }
      const argv = [this.ipBinary, ...sessions.remove.argv.filter((a) => a !== '-batch' && a !== '-' && a !== '-force'), ...del];
      throw new IpCommandError(`${argv.map(quoteForMessage).join(' ')}: ${complaints.join('; ')}`, argv, stderr, undefined, 0, '');
    }
  }

  /** A name the deleter deleted: reads of it go to the deleter until the reader's process is replaced. */
  private rememberDeleted(name: string): void {
    const read = this.sessions?.read;
    if (read === undefined) return;
    this.syncReaderGeneration(read);
    // Bounded: a reader that outlived very many deletes is replaced (its cache goes with it).
    if (this.deletedByRemover.size >= 10_000) read.restart();
    this.deletedByRemover.add(name);
  }

  private syncReaderGeneration(read: IpBatchSession): void {
    if (read.generation === this.readerGeneration) return;
    this.readerGeneration = read.generation;
    this.deletedByRemover.clear();
  }

  async macvtapDeviceNumbers(name: string): Promise<CharDeviceNumbers> {
    validateIfName(name, 'macvtap device name');
    const ifindexText = await this.readSysfs(`/sys/class/net/${name}/ifindex`);
    if (ifindexText === undefined) throw new Error(`network device "${name}" does not exist`);
    const ifindex = ifindexText.trim();
    if (!/^\d+$/.test(ifindex)) throw new Error(`unexpected ifindex "${ifindex}" for network device "${name}"`);
    // /dev/tap<ifindex> is not trusted: ifindexes repeat across namespaces (COMPAT §3).
    const devPath = `/sys/class/net/${name}/macvtap/tap${ifindex}/dev`;
    const devText = await this.readSysfs(devPath);
    if (devText === undefined) throw new Error(`network device "${name}" is not a macvtap (no ${devPath})`);
    const m = /^(\d+):(\d+)$/.exec(devText.trim());
    if (m === null) throw new Error(`unexpected contents "${devText.trim()}" in ${devPath}`);
    return { major: Number(m[1]), minor: Number(m[2]) };
  }

  // -------------------------------------------------------------------------------------------

  /**
   * The named links that exist, read in one `ip -force -batch` process (one `link show dev` per
   * name; -force keeps going past the missing ones). Targeted reads keep an ensure O(1) on hosts
   * with hundreds of links, where a full dump would be parsed on every call.
   */
  private async readLinks(names: readonly string[]): Promise<Map<string, ParsedLink>> {
    const commands = names.map((n) => ['link', 'show', 'dev', n]);
    const lines = commands.map(batchLine);
    if (!lines.every((l): l is string => l !== undefined)) {
      // A name the batch syntax cannot carry (the kernel allows '#' and quotes): one process each.
      const found = await Promise.all(names.map((n) => this.getParsed(n)));
      return new Map(found.filter((l): l is ParsedLink => l !== undefined).map((l) => [l.info.name, l]));
    }
    if (this.sessions !== undefined) {
      this.syncReaderGeneration(this.sessions.read);
      // The reader may hold a stale ifindex for a name the deleter deleted; the deleter does not.
      const read = names.some((n) => this.deletedByRemover.has(n)) ? this.sessions.remove : this.sessions.read;
      const ask = (): Promise<{ lines: readonly string[]; stderr: string }> => this.request(read, commands);
      // ENODEV for a name (ip may also exit on it): ip's cache holds the ifindex of a device
      // deleted since. Nearly always it is simply gone (device names are random per VM, and a
      // delete plan reads its devices again after removing them), so one process per name, off
      // the event loop, answers from the kernel alone; the long-lived processes are replaced only
      // when one of those names exists again (made again, under a new ifindex). Replacing them on
      // every ENODEV started ~500 processes in 30 s on the event loop under bench/load.ts.
      const stale = (stderr: string): boolean => /No such device/.test(stderr);
      const answer = await ask().catch((err: unknown) => {
        if (err instanceof IpCommandError && stale(err.stderr)) return undefined;
        throw err;
      });
      if (answer === undefined || stale(answer.stderr)) {
        const fresh = (await Promise.all(names.map((n) => this.getParsed(n)))).filter((l): l is ParsedLink => l !== undefined);
        const seen = new Set(answer === undefined ? [] : parseLinks(answer.lines.join('\n')).map((l) => l.info.name));
        if (fresh.some((l) => !seen.has(l.info.name))) {
          read.restart();
          this.sessions.change.restart(); // it may hold the same stale entry
        }
        return new Map(fresh.map((l) => [l.info.name, l]));
      }
      // The session's end marker fails as a missing device too; anything else is a real failure.
      if (answer.stderr.trim() !== '' && !onlyMissingDevices(answer.stderr)) {
        throw new IpCommandError(
          `${[this.ipBinary, ...this.sessions.read.argv].map(quoteForMessage).join(' ')} (${commands.map((c) => c.join(' ')).join('; ')}): ${answer.stderr.trim()}`,
          [this.ipBinary, ...this.sessions.read.argv],
          answer.stderr,
          undefined,
          undefined,
          answer.lines.join('\n'),
        );
      }
      return new Map(parseLinks(answer.lines.join('\n')).map((l) => [l.info.name, l]));
    }
    let stdout: string;
    try {
      stdout = await this.run(['-json', '-details', '-force', '-batch', '-'], {
        input: lines.join('\n') + '\n',
        commands,
      });
    } catch (err) {
      // Exit status 1 with only "does not exist" complaints means some links are absent: the
      // output of the others is still complete. Anything else (no netns, no ip) is a failure.
      if (!(err instanceof IpCommandError) || err.exitCode !== 1 || !onlyMissingDevices(err.stderr)) throw err;
      stdout = err.stdout;
    }
    return new Map(parseLinks(stdout).map((l) => [l.info.name, l]));
  }

  private async getParsed(name: string): Promise<ParsedLink | undefined> {
    try {
      return singleLink(await this.run(['-json', '-details', 'link', 'show', 'dev', name]), name);
    } catch (err) {
      if (err instanceof IpCommandError && err.stderr.includes(`Device "${name}" does not exist`)) return undefined;
      throw err;
    }
  }

  /**
   * The create batch failed; decide from what exists now.
   * - The create command itself failed because the device exists: another caller created it
   *   concurrently. Hand it back so the caller validates and corrects it.
   * - A later step failed (or ip died without saying which line, as it does when a name in the
   *   arguments does not resolve): our create succeeded, so remove the half-configured device
   *   (it may lack the alias start-up orphan scans rely on) and let a retry start clean.
   * A parent/bridge that vanished meanwhile is reported with the usual message.
   */
  private async afterFailedCreate(err: unknown, name: string, anchor: string, anchorMissing: () => Error): Promise<ParsedLink> {
    if (!(err instanceof IpCommandError)) throw err;
    const links = await this.readLinks([anchor, name]);
    const now = links.get(name);
    if (now !== undefined && err.step === 0 && /File exists|Device or resource busy/.test(err.stderr)) return now;
    if (now !== undefined && err.step !== 0) await this.deleteLink(name).catch(() => undefined);
    if (!links.has(anchor)) throw anchorMissing();
    throw err;
  }

  /** Runs the commands, then `link show dev <name>`, in one `ip` process when possible. */
  private async applyAndShow(commands: readonly Command[], name: string): Promise<LinkInfo> {
    const all = [...commands, ['link', 'show', 'dev', name]];
    const lines = all.map(batchLine);
    if (lines.every((l): l is string => l !== undefined) && this.sessions !== undefined) {
      return singleLink((await this.request(this.sessions.change, all)).lines.join('\n'), name).info;
    }
    if (lines.every((l): l is string => l !== undefined)) {
      const stdout = await this.run(['-json', '-details', '-batch', '-'], {
        input: lines.join('\n') + '\n',
        commands: all,
      });
      return singleLink(stdout, name).info;
    }
    // An argument `ip -batch` cannot quote (an alias with '#' or both quote kinds): one process each.
    for (const [step, command] of commands.entries()) {
      try {
        await this.run(command);
      } catch (err) {
        // Report the position in the sequence, as a batch would, for afterFailedCreate().
        if (err instanceof IpCommandError) {
          throw new IpCommandError(err.message, err.command, err.stderr, err.exitCode, step, err.stdout);
        }
        throw err;
      }
    }
    return singleLink(await this.run(['-json', '-details', 'link', 'show', 'dev', name]), name).info;
  }

  /** One request to a long-lived `ip -batch` process; failures as IpCommandError, like run()'s. */
  private async request(session: IpBatchSession, commands: readonly Command[]): Promise<{ lines: readonly string[]; stderr: string }> {
    const lines = commands.map((c) => batchLine(c) ?? '');
    try {
      return await session.request(lines);
    } catch (err) {
      if (!(err instanceof IpBatchFailure)) throw err;
      const argv = [this.ipBinary, ...session.argv];
      // The failing command (or the only one) reads as if run alone; when ip exited without
      // naming its line (an argument it could not resolve), the whole request is shown.
      const failed = err.step !== undefined ? commands[err.step] : commands.length === 1 ? commands[0] : undefined;
      const alone = session.argv.filter((a) => a !== '-batch' && a !== '-' && a !== '-force');
      const shown =
        failed !== undefined
          ? [this.ipBinary, ...alone, ...failed].map(quoteForMessage).join(' ')
          : `${argv.map(quoteForMessage).join(' ')} (batch: ${commands.map((c) => c.map(quoteForMessage).join(' ')).join('; ')})`;
      throw new IpCommandError(`${shown}: ${err.message}`, argv, err.stderr, err.exitCode, err.step, err.stdout);
    }
  }

  private async run(args: readonly string[], batch?: { input: string; commands: readonly Command[] }): Promise<string> {
    const argv = this.netns === undefined ? [...args] : ['-n', this.netns, ...args];
    try {
      // From a worker thread: the spawn itself must not stall the API (../host/off-thread-exec.ts).
      const { stdout } = await execFileOffThread(this.ipBinary, argv, {
        ...(batch !== undefined ? { input: batch.input } : {}),
        maxBuffer: 64 * 1024 * 1024,
        timeoutMs: this.timeoutMs,
        killSignal: 'SIGKILL',
      });
      return stdout;
    } catch (err) {
      throw this.commandError(argv, err, batch?.commands);
    }
  }

  private commandError(argv: readonly string[], err: unknown, batch: readonly Command[] | undefined): IpCommandError {
    const stderr = readStringProp(err, 'stderr').trim();
    const exitCode = readCodeProp(err);
    let shown = [this.ipBinary, ...argv].map(quoteForMessage).join(' ');
    let step: number | undefined;
    let text = stderr;
    if (batch !== undefined) {
      // `ip -batch -` reports "Command failed -:<line>"; name the command itself instead.
      const m = /Command failed -:(\d+)/.exec(stderr);
      const failed = m === null ? undefined : batch[Number(m[1]) - 1];
      if (failed !== undefined) {
        step = Number(m?.[1]) - 1;
        shown += ` (${failed.map(quoteForMessage).join(' ')})`;
        text = stderr.replace(/\s*Command failed -:\d+\s*$/, '').trim();
      } else {
        // ip exited without naming the line (argument errors exit at once): show the whole batch.
        shown += ` (batch: ${batch.map((c) => c.map(quoteForMessage).join(' ')).join('; ')})`;
      }
    } else {
      step = 0;
    }
    if (text === '') {
      const signal = readStringProp(err, 'signal');
      text = signal !== '' ? `killed by ${signal}` : err instanceof Error ? err.message : String(err);
    }
    const stdout = readStringProp(err, 'stdout');
    return new IpCommandError(`${shown}: ${text}`, [this.ipBinary, ...argv], stderr, exitCode, step, stdout);
  }

  /** File contents, or undefined when it does not exist. */
  private async readSysfs(path: string): Promise<string | undefined> {
    if (this.netns === undefined) {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        if (readStringProp(err, 'code') === 'ENOENT') return undefined;
        throw err;
      }
    }
    // /sys shows the namespace of whoever mounted it; `ip netns exec` remounts it for the target.
    try {
      return await this.runRaw(['netns', 'exec', this.netns, 'cat', path]);
    } catch (err) {
      if (err instanceof IpCommandError && err.stderr.includes('No such file or directory')) return undefined;
      throw err;
    }
  }

  /** `ip` without the `-n` prefix (for `ip netns exec`). */
  private async runRaw(argv: readonly string[]): Promise<string> {
    try {
      return (await execFileOffThread(this.ipBinary, argv, { timeoutMs: this.timeoutMs, killSignal: 'SIGKILL' })).stdout;
    } catch (err) {
      throw this.commandError(argv, err, undefined);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

function validateIfName(name: string, what: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  // The kernel's dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or whitespace.
  // Control characters are refused too: they would garble `ip` output and error messages.
  if (bytes === 0 || bytes > MAX_IFNAME_BYTES || name === '.' || name === '..' || /[\s/:\p{Cc}]/u.test(name)) {
    throw new Error(`invalid ${what} "${name}": must be 1..${MAX_IFNAME_BYTES} bytes without '/', ':' or whitespace, and not "." or ".."`);
  }
}

function validateAlias(alias: string): void {
  if (Buffer.byteLength(alias, 'utf8') > MAX_ALIAS_BYTES || /\p{Cc}/u.test(alias)) {
    throw new Error(`invalid device alias "${alias}": must be at most ${MAX_ALIAS_BYTES} bytes without control characters`);
  }
}

/** Lowercase colon form, which is how `ip` prints addresses (so comparisons are exact). */
function normalizeMac(mac: string): string {
  if (!MAC_RE.test(mac)) throw new Error(`invalid MAC address "${mac}"`);
  const lower = mac.toLowerCase().replace(/-/g, ':');
  if ((parseInt(lower.slice(0, 2), 16) & 0x01) !== 0) throw new Error(`MAC address "${mac}" is multicast; a NIC needs a unicast address`);
  return lower;
}

// ---------------------------------------------------------------------------------------------
// `ip -batch` encoding

/**
 * One `ip -batch` line, or undefined when an argument cannot be written safely. ip's batch parser
 * cuts the line at the first '#' (even inside quotes), splits on whitespace, and treats a word
 * starting with ' or " as quoted up to the next same quote, with no escapes.
 */
function batchLine(command: Command): string | undefined {
  const words: string[] = [];
  for (const arg of command) {
    if (BATCH_BARE_WORD.test(arg)) words.push(arg);
    else if (/[#\n\r]/.test(arg)) return undefined;
    else if (!arg.includes('"')) words.push(`"${arg}"`);
    else if (!arg.includes("'")) words.push(`'${arg}'`);
    else return undefined;
  }
  return words.join(' ');
}

/** True when every stderr line of a `-force` batch is about a device that does not exist. */
function onlyMissingDevices(stderr: string): boolean {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  return lines.length > 0 && lines.every((l) => /^Device ".*" does not exist\.$/.test(l) || /^Command failed -:\d+$/.test(l));
}

function quoteForMessage(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg);
}

// ---------------------------------------------------------------------------------------------
// `ip -json -details link show` parsing

/**
 * Links from `ip -json` output. A batch prints one JSON array per `show` command, each on its own
 * line, so every non-empty line is parsed and the arrays concatenated.
 */
function parseLinks(stdout: string): ParsedLink[] {
  const out: ParsedLink[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (err) {
      throw new Error(`cannot parse ip -json output (${String(err)}): ${line.slice(0, 200)}`, { cause: err });
    }
    if (!Array.isArray(doc)) throw new Error(`unexpected ip -json output (not an array): ${line.slice(0, 200)}`);
    for (const raw of doc as unknown[]) {
      // `ip -echo` style answers and some error paths print `{}`; a link always has ifname.
      if (isRecord(raw) && typeof raw['ifname'] === 'string') out.push(toParsedLink(raw));
    }
  }
  return out;
}

function singleLink(stdout: string, name: string): ParsedLink {
  const found = parseLinks(stdout).find((l) => l.info.name === name);
  if (found === undefined) throw new Error(`ip printed no link named "${name}"`);
  return found;
}

function toParsedLink(raw: Record<string, unknown>): ParsedLink {
  const linkinfo = isRecord(raw['linkinfo']) ? raw['linkinfo'] : {};
  const infoData = isRecord(linkinfo['info_data']) ? linkinfo['info_data'] : {};
  const flags = Array.isArray(raw['flags']) ? (raw['flags'] as unknown[]) : [];
  const kind = stringField(linkinfo, 'info_kind');
  const master = stringField(raw, 'master');
  const alias = stringField(raw, 'ifalias');
  const mode = kind === 'macvtap' || kind === 'macvlan' ? stringField(infoData, 'mode') : undefined;
  const parent = stringField(raw, 'link');
  const tunType = kind === 'tun' ? stringField(infoData, 'type') : undefined;
  const info: LinkInfo = {
    name: stringField(raw, 'ifname') ?? '',
    ifindex: numberField(raw, 'ifindex') ?? 0,
    // Devices without rtnl_link_ops (physical NICs, lo) have no linkinfo: kind ''.
    kind: kind ?? '',
    mac: (stringField(raw, 'address') ?? '').toLowerCase(),
    mtu: numberField(raw, 'mtu') ?? 0,
    txqlen: numberField(raw, 'txqlen') ?? 0,
    // Administrative state (IFF_UP), not operstate: a tap without a reader is UP but operstate DOWN.
    up: flags.includes('UP'),
    ...(master !== undefined ? { master } : {}),
    ...(alias !== undefined ? { alias } : {}),
    ...(mode !== undefined ? { macvtapMode: mode } : {}),
    ...(parent !== undefined ? { parent } : {}),
  };
  return tunType === undefined ? { info } : { info, tunType };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringField(obj: Record<string, unknown>, key: string): string | undefined {
  const v = obj[key];
  return typeof v === 'string' ? v : undefined;
}

function numberField(obj: Record<string, unknown>, key: string): number | undefined {
  const v = obj[key];
  return typeof v === 'number' ? v : undefined;
}

function missingParent(parent: string): Error {
  return new Error(`parent network device "${parent}" does not exist`);
}

function missingBridge(bridge: string): Error {
  return new Error(`bridge "${bridge}" does not exist`);
}

function describeKind(kind: string): string {
  return kind === '' ? 'plain (no link kind)' : kind;
}

function readStringProp(v: unknown, key: string): string {
  const p = prop(v, key);
  return typeof p === 'string' ? p : '';
}

function readCodeProp(v: unknown): number | string | undefined {
  const p = prop(v, 'code');
  return typeof p === 'number' || typeof p === 'string' ? p : undefined;
}

/** A property of a thrown value (execFile errors carry stderr, code and signal as own properties). */
function prop(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined;
}

/**
 * Closes the child's stdin after writing input: without input `ip` must never wait on it. If `ip`
 * exits before reading (bad netns, parse error) the write fails with EPIPE; the exit status already
 * reports that failure, and an unhandled stream 'error' would crash the daemon.
 */
function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
