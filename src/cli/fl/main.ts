// fl: the command-line client of flintlockd's MicroVM gRPC API. A superset of the original
// liquidmetal-dev/fl command tree, plus TLS, token auth, output formats, `list`, `--wait`, and
// exit codes that scripts can act on. Everything is written to the injected streams and the exit
// code is returned, so the whole CLI runs in-process in tests.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { MicroVM, MicroVMSpec } from '../../gen/flintlock/types/microvm_pb.js';
import { MicroVMStatus_MicroVMState, PowerState } from '../../gen/flintlock/types/microvm_pb.js';
import { WatchEvent_Type } from '../../gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { ClientSetupError, MicroVMClient, type ClientOptions, type LifecycleCall, type RpcError, type WatchHandle } from './client.js';
import { completionScript, COMPLETION_SHELLS, type CompletionShell } from './completion.js';
import { formatDetail } from './detail.js';
import { TailLines } from './tail-lines.js';
import { connectionHint, plainOpenSslText } from './hints.js';
import { formatHostInfo } from './host-output.js';
import { formatVms, formatWatchHeader, formatWatchLine, OUTPUT_FORMATS, reasonOf, stateName, type OutputFormat } from './output.js';
import { vmLabel, WaitView } from './progress-view.js';
import { resolveVm } from './resolve.js';
import { buildSpec, SpecError } from './spec.js';
import { Backoff, WatchState } from './watch.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  timeout: 3,
  notFound: 4,
  unavailable: 5,
} as const;

const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  the operation failed (the microvm ended FAILED, or the server reported an error)
  2  usage error or invalid argument (including the server's InvalidArgument)
  3  timed out (--wait --timeout, or a call deadline)
  4  not found
  5  cannot connect: server unavailable, or authentication refused`;

const DEFAULT_HOST = 'localhost:9090';
const VM_ARGUMENT = 'microvm uid, or [namespace/]name';
const DEFAULT_PORT = '9090';
const POLL_INTERVAL_MS = 500;

/** Where fl writes; process.stdout/stderr satisfy it. */
export interface TextSink {
  write(text: string): unknown;
}

export interface CliIo {
  readonly out: TextSink;
  readonly err: TextSink;
  /** Ends `list --watch` (exit 0) and interrupts waits. */
  readonly signal?: AbortSignal;
  /** Poll period of `--wait`; tests shorten it. */
  readonly pollIntervalMs?: number;
  /** stderr is a terminal: `--wait` updates one line with a progress bar (else a line per change). */
  readonly errIsTty?: boolean;
  /** The terminal's width, for that line. */
  readonly columns?: number;
  /** First and longest pause before `list --watch` reconnects (250 ms doubling to 5 s). */
  readonly reconnectDelayMs?: { readonly initial: number; readonly max: number };
}

/** Watch failures that a reconnect cannot fix: the user has to change something. */
const WATCH_FATAL = new Set<grpc.status>([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT]);

/** grpc-js appends an empty "Resolution note: " and a timestamp to connection errors, OpenSSL its source lines. */
const cleanDetails = (details: string): string => plainOpenSslText(details.replace(/\.?\s*Resolution note:\s*$/, ''));

interface GlobalOptions {
  host: string;
  token?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  output: OutputFormat;
}

interface CreateCommandOptions extends GlobalOptions {
  name?: string;
  nameAutogenerate?: boolean;
  namespace: string;
  vcpu: number;
  memory: number;
  kernelImage: string;
  kernelFilename?: string;
  kernelCmdline?: string[];
  addNetconf?: boolean;
  rootImage?: string;
  initrdImage?: string;
  initrdFilename?: string;
  networkInterface?: string[];
  metadataFromFile?: string[];
  containerVolume?: string[];
  provider?: string;
  wait?: boolean;
  timeout: number;
}

interface ListCommandOptions extends GlobalOptions {
  namespace?: string;
  name?: string;
  watch?: boolean;
}

interface DeleteCommandOptions extends GlobalOptions {
  wait?: boolean;
  timeout: number;
}

type PowerCommandOptions = DeleteCommandOptions;

interface LogsCommandOptions extends GlobalOptions {
  follow?: boolean;
  tail: number;
}

/** What each lifecycle call leads to, for --wait. */
const POWER_AFTER: Record<LifecycleCall, { readonly state: PowerState; readonly doing: string }> = {
  stop: { state: PowerState.STOPPED, doing: 'stopping' },
  start: { state: PowerState.RUNNING, doing: 'starting' },
  restart: { state: PowerState.RUNNING, doing: 'restarting' },
  pause: { state: PowerState.PAUSED, doing: 'pausing' },
  resume: { state: PowerState.RUNNING, doing: 'resuming' },
};

/** A failure already explained to the user; carries the exit code. */
class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export function exitCodeFor(code: grpc.status): number {
  switch (code) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return EXIT.usage;
    case grpc.status.NOT_FOUND:
      return EXIT.notFound;
    case grpc.status.DEADLINE_EXCEEDED:
      return EXIT.timeout;
    case grpc.status.UNAVAILABLE:
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.PERMISSION_DENIED:
      return EXIT.unavailable;
    default:
      return EXIT.failed;
  }
}

function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError(`${flag} must be a positive whole number.`);
    return Number(value);
  };
}

function nonNegativeInt(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError(`${flag} must be a whole number.`);
    return Number(value);
  };
}

// No default array: commander would print "(default: [])" in the help.
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** grpc-js would use port 443 for a bare host; flintlockd's conventional port is 9090. */
export function normalizeHost(host: string): string {
  return host.includes(':') ? host : `${host}:${DEFAULT_PORT}`;
}

function packageVersion(): string {
  try {
    // src/cli/fl and dist/cli/fl are both three levels below the package root.
    const pkg: unknown = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
    if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string') return pkg.version;
  } catch {
    // Fall through: a missing package.json must not break the CLI.
  }
  return 'unknown';
}

function clientOptions(opts: GlobalOptions): ClientOptions {
  const useTls = opts.tls === true || opts.tlsCa !== undefined || opts.tlsCert !== undefined || opts.tlsKey !== undefined;
  return {
    host: normalizeHost(opts.host),
    ...(opts.token !== undefined && opts.token !== '' ? { token: opts.token } : {}),
    ...(useTls
      ? {
          tls: {
            ...(opts.tlsCa !== undefined ? { caFile: opts.tlsCa } : {}),
            ...(opts.tlsCert !== undefined ? { certFile: opts.tlsCert } : {}),
            ...(opts.tlsKey !== undefined ? { keyFile: opts.tlsKey } : {}),
          },
        }
      : {}),
  };
}

class Cli {
  constructor(private readonly io: CliIo) {}

  fail(what: string, message: string, code: number): Exit {
    this.io.err.write(`fl: ${what}: ${message}\n`);
    return new Exit(code);
  }

  rpcFailure(what: string, error: RpcError, host: string): Exit {
    let message = cleanDetails(error.details);
    if (error.code === grpc.status.UNAVAILABLE) message = `cannot reach flintlockd at ${host}: ${message}`;
    if (error.code === grpc.status.UNAUTHENTICATED) message = `${message} (set --token or FL_TOKEN)`;
    if (error.code === grpc.status.DEADLINE_EXCEEDED) message = `no answer from ${host} in time: ${message}`;
    const hint = connectionHint(error, { ...this.connection, host });
    this.io.err.write(`fl: ${what}: ${message}\n${hint !== undefined ? `  hint: ${hint}\n` : ''}`);
    return new Exit(exitCodeFor(error.code));
  }

  /** The VM a uid or `[namespace/]name` names (List for a name); throws Exit when none or several do. */
  async resolve(client: MicroVMClient, host: string, ref: string, what: string): Promise<MicroVM> {
    const found = await resolveVm(client, ref);
    if (found.ok) return found.vm;
    if (found.rpc !== undefined) throw this.rpcFailure(what, found.rpc, host);
    throw this.fail(what, found.message, found.ambiguous ? EXIT.usage : EXIT.notFound);
  }

  /** How the current command connects (for the hints). */
  private connection = { tls: false, clientCert: false };

  private waitView(): WaitView {
    return new WaitView(this.io.err, this.io.errIsTty === true, this.io.columns ?? 80);
  }

  /** Opens a client for the command, runs it, and always closes the channel. */
  async withClient<T>(opts: GlobalOptions, body: (client: MicroVMClient, host: string) => Promise<T>): Promise<T> {
    const options = clientOptions(opts);
    let client: MicroVMClient;
    try {
      client = new MicroVMClient(options);
    } catch (e) {
      if (e instanceof ClientSetupError) throw this.fail('connecting', e.message, EXIT.usage);
      throw e;
    }
    this.connection = { tls: options.tls !== undefined, clientCert: options.tls?.certFile !== undefined };
    try {
      return await body(client, options.host);
    } finally {
      client.close();
    }
  }

  async create(opts: CreateCommandOptions): Promise<number> {
    let spec: MicroVMSpec;
    try {
      spec = buildSpec(
        {
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          nameAutogenerate: opts.nameAutogenerate === true,
          namespace: opts.namespace,
          vcpu: opts.vcpu,
          memoryMb: opts.memory,
          kernelImage: opts.kernelImage,
          ...(opts.kernelFilename !== undefined ? { kernelFilename: opts.kernelFilename } : {}),
          kernelCmdline: opts.kernelCmdline ?? [],
          addNetconf: opts.addNetconf !== false,
          ...(opts.rootImage !== undefined ? { rootImage: opts.rootImage } : {}),
          ...(opts.initrdImage !== undefined ? { initrdImage: opts.initrdImage } : {}),
          ...(opts.initrdFilename !== undefined ? { initrdFilename: opts.initrdFilename } : {}),
          networkInterfaces: opts.networkInterface ?? [],
          metadataFromFile: opts.metadataFromFile ?? [],
          containerVolumes: opts.containerVolume ?? [],
          ...(opts.provider !== undefined ? { provider: opts.provider } : {}),
        },
        (path) => readFileSync(path),
      );
    } catch (e) {
      if (e instanceof SpecError) throw this.fail('invalid arguments', e.message, EXIT.usage);
      throw e;
    }
    return this.withClient(opts, async (client, host) => {
      const created = await client.createMicroVM(spec);
      if (!created.ok) throw this.rpcFailure(`creating microvm ${spec.namespace}/${spec.id}`, created.error, host);
      const vm = created.value;
      const uid = vm.spec?.uid ?? '';
      // The uid goes out at once so a script has it even when the wait below fails.
      if (opts.output === 'table') this.io.out.write(`${uid}\n`);
      if (opts.wait !== true) {
        if (opts.output !== 'table') this.io.out.write(formatVms(opts.output, vm, Date.now()));
        return EXIT.ok;
      }
      const final = (await this.waitFor(client, host, uid, opts.timeout, vm, 'created')) ?? vm;
      if (opts.output !== 'table') this.io.out.write(formatVms(opts.output, final, Date.now()));
      return EXIT.ok;
    });
  }

  /**
   * Polls Get, showing each change of state, retry, reconcile step and pull progress on stderr
   * (progress-view.ts), until the VM is CREATED (`created`) or gone (`deleted`). Returns the last
   * VM seen (if any); throws Exit otherwise.
   */
  async waitFor(
    client: MicroVMClient,
    host: string,
    uid: string,
    timeoutSeconds: number,
    initial: MicroVM | undefined,
    goal: 'created' | 'deleted',
  ): Promise<MicroVM | undefined> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    const interval = this.io.pollIntervalMs ?? POLL_INTERVAL_MS;
    const view = this.waitView();
    let current = initial;
    let unreachable = false;
    try {
      for (;;) {
        if (current !== undefined) {
          view.show(current);
          const state = current.status?.state;
          if (goal === 'created' && state === MicroVMStatus_MicroVMState.CREATED) return current;
          if (goal === 'created' && state === MicroVMStatus_MicroVMState.FAILED) {
            view.end();
            throw this.fail(`${vmLabel(current)} failed`, reasonOf(current) || 'no reason given', EXIT.failed);
          }
          if (goal === 'created' && state === MicroVMStatus_MicroVMState.DELETING) {
            view.end();
            throw this.fail(`waiting for ${vmLabel(current)}`, 'it is being deleted', EXIT.failed);
          }
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          view.end();
          const state = current !== undefined ? stateName(current.status?.state) : 'unknown';
          throw this.fail(`waiting for microvm ${uid} to be ${goal}`, `timed out after ${timeoutSeconds}s (last state ${state})`, EXIT.timeout);
        }
        try {
          await sleep(Math.min(interval, remaining), undefined, this.io.signal !== undefined ? { signal: this.io.signal } : {});
        } catch {
          view.end();
          throw this.fail(`waiting for microvm ${uid} to be ${goal}`, 'interrupted', EXIT.failed);
        }
        const got = await client.getMicroVM(uid);
        if (got.ok) {
          current = got.value;
          unreachable = false;
          continue;
        }
        view.end();
        if (got.error.code === grpc.status.NOT_FOUND) {
          if (goal === 'deleted') {
            view.message(`microvm ${uid}: deleted`);
            return current;
          }
          throw this.rpcFailure(`waiting for microvm ${uid}`, got.error, host);
        }
        // A daemon restart while waiting is survivable: keep polling until the timeout.
        if (got.error.code === grpc.status.UNAVAILABLE || got.error.code === grpc.status.DEADLINE_EXCEEDED) {
          if (!unreachable) view.message(`fl: flintlockd at ${host} not answering (${got.error.details}); still waiting`);
          unreachable = true;
          continue;
        }
        throw this.rpcFailure(`waiting for microvm ${uid}`, got.error, host);
      }
    } finally {
      view.end();
    }
  }

  /** One VM by uid or `[namespace/]name`: the detail view (table), or the whole message (json/yaml). */
  async get(ref: string, opts: GlobalOptions): Promise<number> {
    return this.withClient(opts, async (client, host) => {
      const vm = await this.resolve(client, host, ref, `getting microvm ${ref}`);
      this.io.out.write(opts.output === 'table' ? formatDetail(vm, Date.now()) : formatVms(opts.output, vm, Date.now()));
      return EXIT.ok;
    });
  }

  async list(opts: ListCommandOptions): Promise<number> {
    const namespace = opts.namespace ?? '';
    return this.withClient(opts, async (client, host) => {
      if (opts.watch === true) return this.watch(client, host, namespace, opts);
      const listed = await client.listMicroVMs(namespace, opts.name);
      if (!listed.ok) throw this.rpcFailure('listing microvms', listed.error, host);
      if (listed.value.length === 0 && opts.output === 'table') {
        this.io.err.write('No microvms found.\n');
        return EXIT.ok;
      }
      this.io.out.write(formatVms(opts.output, listed.value, Date.now()));
      return EXIT.ok;
    });
  }

  /**
   * Prints the list, then every change and deletion, until interrupted. When the stream breaks
   * (the daemon restarts, or cut this client off for falling behind) it reconnects after a short,
   * capped backoff, resuming from the last event; only what changed meanwhile is printed. A first
   * connection that fails is reported like any other command's (a wrong --host should not spin).
   */
  private async watch(client: MicroVMClient, host: string, namespace: string, opts: ListCommandOptions): Promise<number> {
    this.io.out.write(formatWatchHeader(opts.output));
    const state = new WatchState();
    const backoff = new Backoff(this.io.reconnectDelayMs?.initial, this.io.reconnectDelayMs?.max);
    const signal = this.io.signal;
    // A function, not a property read: TypeScript would keep the loop condition's narrowing across awaits.
    const aborted = (): boolean => signal?.aborted === true;
    let handle: WatchHandle | undefined;
    const onAbort = (): void => handle?.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    /** The interruption last reported: a long outage is reported once, not at every attempt. */
    let reported: string | undefined;
    try {
      while (!aborted()) {
        const resume = state.position();
        handle = client.watch({ namespace, ...(opts.name !== undefined ? { name: opts.name } : {}), ...(resume !== undefined ? { resume } : {}) }, (event) => {
          if (event.type === WatchEvent_Type.SNAPSHOT_END) {
            backoff.reset();
            if (reported !== undefined) this.io.err.write(`fl: watching again (${event.resumed ? 'resumed' : 'fresh list'})\n`);
            reported = undefined;
          }
          for (const line of state.apply(event)) this.io.out.write(formatWatchLine(opts.output, line, Date.now()));
        });
        const ended = await handle.done;
        if (aborted()) break;
        if (!ended.ok && ended.error.code === grpc.status.UNIMPLEMENTED) {
          throw this.fail('watching microvms', `${host} does not serve the watch (flintlockd's MicroVMWatch service): ${ended.error.details}`, EXIT.failed);
        }
        if (!ended.ok && (!state.listed || WATCH_FATAL.has(ended.error.code))) throw this.rpcFailure('watching microvms', ended.error, host);
        const why = ended.ok ? 'the stream ended' : `${ended.error.codeName}: ${cleanDetails(ended.error.details)}`;
        const delay = backoff.next();
        if (why !== reported) this.io.err.write(`fl: watch interrupted (${why}); reconnecting\n`);
        reported = why;
        try {
          await sleep(delay, undefined, signal !== undefined ? { signal } : {});
        } catch {
          break;
        }
      }
      return EXIT.ok;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** A lifecycle call; with --wait, until the guest does what was asked (a restart: a new VMM runs it). */
  async power(call: LifecycleCall, ref: string, opts: PowerCommandOptions): Promise<number> {
    const { state: wanted, doing } = POWER_AFTER[call];
    return this.withClient(opts, async (client, host) => {
      const before = await this.resolve(client, host, ref, `${doing} microvm ${ref}`);
      const uid = before.spec?.uid ?? '';
      const done = await client.lifecycle(call, uid);
      if (!done.ok) throw this.rpcFailure(`${doing} microvm ${uid}`, done.error, host);
      this.io.err.write(`microvm ${uid}: ${call} requested\n`);
      if (opts.wait !== true) return EXIT.ok;
      const oldPid = call === 'restart' ? before.status?.vmmPid : undefined;
      const deadline = Date.now() + opts.timeout * 1000;
      const view = this.waitView();
      try {
        for (;;) {
          const got = await client.getMicroVM(uid);
          if (!got.ok) {
            view.end();
            throw this.rpcFailure(`${doing} microvm ${uid}`, got.error, host);
          }
          const status = got.value.status;
          if (status?.powerState === wanted && (oldPid === undefined || (status.vmmPid !== 0 && status.vmmPid !== oldPid))) {
            view.message(`microvm ${uid}: ${PowerState[wanted]}`);
            return EXIT.ok;
          }
          view.show(got.value);
          if (Date.now() > deadline) {
            view.end();
            throw this.fail(
              `${doing} microvm ${uid}`,
              `not ${PowerState[wanted]} after ${opts.timeout} s (last error: ${status?.lastError !== undefined && status.lastError !== '' ? status.lastError : 'none'})`,
              EXIT.failed,
            );
          }
          await sleep(this.io.pollIntervalMs ?? 500, undefined, this.io.signal !== undefined ? { signal: this.io.signal } : {});
        }
      } finally {
        view.end();
      }
    });
  }

  /**
   * The guest's console log (its last --tail lines, as docker and incus count them); with --follow,
   * what it writes next until interrupted. The API counts bytes: fl asks for enough bytes for the
   * lines and cuts what comes first (the whole answer, or with --follow the burst before the first
   * quiet moment) to the last lines.
   */
  async logs(ref: string, opts: LogsCommandOptions): Promise<number> {
    return this.withClient(opts, async (client, host) => {
      const uid = (await this.resolve(client, host, ref, `reading the console log of microvm ${ref}`)).spec?.uid ?? '';
      const decoder = new TextDecoder();
      const tail = new TailLines(opts.tail, (text) => this.io.out.write(text));
      const handle = client.logs({ uid, follow: opts.follow === true, tailBytes: BigInt(tail.bytesToAsk) }, (data) =>
        tail.write(decoder.decode(data, { stream: true })),
      );
      const onAbort = (): void => handle.cancel();
      this.io.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const ended = await handle.done;
        tail.flush();
        if (!ended.ok) throw this.rpcFailure(`reading the console log of microvm ${uid}`, ended.error, host);
        return EXIT.ok;
      } finally {
        tail.stop();
        this.io.signal?.removeEventListener('abort', onAbort);
      }
    });
  }

  async hostInfo(opts: GlobalOptions): Promise<number> {
    return this.withClient(opts, async (client, host) => {
      const info = await client.hostInfo();
      if (!info.ok) throw this.rpcFailure('getting host information', info.error, host);
      this.io.out.write(formatHostInfo(opts.output, info.value));
      return EXIT.ok;
    });
  }

  async delete(ref: string, opts: DeleteCommandOptions): Promise<number> {
    return this.withClient(opts, async (client, host) => {
      const uid = (await this.resolve(client, host, ref, `deleting microvm ${ref}`)).spec?.uid ?? '';
      const deleted = await client.deleteMicroVM(uid);
      if (!deleted.ok) throw this.rpcFailure(`deleting microvm ${uid}`, deleted.error, host);
      this.io.err.write(`microvm ${uid}: deletion requested\n`);
      if (opts.wait === true) await this.waitFor(client, host, uid, opts.timeout, undefined, 'deleted');
      return EXIT.ok;
    });
  }
}

function buildProgram(cli: Cli, io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('fl');
  program
    .description('Command-line client for flintlockd (the Liquid Metal microVM host daemon)')
    .version(packageVersion(), '-V, --version', 'print the fl version')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out.write(text),
      writeErr: (text) => io.err.write(text),
      outputError: (text, write) => write(`fl: ${text.replace(/^error: /, '')}`),
    })
    .showSuggestionAfterError()
    .addOption(new Option('--host <host:port>', 'flintlockd gRPC address (port 9090 when omitted)').env('FL_HOST').default(DEFAULT_HOST))
    .addOption(new Option('--token <token>', 'basic-auth token, sent as "authorization: Basic base64(token)"').env('FL_TOKEN'))
    .option('--tls', 'use TLS (implied by the --tls-* options); without --tls-ca the system CAs are trusted')
    .option('--tls-ca <file>', 'CA certificate (PEM) that signed the server certificate')
    .option('--tls-cert <file>', 'client certificate (PEM) for mTLS')
    .option('--tls-key <file>', 'client private key (PEM) for mTLS')
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .addHelpText('afterAll', EXIT_CODES_HELP);

  program
    .command('version')
    .description('print the fl version')
    .action(() => {
      io.out.write(`${packageVersion()}\n`);
      setExit(EXIT.ok);
    });

  const microvm = program.command('microvm').alias('vm').description('manage microvms');

  microvm
    .command('create')
    .description('create a microvm; prints its uid (or the microvm with -o json|yaml)')
    .option('--name <name>', 'microvm name (the spec id); required unless --name-autogenerate')
    .option('--name-autogenerate', 'generate a random name')
    .option('--namespace <namespace>', 'microvm namespace', 'default')
    .option('--vcpu <count>', 'number of vCPUs', positiveInt('--vcpu'), 2)
    .option('--memory <mb>', 'memory in MiB (the original fl defaulted to 2048)', positiveInt('--memory'), 1024)
    .requiredOption('--kernel-image <image>', 'container image holding the kernel')
    .option('--kernel-filename <path>', 'kernel file inside the image (server default: boot/vmlinux, vmlinux, boot/vmlinuz)')
    .option('--kernel-cmdline <key=value>', 'kernel command-line argument; a bare word is a flag (repeatable)', collect)
    .option('--add-netconf', 'generate a cloud-init network-config for the interfaces (default)')
    .option('--no-add-netconf', 'do not generate a cloud-init network-config')
    .option('--root-image <image>', 'container image for the root volume (a root image or an initrd is required)')
    .option('--initrd-image <image>', 'container image holding an initrd')
    .option('--initrd-filename <path>', 'initrd file inside the initrd image')
    .option(
      '--network-interface <name[:type[:mac][:cidr][:bridge]]>',
      'guest network interface; type macvtap (default) or tap; eth0 is reserved; e.g. eth1:tap::10.0.0.2/24 (repeatable)',
      collect,
    )
    .option('--metadata-from-file <key=path>', 'metadata entry read from a file, sent base64-encoded (repeatable)', collect)
    .option('--container-volume <name=image=mountpoint>', 'additional volume from a container image (repeatable)', collect)
    .option('--provider <name>', 'microvm provider (server default when omitted)')
    .option('--wait', 'wait until the microvm is CREATED (exit 0) or FAILED (exit 1), showing the state, reconcile step and image pull progress on stderr')
    .option('--timeout <seconds>', 'how long --wait waits', positiveInt('--timeout'), 300)
    .addHelpText('after', '\nThe original fl also sent cloud-init user-data by default; this one sends only --metadata-from-file entries.')
    .action(async (_opts, cmd: Command) => setExit(await cli.create(cmd.optsWithGlobals<CreateCommandOptions>())));

  const listOptions = (cmd: Command): Command =>
    cmd.option('--namespace <namespace>', 'only this namespace (default: all namespaces)').option('--name <name>', 'only microvms with this name');

  listOptions(microvm.command('get').argument('[vm]', `${VM_ARGUMENT}; without it, lists like \`fl microvm list\``))
    .description('show a microvm in detail (state, images, NICs and IPs, VMM, errors), or list microvms when none is named')
    .action(async (ref: string | undefined, _opts, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ListCommandOptions>();
      setExit(ref !== undefined ? await cli.get(ref, opts) : await cli.list(opts));
    });

  listOptions(microvm.command('list').alias('ls'))
    .description('list microvms')
    .option('-w, --watch', 'after the list, print each change and deletion with its EVENT (until interrupted); reconnects when the stream breaks')
    .action(async (_opts, cmd: Command) => setExit(await cli.list(cmd.optsWithGlobals<ListCommandOptions>())));

  microvm
    .command('delete')
    .description('delete a microvm; it is torn down in the background')
    .argument('<vm>', VM_ARGUMENT)
    .option('--wait', 'wait until the microvm is gone, showing the teardown step')
    .option('--timeout <seconds>', 'how long --wait waits', positiveInt('--timeout'), 300)
    .action(async (ref: string, _opts, cmd: Command) => setExit(await cli.delete(ref, cmd.optsWithGlobals<DeleteCommandOptions>())));

  const lifecycle: ReadonlyArray<readonly [LifecycleCall, string]> = [
    ['stop', 'stop the VMM; devices, disks and the VM dir are kept (start runs it again)'],
    ['start', 'run a stopped (or paused) microvm again, with the same devices and MACs'],
    ['restart', 'stop the VMM and start a new one'],
    ['pause', "stop the guest's vCPUs, keeping the VMM and the guest's memory"],
    ['resume', "run a paused guest's vCPUs again"],
  ];
  for (const [call, description] of lifecycle) {
    microvm
      .command(call)
      .description(`${description} (flintlockd's lifecycle extension)`)
      .argument('<vm>', VM_ARGUMENT)
      .option('--wait', 'wait until the guest does what was asked, showing the reconcile step')
      .option('--timeout <seconds>', 'how long --wait waits', positiveInt('--timeout'), 120)
      .action(async (ref: string, _opts, cmd: Command) => setExit(await cli.power(call, ref, cmd.optsWithGlobals<PowerCommandOptions>())));
  }

  microvm
    .command('logs')
    .description("print the guest's serial console log (flintlockd's lifecycle extension)")
    .argument('<vm>', VM_ARGUMENT)
    .option('-f, --follow', 'keep printing what the guest writes, until interrupted')
    .option('--tail <lines>', 'only the last this many lines (0: all)', nonNegativeInt('--tail'), 0)
    .action(async (ref: string, _opts, cmd: Command) => setExit(await cli.logs(ref, cmd.optsWithGlobals<LogsCommandOptions>())));

  program
    .command('completion')
    .description('print a shell completion script: source <(fl completion bash)')
    .addArgument(new Argument('<shell>', 'the shell').choices(COMPLETION_SHELLS))
    .action((shell: CompletionShell) => {
      io.out.write(completionScript(program, shell));
      setExit(EXIT.ok);
    });

  program
    .command('host')
    .description('the host flintlockd runs on')
    .command('info')
    .description('providers usable there (and why not), KVM or TCG, network modes, capacity, daemon version')
    .action(async (_opts, cmd: Command) => setExit(await cli.hostInfo(cmd.optsWithGlobals<GlobalOptions>())));

  return program;
}

/** Runs fl with the user's arguments (no node/script prefix) and returns the exit code. */
export async function main(
  argv: string[],
  // A terminal without a size (a pty nobody sized) reports 0 columns: the shell's COLUMNS, else 80.
  io: CliIo = {
    out: process.stdout,
    err: process.stderr,
    errIsTty: process.stderr.isTTY,
    columns: process.stderr.columns || Number(process.env['COLUMNS']) || 80,
  },
): Promise<number> {
  const cli = new Cli(io);
  let exitCode: number = EXIT.ok;
  const program = buildProgram(cli, io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof Exit) return e.code;
    // Help and version "errors" exit 0; every other commander error is a usage error.
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.err.write(`fl: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.failed;
  }
}
