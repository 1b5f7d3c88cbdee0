// End-to-end: the fl CLI (in-process) against a real grpc-js server over a real MicroVMService and
// SQLite store. The reconciler is a no-op, so tests move VMs through states via the repository.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import type { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { main, type CliIo } from '../../src/cli/fl/main.js';
import type { MicroVM, MicroVMStatus } from '../../src/core/model.js';
import type { Logger } from '../../src/core/ports.js';
import { createTestService, type TestService } from '../helpers/service.js';
import type { RunningDaemon } from '../../src/daemon/compose.js';
import { FL, makeTempDir } from '../helpers/daemon.js';
import { startComposedDaemon } from '../helpers/composed-daemon.js';
import { TestRegistry, buildImage, buildLayer } from '../helpers/oci-registry.js';
import { describeWith, QEMU_PROGRAMS } from '../helpers/prerequisites.js';
import { spawnTracked } from '../helpers/processes.js';

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const log: Logger = pino({ level: 'silent' });

let testService: TestService;
let repo: SqliteMicroVMRepository;
let server: RunningGrpcServer;
let authServer: RunningGrpcServer;
let host: string;

/** Warnings Node emitted while fl ran in this process (none are expected: asserted at the end). */
const warnings: string[] = [];
const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);

before(async () => {
  process.on('warning', onWarning);
  testService = createTestService('fl-cli-');
  repo = testService.repo;
  const service = testService.service;
  server = await startGrpcServer(service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log });
  authServer = await startGrpcServer(service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, basicAuthToken: 's3cret', log });
  host = `127.0.0.1:${server.port}`;
});

after(async () => {
  await Promise.all([server.close(), authServer.close()]);
  testService.close();
  process.off('warning', onWarning);
  assert.deepEqual(warnings, [], 'no warnings while fl ran');
});

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

interface Running {
  /** Output so far. */
  readonly out: () => string;
  readonly err: () => string;
  readonly done: Promise<Run>;
}

function start(args: string[], options: { signal?: AbortSignal; host?: string; reconnectDelayMs?: CliIo['reconnectDelayMs'] } = {}): Running {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: { write: (t: string) => (out += t) },
    err: { write: (t: string) => (err += t) },
    pollIntervalMs: 50,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.reconnectDelayMs !== undefined ? { reconnectDelayMs: options.reconnectDelayMs } : {}),
  };
  const done = main(['--host', options.host ?? host, ...args], io).then((code) => ({ code, out, err }));
  return { out: () => out, err: () => err, done };
}

function fl(...args: string[]): Promise<Run> {
  return start(args).done;
}

const CREATE_BASE = [
  'microvm',
  'create',
  '--kernel-image',
  'registry.local/kernel:1',
  '--root-image',
  'registry.local/root:1',
  '--network-interface',
  'eth1:tap',
];

async function createVm(name: string, ...extra: string[]): Promise<string> {
  const run = await fl(...CREATE_BASE, '--name', name, ...extra);
  assert.equal(run.code, 0, run.err);
  const uid = run.out.trim();
  assert.match(uid, ULID);
  return uid;
}

async function until(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface WatchLineJson {
  readonly type: string;
  readonly event: string;
  readonly microvm: { readonly spec: { readonly uid: string }; readonly status: { readonly state: string } };
}

function watchLines(out: string): WatchLineJson[] {
  return out
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as WatchLineJson);
}

function vmNamed(name: string, namespace = 'default'): MicroVM {
  const vm = repo.list({ namespace, name })[0];
  assert.ok(vm, `no vm ${namespace}/${name}`);
  return vm;
}

function setStatus(uid: string, patch: Partial<MicroVMStatus>): void {
  const vm = repo.get(uid);
  assert.ok(vm);
  repo.saveStatus(uid, { ...vm.status, ...patch }, Date.now());
}

describe('fl microvm create', () => {
  it('prints the uid and sends the spec fl builds', async () => {
    const ud = join(testService.dir, 'user-data');
    writeFileSync(ud, '#cloud-config\nhostname: vm-create\n');
    const uid = await createVm(
      'vm-create',
      '--namespace',
      'team-a',
      '--vcpu',
      '3',
      '--memory',
      '512',
      '--metadata-from-file',
      `user-data=${ud}`,
      '--kernel-cmdline',
      'console=ttyS0',
    );
    const vm = repo.get(uid);
    assert.ok(vm);
    assert.equal(vm.id.namespace, 'team-a');
    assert.equal(vm.id.name, 'vm-create');
    assert.equal(vm.spec.vcpu, 3);
    assert.equal(vm.spec.memoryMb, 512);
    assert.deepEqual(vm.spec.labels, { 'created-with': 'fl' });
    assert.equal(vm.spec.kernel.cmdline['console'], 'ttyS0');
    assert.equal(vm.spec.rootVolume?.mountPoint, '/');
    assert.equal(vm.spec.interfaces[0]?.type, 'tap');
    assert.equal(Buffer.from(vm.spec.metadata['user-data'] ?? '', 'base64').toString(), '#cloud-config\nhostname: vm-create\n');
  });

  it('prints the whole microvm with -o json', async () => {
    const run = await fl('-o', 'json', ...CREATE_BASE, '--name', 'vm-create-json');
    assert.equal(run.code, 0, run.err);
    const vm = JSON.parse(run.out) as { spec: { uid: string; id: string }; status: { state: string } };
    assert.match(vm.spec.uid, ULID);
    assert.equal(vm.spec.id, 'vm-create-json');
    assert.equal(vm.status.state, 'PENDING');
  });

  it('autogenerates a name', async () => {
    const run = await fl(...CREATE_BASE, '--name-autogenerate');
    assert.equal(run.code, 0, run.err);
    const vm = repo.get(run.out.trim());
    assert.match(vm?.id.name ?? '', /^[a-z]+-[a-z]+-[0-9a-f]{4}$/);
  });

  it('exits 2 naming vcpu when the server rejects it', async () => {
    const run = await fl(...CREATE_BASE, '--name', 'vm-bad-vcpu', '--vcpu', '100');
    assert.equal(run.code, 2);
    assert.equal(run.out, '');
    assert.match(run.err, /^fl: creating microvm default\/vm-bad-vcpu: .*vcpu: must be between 1 and 64, got 100\n$/);
    assert.equal(repo.list({ name: 'vm-bad-vcpu' }).length, 0);
  });

  it('exits 2 naming vcpu when it is not a number', async () => {
    const run = await fl(...CREATE_BASE, '--name', 'vm-bad-vcpu', '--vcpu', 'lots');
    assert.equal(run.code, 2);
    assert.match(run.err, /^fl: .*--vcpu.*positive whole number/);
  });

  it('exits 2 for a bad interface before calling the server', async () => {
    const run = await fl(...CREATE_BASE, '--name', 'vm-eth0', '--network-interface', 'eth0');
    assert.equal(run.code, 2);
    assert.equal(run.err, 'fl: invalid arguments: you cannot use eth0 as the name of the interface as this is reserved\n');
  });

  it('exits 2 when the kernel image is missing', async () => {
    const run = await fl('microvm', 'create', '--name', 'x');
    assert.equal(run.code, 2);
    assert.match(run.err, /--kernel-image/);
  });

  it('--wait exits 0 once the microvm is CREATED', async () => {
    const running = start([...CREATE_BASE, '--name', 'vm-wait-ok', '--wait']);
    await until('the uid', () => ULID.test(running.out().trim()));
    const uid = running.out().trim();
    setStatus(uid, { retry: 1, lastError: 'pulling image: connection reset' });
    await until('the retry to be reported', () => running.err().includes('retry 1'));
    setStatus(uid, { state: 'created', retry: 0, lastError: '' });
    const run = await running.done;
    assert.equal(run.code, 0, run.err);
    assert.match(run.err, /microvm default\/vm-wait-ok \(\w+\): PENDING\n/);
    assert.match(run.err, /PENDING \(retry 1: pulling image: connection reset\)/);
    assert.match(run.err, /: CREATED\n$/);
  });

  it('--wait exits 1 with the reason when the microvm FAILS', async () => {
    const running = start([...CREATE_BASE, '--name', 'vm-wait-fail', '--wait']);
    await until('the create', () => repo.list({ name: 'vm-wait-fail' }).length === 1);
    await sleep(150);
    setStatus(vmNamed('vm-wait-fail').id.uid, { state: 'failed', retry: 10, failureReason: 'maximum retries (10) exceeded: kernel image not found' });
    const run = await running.done;
    assert.equal(run.code, 1);
    assert.match(run.err, /: FAILED/);
    assert.match(run.err, /^fl: microvm default\/vm-wait-fail \(\w+\) failed: maximum retries \(10\) exceeded: kernel image not found$/m);
  });

  it('--wait exits 3 on timeout', async () => {
    const run = await fl(...CREATE_BASE, '--name', 'vm-wait-timeout', '--wait', '--timeout', '1');
    assert.equal(run.code, 3);
    assert.match(run.err, /timed out after 1s \(last state PENDING\)/);
  });
});

describe('fl microvm get and list', () => {
  let uid: string;

  before(async () => {
    uid = await createVm('vm-show', '--namespace', 'show');
    await createVm('vm-show-2', '--namespace', 'show');
    setStatus(uid, { state: 'failed', retry: 10, failureReason: 'it broke' });
  });

  it('get prints the detail view: ids, state, images and digests, NICs, IPs, VMM, console, errors, age', async () => {
    const vm = repo.get(uid);
    assert.ok(vm);
    repo.saveStatus(
      uid,
      {
        ...vm.status,
        images: { kernel: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' },
        interfaces: { eth1: { hostDeviceName: 'fltap0show', index: 7, macAddress: '02:00:00:aa:bb:cc' } },
        guestIps: ['fd00::5', '10.0.0.5'],
        vmm: { pid: 4242, startTime: 1, provider: 'qemu' },
        consoleLogPath: '/state/vm/show/vm-show/console.log',
        lastError: 'pulling registry.local/root:1: connection reset',
        crashLoopCount: 2,
        reconcileStep: 'volume_image[root]',
        pullProgress: { image: 'registry.local/root:1', bytesDone: 3 * 1024 * 1024, bytesTotal: 12 * 1024 * 1024 },
      },
      Date.now(),
    );
    const run = await fl('microvm', 'get', uid);
    assert.equal(run.code, 0, run.err);
    assert.equal(run.err, '');
    const field = (label: string): string => new RegExp(`^${label}:\\s+(.*)$`, 'm').exec(run.out)?.[1] ?? `(no ${label} line)`;
    assert.equal(field('Name'), 'vm-show');
    assert.equal(field('Namespace'), 'show');
    assert.equal(field('UID'), uid);
    assert.equal(field('State'), 'FAILED');
    assert.equal(field('Provider'), 'qemu');
    assert.equal(field('Resources'), '2 vCPUs, 1024 MiB memory');
    assert.match(field('Created'), /^\d{4}-\d\d-\d\dT.*Z \(\d+s ago\)$/);
    assert.match(run.out, /^ {2}kernel\s+registry\.local\/kernel:1 \(sha256:0123456789ab\)$/m);
    assert.match(run.out, /^ {2}volume root\s+registry\.local\/root:1 on \/$/m);
    assert.match(run.out, /^ {2}eth1\s+tap\s+device fltap0show\s+MAC 02:00:00:aa:bb:cc\s+dhcp$/m);
    assert.equal(field('Guest IPs'), 'fd00::5, 10.0.0.5');
    assert.equal(field('VMM pid'), '4242');
    assert.equal(field('Console log'), '/state/vm/show/vm-show/console.log');
    assert.equal(field('Failure'), 'it broke');
    assert.equal(field('Last error'), 'pulling registry.local/root:1: connection reset');
    assert.match(field('Retries'), /^10/);
    assert.equal(field('Crash loop'), '2 quick exits in a row');
    assert.equal(field('Reconciling'), 'step volume_image[root]');
    assert.equal(field('Pulling'), 'registry.local/root:1 3.0 MiB/12.0 MiB (25%)');
    // One label column for every section.
    const valueColumns = new Set(
      run.out
        .split('\n')
        .filter((l) => /^[A-Z][A-Za-z ]+:\s/.test(l) && !/^(Images|Network):$/.test(l))
        .map((l) => l.search(/(?<=:\s+)\S/)),
    );
    assert.equal(valueColumns.size, 1, run.out);
  });

  it('get, delete and logs take [namespace/]name; an ambiguous name is refused, listing the matches', async () => {
    const other = await createVm('vm-show', '--namespace', 'show-too');
    const byQualified = await fl('microvm', 'get', 'show/vm-show', '-o', 'json');
    assert.equal(byQualified.code, 0, byQualified.err);
    assert.equal((JSON.parse(byQualified.out) as { spec: { uid: string } }).spec.uid, uid);
    const unique = await fl('microvm', 'get', 'vm-show-2', '-o', 'json');
    assert.equal(unique.code, 0, unique.err);
    assert.equal((JSON.parse(unique.out) as { spec: { namespace: string } }).spec.namespace, 'show');
    const ambiguous = await fl('microvm', 'get', 'vm-show');
    assert.equal(ambiguous.code, 2);
    assert.equal(ambiguous.out, '');
    assert.equal(
      ambiguous.err,
      `fl: getting microvm vm-show: the name vm-show matches 2 microvms: show/vm-show (${uid}), show-too/vm-show (${other}); give the uid or namespace/name\n`,
    );
    const ambiguousDelete = await fl('microvm', 'delete', 'vm-show');
    assert.equal(ambiguousDelete.code, 2);
    assert.equal(repo.get(uid)?.deletedAt, undefined, 'nothing was deleted');
    const none = await fl('microvm', 'get', 'show/no-such-vm');
    assert.equal(none.code, 4);
    assert.equal(none.err, 'fl: getting microvm show/no-such-vm: no microvm with uid or name show/no-such-vm (in namespace show)\n');
    const deleted = await fl('microvm', 'delete', 'show-too/vm-show');
    assert.equal(deleted.code, 0, deleted.err);
    assert.equal(repo.get(other)?.status.state, 'deleting');
    assert.equal(repo.get(uid)?.deletedAt, undefined);
    repo.remove(other);
  });

  it('list shows the IP and AGE columns', async () => {
    setStatus(vmNamed('vm-show-2', 'show').id.uid, { guestIps: ['fd00::9', '10.0.0.9'] });
    const run = await fl('microvm', 'list', '--namespace', 'show');
    assert.equal(run.code, 0, run.err);
    const [header, ...rows] = run.out.trimEnd().split('\n');
    assert.match(header ?? '', /^UID\s+NAMESPACE\s+NAME\s+STATE\s+IP\s+RETRY\s+AGE\s+REASON$/);
    const row = (name: string): string => rows.find((r) => r.includes(` ${name} `)) ?? `(no row for ${name})`;
    assert.match(row('vm-show-2'), /\sPENDING\s+10\.0\.0\.9 \(\+1\)\s+0\s+\d+s\s+-$/);
    assert.match(row('vm-show'), /\sFAILED\s+10\.0\.0\.5 \(\+1\)\s+10\s+\d+s\s+it broke$/, 'IPv4 first');
    // The columns line up: IP starts where its header does.
    assert.equal(row('vm-show-2').indexOf('10.0.0.9'), (header ?? '').indexOf('IP'));
  });

  it('get -o json prints the protobuf JSON of the microvm', async () => {
    const run = await fl('microvm', 'get', uid, '-o', 'json');
    assert.equal(run.code, 0, run.err);
    const vm = JSON.parse(run.out) as { version: number; spec: Record<string, unknown>; status: Record<string, unknown> };
    assert.equal(vm.spec['uid'], uid);
    assert.equal(vm.spec['namespace'], 'show');
    assert.equal(vm.spec['provider'], 'qemu');
    assert.equal(vm.status['state'], 'FAILED');
    assert.equal(vm.status['failureReason'], 'it broke');
    assert.equal(vm.status['vsockPath'], '');
  });

  it('get -o yaml prints the same document as YAML', async () => {
    const [json, yaml] = await Promise.all([fl('-o', 'json', 'microvm', 'get', uid), fl('-o', 'yaml', 'microvm', 'get', uid)]);
    assert.equal(yaml.code, 0, yaml.err);
    const { parse } = await import('yaml');
    assert.deepEqual(parse(yaml.out), JSON.parse(json.out));
    assert.match(yaml.out, /^version: \d+\nspec:\n/);
  });

  it('get of an unknown uid exits 4', async () => {
    const run = await fl('microvm', 'get', '01HGW2N7EH0000000000000000');
    assert.equal(run.code, 4);
    assert.equal(run.out, '');
    assert.equal(run.err, 'fl: getting microvm 01HGW2N7EH0000000000000000: no microvm with uid or name 01HGW2N7EH0000000000000000 (in any namespace)\n');
  });

  it('list filters by namespace and name', async () => {
    const ns = await fl('microvm', 'list', '--namespace', 'show');
    assert.equal(ns.code, 0, ns.err);
    assert.equal(ns.out.trimEnd().split('\n').length, 3);
    const named = await fl('microvm', 'list', '--namespace', 'show', '--name', 'vm-show-2', '-o', 'json');
    const vms = JSON.parse(named.out) as { spec: { id: string } }[];
    assert.deepEqual(
      vms.map((v) => v.spec.id),
      ['vm-show-2'],
    );
  });

  it('list without a namespace lists every namespace', async () => {
    const run = await fl('-o', 'yaml', 'microvm', 'ls');
    assert.equal(run.code, 0, run.err);
    const { parse } = await import('yaml');
    const vms = parse(run.out) as { spec: { namespace: string } }[];
    const namespaces = new Set(vms.map((v) => v.spec.namespace));
    assert.ok(namespaces.has('show') && namespaces.has('default') && namespaces.has('team-a'), [...namespaces].join(','));
  });

  it('get without a uid lists, like the original', async () => {
    const run = await fl('microvm', 'get', '--namespace', 'show', '-o', 'json');
    assert.equal(run.code, 0, run.err);
    assert.equal((JSON.parse(run.out) as unknown[]).length, 2);
  });

  it('an empty list says so on stderr (table) or prints [] (json)', async () => {
    const table = await fl('microvm', 'list', '--namespace', 'nothing-here');
    assert.equal(table.code, 0);
    assert.equal(table.out, '');
    assert.equal(table.err, 'No microvms found.\n');
    const json = await fl('microvm', 'list', '--namespace', 'nothing-here', '-o', 'json');
    assert.deepEqual(JSON.parse(json.out), []);
  });

  it('list --watch prints the list, later changes and deletions until aborted', async () => {
    const before = await createVm('vm-listed', '--namespace', 'watch');
    const abort = new AbortController();
    const running = start(['microvm', 'list', '--watch', '--namespace', 'watch', '-o', 'json'], { signal: abort.signal });
    await until('the list', () => running.out().includes(before));
    const uid = await createVm('vm-watched', '--namespace', 'watch');
    await until('the created VM', () => running.out().includes(uid));
    setStatus(uid, { state: 'created' });
    await until('the update', () => running.out().includes('"CREATED"'));
    repo.markDeleting(before, Date.now());
    repo.remove(before);
    await until('the deletion', () => running.out().includes('"DELETED"'));
    abort.abort();
    const run = await running.done;
    assert.equal(run.code, 0, run.err);
    assert.equal(run.err, '');
    const lines = watchLines(run.out);
    assert.deepEqual(
      lines.map((l) => [l.type, l.event, l.microvm.spec.uid, l.microvm.status.state]),
      [
        ['SNAPSHOT', 'ADDED', before, 'PENDING'],
        ['UPDATED', 'ADDED', uid, 'PENDING'],
        ['UPDATED', 'MODIFIED', uid, 'CREATED'],
        ['UPDATED', 'MODIFIED', before, 'DELETING'],
        ['DELETED', 'DELETED', before, 'DELETING'],
      ],
    );
  });

  it('list --watch reconnects when the daemon restarts and prints what changed meanwhile', async () => {
    const own = await startGrpcServer(testService.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log });
    const port = own.port;
    const keep = await createVm('vm-keep', '--namespace', 'rewatch');
    const drop = await createVm('vm-drop', '--namespace', 'rewatch');
    const abort = new AbortController();
    const running = start(['microvm', 'list', '--watch', '--namespace', 'rewatch'], {
      signal: abort.signal,
      host: `127.0.0.1:${port}`,
      reconnectDelayMs: { initial: 20, max: 100 },
    });
    await until('the list', () => running.out().includes(keep) && running.out().includes(drop));
    await own.close();
    await until('the interruption', () => /watch interrupted \(UNAVAILABLE: flintlockd is shutting down/.test(running.err()));
    // While the daemon is away: one VM changes, one goes, one is created.
    setStatus(keep, { state: 'created' });
    repo.remove(drop);
    const added = await createVm('vm-added', '--namespace', 'rewatch');
    await sleep(150);
    const again = await startGrpcServer(testService.service, { endpoint: `127.0.0.1:${port}`, tls: { insecure: true, clientValidate: false }, log });
    try {
      await until('the watch again', () => running.err().includes('fl: watching again (fresh list)'), 10_000);
      await until('the changes', () => running.out().includes(added) && /DELETED/.test(running.out()));
      abort.abort();
      const run = await running.done;
      assert.equal(run.code, 0, run.err);
      const rows = run.out.trimEnd().split('\n');
      assert.match(rows[0] ?? '', /^EVENT\s+UID\s+NAMESPACE\s+NAME\s+STATE\s+IP\s+RETRY\s+AGE\s+REASON$/);
      assert.deepEqual(
        rows.slice(1, 3).map((r) => r.split(/\s+/)[0]),
        ['ADDED', 'ADDED'],
      );
      const afterRestart = rows.slice(3).map((r) => r.split(/\s+/).slice(0, 5).join(' '));
      assert.deepEqual(
        afterRestart.sort(),
        [`ADDED ${added} rewatch vm-added PENDING`, `DELETED ${drop} rewatch vm-drop DELETED`, `MODIFIED ${keep} rewatch vm-keep CREATED`].sort(),
      );
    } finally {
      await again.close();
    }
  });

  it('list --watch stops, without retrying, when the token is refused', async () => {
    const run = await start(['microvm', 'list', '--watch'], { host: `127.0.0.1:${authServer.port}` }).done;
    assert.equal(run.code, 5);
    assert.match(run.err, /^fl: watching microvms: missing authorization.*\(set --token or FL_TOKEN\)\n$/);
  });
});

describe('fl microvm delete', () => {
  it('requests deletion and exits 0', async () => {
    const uid = await createVm('vm-delete');
    const run = await fl('microvm', 'delete', uid);
    assert.equal(run.code, 0, run.err);
    assert.equal(repo.get(uid)?.status.state, 'deleting');
  });

  it('--wait exits 0 once the record is gone', async () => {
    const uid = await createVm('vm-delete-wait');
    const running = start(['microvm', 'delete', uid, '--wait']);
    await until('deleting', () => repo.get(uid)?.status.state === 'deleting');
    await sleep(150);
    repo.remove(uid);
    const run = await running.done;
    assert.equal(run.code, 0, run.err);
    assert.match(run.err, /: DELETING\n/);
    assert.match(run.err, /deleted\n$/);
  });

  it('of an unknown uid exits 4', async () => {
    const run = await fl('microvm', 'delete', '01HGW2N7EH0000000000000000');
    assert.equal(run.code, 4);
    assert.match(run.err, /no microvm with uid or name 01HGW2N7EH0000000000000000/);
  });

  it('without a uid is a usage error', async () => {
    const run = await fl('microvm', 'delete');
    assert.equal(run.code, 2);
    assert.match(run.err, /missing required argument 'vm'/);
  });
});

describe('fl microvm stop --wait (a lifecycle call)', () => {
  it('takes a name, shows the reconcile step while it waits, ends when the guest is STOPPED', async () => {
    const uid = await createVm('vm-power', '--namespace', 'power');
    setStatus(uid, { state: 'created', vmm: { pid: 4343, startTime: 1, provider: 'qemu' } });
    const running = start(['microvm', 'stop', 'power/vm-power', '--wait']);
    await until('the first poll', () => running.err().includes('): CREATED\n'));
    setStatus(uid, { reconcileStep: 'vmm_stop' });
    await until('the step', () => running.err().includes(': step vmm_stop'));
    const { vmm: _gone, reconcileStep: _done, ...rest } = repo.get(uid)?.status ?? { state: 'created' };
    repo.saveStatus(uid, { ...(rest as MicroVMStatus), power: 'stopped' }, Date.now());
    const run = await running.done;
    assert.equal(run.code, 0, run.err);
    assert.deepEqual(run.err.trimEnd().split('\n'), [
      `microvm ${uid}: stop requested`,
      `microvm power/vm-power (${uid}): CREATED`,
      `microvm power/vm-power (${uid}): CREATED: step vmm_stop`,
      `microvm ${uid}: STOPPED`,
    ]);
  });
});

describe('fl microvm logs', () => {
  it('takes [namespace/]name too', async () => {
    const uid = await createVm('vm-logs', '--namespace', 'logs');
    const console = join(testService.dir, 'vm-logs-console.log');
    writeFileSync(console, 'Linux version 6.1\nlogin: ');
    setStatus(uid, { consoleLogPath: console });
    const run = await fl('microvm', 'logs', 'logs/vm-logs');
    assert.equal(run.code, 0, run.err);
    assert.equal(run.out, 'Linux version 6.1\nlogin: ');
    assert.equal(run.err, '');
    // --tail counts lines, as docker and incus do (the API's tail is bytes).
    writeFileSync(console, Array.from({ length: 300 }, (_, i) => `line ${i}`).join('\n') + '\n');
    const tail = await fl('microvm', 'logs', 'logs/vm-logs', '--tail', '2');
    assert.equal(tail.code, 0, tail.err);
    assert.equal(tail.out, 'line 298\nline 299\n');
  });
});

describe('connection and auth', () => {
  it('exits 5 when nothing listens', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const address = probe.address();
    assert.ok(address !== null && typeof address === 'object');
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const run = await start(['microvm', 'list'], { host: `127.0.0.1:${address.port}` }).done;
    assert.equal(run.code, 5);
    assert.match(run.err, new RegExp(`^fl: listing microvms: cannot reach flintlockd at 127\\.0\\.0\\.1:${address.port}: .*ECONNREFUSED`));
    assert.match(run.err, /\n {2}hint: nothing listens at 127\.0\.0\.1:\d+: check the address and port in --host .*\n$/);
    assert.equal(run.err.split('\n').length, 3);
    // --watch too: it reconnects only to a daemon it has watched before, so a wrong --host fails.
    const watch = await start(['microvm', 'list', '--watch'], { host: `127.0.0.1:${address.port}` }).done;
    assert.equal(watch.code, 5);
    assert.match(watch.err, /^fl: watching microvms: cannot reach flintlockd/);
  });

  it('exits 5 without the token and succeeds with it', async () => {
    const authHost = `127.0.0.1:${authServer.port}`;
    const denied = await start(['microvm', 'list'], { host: authHost }).done;
    assert.equal(denied.code, 5);
    assert.match(denied.err, /^fl: listing microvms: missing authorization.*\(set --token or FL_TOKEN\)\n$/);
    const wrong = await start(['--token', 'nope', 'microvm', 'list'], { host: authHost }).done;
    assert.equal(wrong.code, 5);
    assert.doesNotMatch(wrong.err, /s3cret/);
    const allowed = await start(['--token', 's3cret', 'microvm', 'list', '-o', 'json'], { host: authHost }).done;
    assert.equal(allowed.code, 0, allowed.err);
    assert.ok(Array.isArray(JSON.parse(allowed.out)));
  });

  it('exits 2 when a TLS file cannot be read', async () => {
    const run = await fl('--tls-ca', join(testService.dir, 'missing-ca.pem'), 'microvm', 'list');
    assert.equal(run.code, 2);
    assert.match(run.err, /^fl: connecting: cannot read TLS CA file .*missing-ca\.pem/);
  });
});

/** Runs bin/fl (the built CLI) as a child process; `tty`: under `script`, so its stderr is a real terminal. */
async function flProcess(args: readonly string[], options: { tty?: boolean } = {}): Promise<Run> {
  const command = options.tty === true ? 'script' : FL;
  // script -q: no start/done lines; -e: its exit code is fl's; -c: the command (quoted for sh).
  const argv = options.tty === true ? ['-qec', [FL, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' '), '/dev/null'] : [...args];
  const child = spawnTracked(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, COLUMNS: '160', TERM: 'xterm' } });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? -1)));
  return { code, out, err };
}

describeWith('fl --wait against the daemon: reconcile step and pull progress', QEMU_PROGRAMS, {}, () => {
  let dir: string;
  let daemon: RunningDaemon;
  let registry: TestRegistry;
  let daemonHost: string;

  /** An image whose only layer (about 2 MiB) arrives slowly, and that holds no kernel: the VM fails right after the pull. */
  function pushSlowImage(name: string): string {
    const image = buildImage([buildLayer({ 'boot/': { dir: true }, 'boot/README': randomBytes(2 * 1024 * 1024) }, { compression: 'none' })]);
    registry.push(`test/${name}`, '1', image);
    for (const digest of image.layerDigests) registry.setBlobBehaviour(digest, { slow: { chunks: 12, delayMs: 150 } });
    return `${registry.host}/test/${name}:1`;
  }

  before(async () => {
    dir = makeTempDir('fl-wait-');
    registry = await TestRegistry.start();
    registry.push('test/initrd', '1', buildImage([buildLayer({ 'boot/': { dir: true }, 'boot/initrd': Buffer.from('initrd') })]));
    daemon = await startComposedDaemon(dir, {
      'bridge-name': 'br0',
      'parent-iface': 'eth0',
      insecure: true,
      'default-provider': 'qemu',
      'maximum-retry': 0,
    });
    daemonHost = `127.0.0.1:${daemon.grpcPort}`;
  });

  after(async () => {
    await daemon?.stop();
    await registry?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const createArgs = (name: string, kernel: string): string[] => [
    '--host',
    daemonHost,
    'microvm',
    'create',
    '--name',
    name,
    '--kernel-image',
    kernel,
    '--initrd-image',
    `${registry.host}/test/initrd:1`,
    '--network-interface',
    'eth1:tap',
    '--wait',
    '--timeout',
    '60',
  ];

  it('plain lines (not a terminal): one per change of state, step and pull progress; cleared when the reconcile ends', async () => {
    const kernel = pushSlowImage('slow-kernel');
    const run = await start(createArgs('vm-progress', kernel).slice(2), { host: daemonHost }).done;
    assert.equal(run.code, 1, run.err);
    assert.ok(!run.err.includes('\r') && !run.err.includes('\x1b'), 'no terminal control characters');
    const lines = run.err.trimEnd().split('\n');
    const pulls = lines
      .map((l) => new RegExp(`: PENDING: step kernel_image, pulling ${kernel.replaceAll('.', '\\.')} [\\d.]+ (KiB|MiB)/2\\.0 MiB \\((\\d+)%\\)$`).exec(l))
      .filter((m) => m !== null)
      .map((m) => Number(m[2]));
    assert.ok(pulls.length >= 2, `at least two progress lines:\n${run.err}`);
    assert.deepEqual(
      pulls,
      [...pulls].sort((a, b) => a - b),
      'the percentage only grows',
    );
    assert.equal(new Set(lines).size, lines.length, 'a line only when something changed');
    assert.match(
      run.err,
      /: FAILED \(retry 1: [^\n]*\nfl: microvm default\/vm-progress \(\w+\) failed: .*kernel boot\/vmlinux or vmlinux or boot\/vmlinuz not found/,
    );
    const uid = run.out.trim();
    const json = await start(['-o', 'json', 'microvm', 'get', uid], { host: daemonHost }).done;
    const status = (JSON.parse(json.out) as { status: { reconcileStep: string; pullProgress?: unknown } }).status;
    assert.equal(status.reconcileStep, '', 'the step is cleared when the reconcile ends');
    assert.equal(status.pullProgress, undefined, 'so is the pull');
  });

  it('on a terminal: one line updated in place with a progress bar; no warnings', async () => {
    const kernel = pushSlowImage('slow-kernel-tty');
    const run = await flProcess(createArgs('vm-progress-tty', kernel), { tty: true });
    assert.equal(run.code, 1, run.out + run.err);
    assert.equal(run.err, '', 'script passes everything on its stdout');
    const screen = run.out;
    const updates = screen.split('\r\x1b[K').filter((u) => u.includes('pulling'));
    assert.ok(updates.length >= 2, `the line was updated in place at least twice:\n${JSON.stringify(screen)}`);
    assert.match(screen, /step kernel_image, pulling \S+ \[#*-*\] [\d.]+ (KiB|MiB)\/2\.0 MiB \(\d+%\)/);
    // The pty has no size: COLUMNS (160) says how wide the line may be.
    for (const update of updates) assert.ok(update.replace(/\r?\n.*$/s, '').length < 160, JSON.stringify(update));
    // The pull's updates share one terminal line: no newline between them.
    const firstPull = screen.indexOf('pulling');
    const lastPull = screen.lastIndexOf('pulling');
    assert.ok(firstPull < lastPull && !screen.slice(firstPull, lastPull).includes('\n'), JSON.stringify(screen));
    assert.match(screen, /FAILED \(retry 1: [^\n]*\r?\nfl: microvm default\/vm-progress-tty \(\w+\) failed: /);
    assert.doesNotMatch(screen, /Warning|DeprecationWarning|\n\s+at /);
  });
});
