import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SchemaVersionError, migrate } from '../../src/adapters/store/migrations.js';
import { DB_FILE_NAME, SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import type { MicroVMStatus } from '../../src/core/model.js';
import type { VmChange } from '../../src/core/ports.js';
import { SAMPLE_TIME, sampleVm } from '../helpers/fixtures.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

let dir: string;
let repo: SqliteMicroVMRepository;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flintlock-store-'));
  repo = SqliteMicroVMRepository.open(join(dir, 'state'));
});

afterEach(() => {
  repo.close();
  rmSync(dir, { recursive: true, force: true });
});

function reopen(): SqliteMicroVMRepository {
  repo.close();
  repo = SqliteMicroVMRepository.open(join(dir, 'state'));
  return repo;
}

function dbPath(): string {
  return join(dir, 'state', DB_FILE_NAME);
}

describe('SqliteMicroVMRepository', () => {
  describe('open', () => {
    it('creates the state dir and a WAL database with NORMAL sync (durable() fsyncs) and foreign keys', () => {
      const raw = new Database(dbPath());
      try {
        assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
        assert.equal(raw.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
      } finally {
        raw.close();
      }
      // Per-connection settings are only observable on the repository's own connection.
      const internal = (repo as unknown as { db: Database.Database }).db;
      assert.equal(internal.pragma('synchronous', { simple: true }), 1);
      assert.equal(internal.pragma('foreign_keys', { simple: true }), 1);
      assert.ok(Number(internal.pragma('busy_timeout', { simple: true })) > 0);
    });
  });

  describe('insertUnlessExists / get / list', () => {
    it('inserts with version 1 and returns the VM as stored', () => {
      const vm = sampleVm({ version: 7 });
      const out = repo.insertUnlessExists(vm);
      assert.equal(out.inserted, true);
      assert.ok(out.inserted);
      assert.deepEqual(out.vm, { ...vm, version: 1 });
      assert.deepEqual(repo.get(vm.id.uid), out.vm);
      assert.equal(repo.get('nope'), undefined);
      assert.deepEqual(repo.queue(), [{ uid: vm.id.uid, dueAt: vm.createdAt }]);
    });

    it('round-trips optional fields and leaves absent ones absent', () => {
      const vm = sampleVm({
        spec: { initrd: { image: 'registry.local/initrd:1' }, interfaces: [{ deviceId: 'eth1', type: 'tap', bridgeName: 'br0' }] },
        status: { failureReason: 'x', nextRetryAt: 5 },
      });
      repo.insertUnlessExists(vm);
      const got = repo.get(vm.id.uid);
      assert.ok(got);
      assert.deepEqual(got.spec, vm.spec);
      assert.deepEqual(got.status, vm.status);
      assert.equal('deletedAt' in got, false);
      assert.equal('kernelMount' in got.status, false);
    });

    it('lists with filters in deterministic order; empty namespace means all', () => {
      const a2 = sampleVm({ id: { namespace: 'a', name: 'vm2' } });
      const b1 = sampleVm({ id: { namespace: 'b', name: 'vm1' } });
      const a1 = sampleVm({ id: { namespace: 'a', name: 'vm1' }, createdAt: SAMPLE_TIME + 10 });
      for (const vm of [b1, a2, a1]) repo.insertUnlessExists(vm);
      // A deleted a/vm1 plus its successor: same name, ordered by creation time.
      repo.markDeleting(a1.id.uid, SAMPLE_TIME + 20);
      const a1b = sampleVm({ id: { namespace: 'a', name: 'vm1' }, createdAt: SAMPLE_TIME + 30 });
      assert.ok(repo.insertUnlessExists(a1b).inserted);

      const uids = (q: { namespace?: string; name?: string }) => repo.list(q).map((v) => v.id.uid);
      const all = [a1.id.uid, a1b.id.uid, a2.id.uid, b1.id.uid];
      assert.deepEqual(uids({}), all);
      assert.deepEqual(uids({ namespace: '' }), all);
      assert.deepEqual(uids({ namespace: 'a' }), [a1.id.uid, a1b.id.uid, a2.id.uid]);
      assert.deepEqual(uids({ namespace: 'a', name: 'vm1' }), [a1.id.uid, a1b.id.uid]);
      assert.deepEqual(uids({ name: 'vm1' }), [a1.id.uid, a1b.id.uid, b1.id.uid]);
      assert.deepEqual(uids({ namespace: 'b', name: 'vm2' }), []);
      assert.deepEqual(uids({ namespace: 'zzz' }), []);
    });

    it('returns the existing live VM for a duplicate name without inserting or enqueueing', () => {
      const first = sampleVm();
      repo.insertUnlessExists(first);
      repo.dequeue(first.id.uid);
      const dup = sampleVm({ createdAt: SAMPLE_TIME + 1 });
      const out = repo.insertUnlessExists(dup);
      assert.equal(out.inserted, false);
      assert.ok(!out.inserted);
      assert.equal(out.existing.id.uid, first.id.uid);
      assert.equal(repo.get(dup.id.uid), undefined);
      assert.deepEqual(repo.queue(), []);
      assert.equal(repo.list({}).length, 1);
    });

    it('the same name in another namespace is a different VM', () => {
      repo.insertUnlessExists(sampleVm());
      assert.ok(repo.insertUnlessExists(sampleVm({ id: { namespace: 'ns2' } })).inserted);
    });

    it('allows re-creating a name once the old VM is deleting', () => {
      const old = sampleVm();
      repo.insertUnlessExists(old);
      repo.markDeleting(old.id.uid, SAMPLE_TIME + 5);
      const again = sampleVm({ createdAt: SAMPLE_TIME + 6 });
      const out = repo.insertUnlessExists(again);
      assert.ok(out.inserted);
      assert.equal(out.vm.id.uid, again.id.uid);
      // Now the new one is the live one.
      const third = repo.insertUnlessExists(sampleVm());
      assert.ok(!third.inserted);
      assert.equal(third.existing.id.uid, again.id.uid);
    });

    it('fails loudly on a reused uid', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      repo.markDeleting(vm.id.uid, SAMPLE_TIME);
      assert.throws(() => repo.insertUnlessExists(vm), /UNIQUE|PRIMARY KEY/);
    });
  });

  describe('saveStatus', () => {
    it('bumps the version only when the status changed', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      const created: MicroVMStatus = { ...vm.status, state: 'created', vsockPath: '/v' };
      const v2 = repo.saveStatus(vm.id.uid, created, SAMPLE_TIME + 1);
      assert.ok(v2);
      assert.equal(v2.version, 2);
      assert.equal(v2.updatedAt, SAMPLE_TIME + 1);
      assert.deepEqual(v2.status, created);

      // Same content, different key order and an explicit undefined: not a change.
      const reordered: MicroVMStatus = { vsockPath: '/v', retry: 0, interfaces: {}, volumes: {}, state: 'created', lastError: undefined };
      const same = repo.saveStatus(vm.id.uid, reordered, SAMPLE_TIME + 2);
      assert.deepEqual(same, v2);

      const v3 = repo.saveStatus(vm.id.uid, { ...created, retry: 1, lastError: 'boom' }, SAMPLE_TIME + 3);
      assert.equal(v3?.version, 3);
      assert.equal(v3?.updatedAt, SAMPLE_TIME + 3);
      assert.deepEqual(repo.get(vm.id.uid), v3);
    });

    it('returns undefined for an unknown uid', () => {
      assert.equal(repo.saveStatus('missing', sampleVm().status, 1), undefined);
    });

    it('refuses values JSON cannot carry', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      assert.throws(() => repo.saveStatus(vm.id.uid, { ...vm.status, retry: Number.NaN }, 1), /non-finite.*retry/);
      assert.equal(repo.get(vm.id.uid)?.version, 1);
    });
  });

  describe('parsed VMs kept per version', () => {
    it('answers the same (frozen) object until the VM changes, then the new version', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      const first = repo.get(vm.id.uid);
      assert.ok(first !== undefined);
      assert.equal(repo.get(vm.id.uid), first, 'unchanged: not parsed again');
      assert.equal(repo.list({}).at(0), first, 'List answers the same object');
      assert.ok(Object.isFrozen(first) && Object.isFrozen(first.status) && Object.isFrozen(first.spec.interfaces));
      assert.throws(() => {
        (first.status as { state: string }).state = 'failed';
      }, TypeError);
      const saved = repo.saveStatus(vm.id.uid, { ...first.status, state: 'created' }, SAMPLE_TIME + 1);
      const second = repo.get(vm.id.uid);
      assert.equal(second, saved);
      assert.notEqual(second, first);
      assert.equal(second?.status.state, 'created');
      assert.equal(second?.version, first.version + 1);
      assert.equal(first.status.state, 'pending', 'the old version is left as it was');
      // What was written matches what a fresh process reads back.
      const kept = JSON.parse(JSON.stringify(second)) as unknown;
      assert.deepEqual(JSON.parse(JSON.stringify(reopen().get(vm.id.uid))), kept);
    });

    it('keeps nothing from a write that did not commit', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      const before = repo.get(vm.id.uid);
      assert.ok(before !== undefined);
      const raw = new Database(dbPath());
      try {
        raw.exec("CREATE TRIGGER refuse BEFORE UPDATE ON microvms BEGIN SELECT RAISE(ABORT, 'refused'); END");
        assert.throws(() => repo.saveStatus(vm.id.uid, { ...before.status, state: 'created' }, SAMPLE_TIME + 1), /refused/);
        assert.equal(repo.get(vm.id.uid)?.status.state, 'pending');
        raw.exec('DROP TRIGGER refuse');
      } finally {
        raw.close();
      }
      repo.saveStatus(vm.id.uid, { ...before.status, lastError: 'x' }, SAMPLE_TIME + 2);
      const after = repo.get(vm.id.uid);
      assert.equal(after?.status.state, 'pending', 'the refused CREATED never shows');
      assert.equal(after?.status.lastError, 'x');
      assert.deepEqual(JSON.parse(JSON.stringify(reopen().get(vm.id.uid))), JSON.parse(JSON.stringify(after)));
    });
  });

  describe('markDeleting', () => {
    it('sets deletedAt, state deleting, resets retry, keeps failureReason, clears nextRetryAt', () => {
      const vm = sampleVm({
        status: { state: 'failed', retry: 4, failureReason: 'gave up', lastError: 'e', nextRetryAt: SAMPLE_TIME + 60_000 },
      });
      repo.insertUnlessExists(vm);
      const d = repo.markDeleting(vm.id.uid, SAMPLE_TIME + 100);
      assert.ok(d);
      assert.equal(d.deletedAt, SAMPLE_TIME + 100);
      assert.equal(d.updatedAt, SAMPLE_TIME + 100);
      assert.equal(d.version, 2);
      assert.deepEqual(d.status, { ...emptyLike(vm.status), state: 'deleting', retry: 0, failureReason: 'gave up', lastError: 'e' });
      assert.equal('nextRetryAt' in d.status, false);
      assert.deepEqual(repo.get(vm.id.uid), d);
    });

    it('keeps the earlier deletedAt on a repeated delete', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      repo.markDeleting(vm.id.uid, SAMPLE_TIME + 100);
      const again = repo.markDeleting(vm.id.uid, SAMPLE_TIME + 200);
      assert.equal(again?.deletedAt, SAMPLE_TIME + 100);
      assert.equal(again?.updatedAt, SAMPLE_TIME + 200);
      assert.equal(again?.version, 3);
    });

    it('makes the VM due now, pre-empting a later retry', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      repo.dequeue(vm.id.uid);
      repo.enqueue(vm.id.uid, SAMPLE_TIME + 60_000);
      repo.markDeleting(vm.id.uid, SAMPLE_TIME + 100);
      assert.deepEqual(repo.queue(), [{ uid: vm.id.uid, dueAt: SAMPLE_TIME + 100 }]);

      // With no entry at all, one is created.
      repo.dequeue(vm.id.uid);
      repo.markDeleting(vm.id.uid, SAMPLE_TIME + 200);
      assert.deepEqual(repo.queue(), [{ uid: vm.id.uid, dueAt: SAMPLE_TIME + 200 }]);
    });

    it('returns undefined for an unknown uid and writes nothing', () => {
      assert.equal(repo.markDeleting('missing', 1), undefined);
      assert.deepEqual(repo.queue(), []);
    });
  });

  describe('work queue', () => {
    it('keeps the earlier due time on enqueue and orders by due time', () => {
      const a = sampleVm({ id: { name: 'a' } });
      const b = sampleVm({ id: { name: 'b' } });
      repo.insertUnlessExists(a);
      repo.insertUnlessExists(b);
      repo.dequeue(a.id.uid);
      repo.dequeue(b.id.uid);
      repo.enqueue(a.id.uid, 500);
      repo.enqueue(b.id.uid, 300);
      repo.enqueue(a.id.uid, 900);
      assert.deepEqual(repo.queue(), [
        { uid: b.id.uid, dueAt: 300 },
        { uid: a.id.uid, dueAt: 500 },
      ]);
      repo.enqueue(a.id.uid, 100);
      assert.deepEqual(
        repo.queue().map((e) => e.uid),
        [a.id.uid, b.id.uid],
      );
      repo.dequeue(a.id.uid);
      repo.dequeue(a.id.uid);
      assert.deepEqual(repo.queue(), [{ uid: b.id.uid, dueAt: 300 }]);
    });

    it('ignores enqueue for a VM that does not exist', () => {
      repo.enqueue('gone', 1);
      assert.deepEqual(repo.queue(), []);
    });
  });

  describe('devices and remove', () => {
    it('records, replaces, lists and forgets devices', () => {
      repo.recordDevice({ name: 'flmv2', vmUid: 'u2', kind: 'tap', deviceId: 'eth0', createdAt: 2 });
      repo.recordDevice({ name: 'flmv1', vmUid: 'u1', kind: 'macvtap', deviceId: 'eth0', createdAt: 1 });
      repo.recordDevice({ name: 'flmv3', vmUid: 'u1', kind: 'macvtap', deviceId: 'eth1', createdAt: 3 });
      assert.deepEqual(
        repo.devices().map((d) => d.name),
        ['flmv1', 'flmv2', 'flmv3'],
      );
      assert.deepEqual(repo.devices('u1'), [
        { name: 'flmv1', vmUid: 'u1', kind: 'macvtap', deviceId: 'eth0', createdAt: 1 },
        { name: 'flmv3', vmUid: 'u1', kind: 'macvtap', deviceId: 'eth1', createdAt: 3 },
      ]);
      assert.deepEqual(repo.deviceNamed('flmv3'), { name: 'flmv3', vmUid: 'u1', kind: 'macvtap', deviceId: 'eth1', createdAt: 3 });
      assert.equal(repo.deviceNamed('flmv9'), undefined);
      repo.recordDevice({ name: 'flmv1', vmUid: 'u9', kind: 'tap', deviceId: 'eth5', createdAt: 9 });
      assert.equal(repo.deviceNamed('flmv1')?.vmUid, 'u9');
      assert.deepEqual(repo.devices('u9'), [{ name: 'flmv1', vmUid: 'u9', kind: 'tap', deviceId: 'eth5', createdAt: 9 }]);
      repo.forgetDevice('flmv1');
      repo.forgetDevice('flmv1');
      assert.equal(repo.deviceNamed('flmv1'), undefined);
      assert.deepEqual(
        repo.devices().map((d) => d.name),
        ['flmv2', 'flmv3'],
      );
      assert.deepEqual(repo.devices('nobody'), []);
    });

    it('remove deletes the VM, its queue entry and its device records, and emits removed', () => {
      const vm = sampleVm();
      const other = sampleVm({ id: { name: 'other' } });
      repo.insertUnlessExists(vm);
      repo.insertUnlessExists(other);
      repo.recordDevice({ name: 'd1', vmUid: vm.id.uid, kind: 'macvtap', deviceId: 'eth0', createdAt: 1 });
      repo.recordDevice({ name: 'd2', vmUid: other.id.uid, kind: 'macvtap', deviceId: 'eth0', createdAt: 1 });
      const changes: VmChange[] = [];
      repo.onChange((c) => changes.push(c));

      repo.remove(vm.id.uid);
      assert.equal(repo.get(vm.id.uid), undefined);
      assert.deepEqual(
        repo.queue().map((e) => e.uid),
        [other.id.uid],
      );
      assert.deepEqual(
        repo.devices().map((d) => d.name),
        ['d2'],
      );
      assert.deepEqual(changes, [{ kind: 'removed', id: vm.id }]);

      // Removing again is harmless and silent.
      repo.remove(vm.id.uid);
      assert.equal(changes.length, 1);
    });

    it('device records may outlive their VM row', () => {
      repo.recordDevice({ name: 'orphan', vmUid: 'never-stored', kind: 'tap', deviceId: 'eth0', createdAt: 1 });
      assert.equal(repo.devices('never-stored').length, 1);
      // ... and remove() still sweeps them.
      repo.remove('never-stored');
      assert.deepEqual(repo.devices(), []);
    });
  });

  describe('onChange', () => {
    it('reports committed changes in order, only when something changed', () => {
      const changes: VmChange[] = [];
      repo.onChange((c) => changes.push(c));
      const vm = sampleVm();
      const ins = repo.insertUnlessExists(vm);
      repo.insertUnlessExists(sampleVm()); // duplicate: no event
      const s = repo.saveStatus(vm.id.uid, { ...vm.status, state: 'created' }, 2);
      repo.saveStatus(vm.id.uid, { ...vm.status, state: 'created' }, 3); // unchanged: no event
      repo.saveStatus('missing', vm.status, 3);
      repo.markDeleting('missing', 3);
      const d = repo.markDeleting(vm.id.uid, 4);
      repo.remove(vm.id.uid);
      assert.ok(ins.inserted && s && d);
      assert.deepEqual(changes, [
        { kind: 'upsert', vm: ins.vm },
        { kind: 'upsert', vm: s },
        { kind: 'upsert', vm: d },
        { kind: 'removed', id: vm.id },
      ]);
    });

    it('calls listeners after commit, survives a throwing listener, and unsubscribes', () => {
      const vm = sampleVm();
      const seenInDb: unknown[] = [];
      const good: VmChange[] = [];
      repo.onChange(() => {
        throw new Error('bad listener');
      });
      const off = repo.onChange((c) => {
        good.push(c);
        // A fresh connection sees only committed data.
        const other = new Database(dbPath(), { readonly: true });
        try {
          seenInDb.push(other.prepare('SELECT version FROM microvms WHERE uid = ?').pluck().get(vm.id.uid));
        } finally {
          other.close();
        }
      });
      assert.ok(repo.insertUnlessExists(vm).inserted);
      assert.deepEqual(seenInDb, [1]);
      off();
      off();
      repo.markDeleting(vm.id.uid, 5);
      assert.equal(good.length, 1);
      assert.equal(repo.get(vm.id.uid)?.status.state, 'deleting');
    });

    it('a listener may unsubscribe itself while being notified', () => {
      const calls: string[] = [];
      const off = repo.onChange(() => {
        calls.push('a');
        off();
      });
      repo.onChange(() => calls.push('b'));
      repo.insertUnlessExists(sampleVm());
      repo.insertUnlessExists(sampleVm({ id: { name: 'x' } }));
      assert.deepEqual(calls, ['a', 'b', 'b']);
    });
  });

  describe('durability', () => {
    it('keeps everything across close and reopen', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      const saved = repo.saveStatus(
        vm.id.uid,
        { ...vm.status, state: 'created', interfaces: { eth0: { hostDeviceName: 'flmv1', index: 7, macAddress: '02:00:00:00:00:01' } } },
        9,
      );
      repo.recordDevice({ name: 'flmv1', vmUid: vm.id.uid, kind: 'macvtap', deviceId: 'eth0', createdAt: 8 });
      reopen();
      assert.deepEqual(repo.get(vm.id.uid), saved);
      assert.deepEqual(repo.queue(), [{ uid: vm.id.uid, dueAt: vm.createdAt }]);
      assert.equal(repo.devices(vm.id.uid).length, 1);
    });

    it('an acknowledged create survives the process being killed right after', () => {
      const stateDir = join(dir, 'crash');
      const repoUrl = pathToFileURL(join(REPO_ROOT, 'src/adapters/store/sqlite-repository.ts')).href;
      const fixturesUrl = pathToFileURL(join(REPO_ROOT, 'test/helpers/fixtures.ts')).href;
      const script = `
        const { SqliteMicroVMRepository } = await import(${JSON.stringify(repoUrl)});
        const { sampleVm } = await import(${JSON.stringify(fixturesUrl)});
        const repo = SqliteMicroVMRepository.open(process.env.STATE_DIR);
        const vm = sampleVm({ id: { uid: '01HGW2N7EHCRASHCRASHCRASH0' } });
        const out = repo.insertUnlessExists(vm);
        if (!out.inserted) process.exit(3);
        process.kill(process.pid, 'SIGKILL');
      `;
      const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: REPO_ROOT,
        env: { ...process.env, STATE_DIR: stateDir },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(child.signal, 'SIGKILL', `child did not die by SIGKILL: status=${child.status} stderr=${child.stderr}`);

      const after = SqliteMicroVMRepository.open(stateDir);
      try {
        const vm = after.get('01HGW2N7EHCRASHCRASHCRASH0');
        assert.ok(vm, 'the acknowledged VM is gone');
        assert.equal(vm.version, 1);
        assert.deepEqual(after.queue(), [{ uid: vm.id.uid, dueAt: vm.createdAt }]);
      } finally {
        after.close();
      }
    });

    it('a row that fails to parse is a hard error naming the uid', () => {
      const vm = sampleVm();
      repo.insertUnlessExists(vm);
      const raw = new Database(dbPath());
      try {
        raw.prepare('UPDATE microvms SET status = ? WHERE uid = ?').run('{not json', vm.id.uid);
      } finally {
        raw.close();
      }
      // As the next start of the daemon reads it (a running one keeps what it parsed, per version).
      reopen();
      assert.throws(() => repo.get(vm.id.uid), new RegExp(`microvm ${vm.id.uid}: stored status`));
      assert.throws(() => repo.list({}), new RegExp(vm.id.uid));
    });
  });

  describe('migrations', () => {
    it('numbers migrations 1..n and a fresh database ends at the latest', () => {
      assert.deepEqual(
        MIGRATIONS.map((m) => m.version),
        MIGRATIONS.map((_, i) => i + 1),
      );
      const raw = new Database(':memory:');
      try {
        assert.deepEqual(
          migrate(raw),
          MIGRATIONS.map((m) => m.version),
        );
        assert.equal(raw.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
        assert.deepEqual(migrate(raw), [], 'a second run is a no-op');
      } finally {
        raw.close();
      }
    });

    it('rolls back a failing step completely', () => {
      const raw = new Database(':memory:');
      try {
        const broken = [...MIGRATIONS, { version: LATEST_SCHEMA_VERSION + 1, description: 'broken', sql: 'CREATE TABLE t (x); SELECT nope FROM nowhere;' }];
        assert.throws(() => migrate(raw, broken), new RegExp(`schema migration ${LATEST_SCHEMA_VERSION + 1} \\(broken\\) failed`));
        assert.equal(raw.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
        assert.equal(raw.prepare("SELECT count(*) FROM sqlite_master WHERE name = 't'").pluck().get(), 0);
      } finally {
        raw.close();
      }
    });

    it('refuses a database written by a newer schema, without touching it', () => {
      const future = LATEST_SCHEMA_VERSION + 41;
      repo.close();
      const raw = new Database(dbPath());
      raw.pragma(`user_version = ${future}`);
      raw.pragma('journal_mode = DELETE');
      raw.close();

      assert.throws(
        () => SqliteMicroVMRepository.open(join(dir, 'state')),
        (e: unknown) => e instanceof SchemaVersionError && e.message.includes(`version ${future}`) && e.message.includes(`${LATEST_SCHEMA_VERSION}`),
      );
      const check = new Database(dbPath(), { readonly: true });
      try {
        assert.equal(check.pragma('user_version', { simple: true }), future);
        assert.equal(check.pragma('journal_mode', { simple: true }), 'delete');
      } finally {
        check.close();
      }
    });
  });
});

/** The status fields markDeleting must leave alone. */
function emptyLike(s: MicroVMStatus): Pick<MicroVMStatus, 'volumes' | 'interfaces' | 'vsockPath'> {
  return { volumes: s.volumes, interfaces: s.interfaces, vsockPath: s.vsockPath };
}

describe('durable(): the WAL fsynced off the event loop, one sync for many commits', () => {
  it('syncs the WAL for what was committed before the call; callers meanwhile share one more sync; a closed store refuses', async () => {
    const handleProto = Object.getPrototypeOf(await open(join(dir, 'state', `${DB_FILE_NAME}-wal`), 'r').then(async (h) => (await h.close(), h))) as {
      datasync: () => Promise<void>;
    };
    const original = handleProto.datasync;
    const synced: number[] = [];
    handleProto.datasync = async function (this: unknown) {
      synced.push(repo.queue().length);
      return original.call(this);
    };
    try {
      repo.insertUnlessExists(sampleVm({ id: { name: 'a' } }));
      const first = repo.durable();
      // Committed after the first sync started: covered by the next one, which all of these share.
      repo.insertUnlessExists(sampleVm({ id: { name: 'b' } }));
      const later = Array.from({ length: 10 }, () => repo.durable());
      await Promise.all([first, ...later]);
      assert.equal(synced.length, 2, `two syncs for eleven callers, got ${synced.length}`);
      await repo.durable();
      assert.equal(synced.length, 3, 'a call after the others have settled syncs again');
    } finally {
      handleProto.datasync = original;
    }
    repo.close();
    await assert.rejects(repo.durable(), /closed/);
  });
});
