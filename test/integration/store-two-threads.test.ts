// Two connections to one store from two threads, as the daemon runs them (ADR 0013): the API
// thread's creates, deletes and intents and the reconcile thread's status writes interleave for
// real, and none of them may fail with SQLITE_BUSY ("database is locked"), lose the other's
// field (a delete's deleted_at), or go untold to the other side's listeners.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { WriteLock } from '../../src/adapters/store/write-lock.js';
import { sampleUid, sampleVm } from '../helpers/fixtures.js';
import { tsWorker } from '../helpers/ts-worker.js';

const WRITER = new URL('../helpers/store-writer-thread.ts', import.meta.url);

describe('the store with a second thread writing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fltest-store2-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('creates, deletes and intents of one thread and status writes of another all succeed, none undone', async () => {
    const lock = new WriteLock();
    const repo = SqliteMicroVMRepository.open(dir, { writeLock: lock });
    const seeded = Array.from({ length: 20 }, (_, i) => sampleVm({ id: { namespace: 'ns', name: `seed-${i}`, uid: sampleUid() } }));
    for (const vm of seeded) assert.ok(repo.insertUnlessExists(vm).inserted);
    const writer = tsWorker(WRITER, { workerData: { stateDir: dir, uids: seeded.map((v) => v.id.uid), ms: 1500, lock: lock.buffer } });
    const done = new Promise<{ writes: number; errors: string[]; errorCount: number }>((resolve, reject) => {
      writer.once('message', resolve);
      writer.once('error', reject);
    });
    const errors: string[] = [];
    let ours = 0;
    const until = Date.now() + 1500;
    // Every 5th VM is deleted while the other thread keeps writing its status.
    for (let i = 0; Date.now() < until; i++) {
      try {
        const vm = sampleVm({ id: { namespace: 'ns', name: `new-${i}`, uid: sampleUid() } });
        repo.insertUnlessExists(vm);
        const target = seeded[i % seeded.length];
        if (target !== undefined) {
          if (i % 5 === 0) repo.markDeleting(target.id.uid, Date.now());
          else repo.setIntent(target.id.uid, (current) => current, Date.now());
        }
        ours++;
      } catch (e) {
        errors.push((e as Error).message);
      }
      // Let the writer's notices and this loop's own timers breathe now and then.
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    const theirs = await done;
    assert.deepEqual(errors.slice(0, 5), [], `${errors.length} of this thread's writes failed`);
    assert.deepEqual(theirs.errors, [], `${theirs.errorCount} of the other thread's writes failed`);
    assert.ok(ours > 100 && theirs.writes > 100, `too little overlap to mean anything: ${ours} and ${theirs.writes} writes`);
    // The other thread's status writes never took back a delete.
    for (const [i, vm] of seeded.entries()) {
      if (i % 5 !== 0) continue;
      const now = repo.get(vm.id.uid);
      assert.ok(now?.deletedAt !== undefined && now.status.state === 'deleting', `${vm.id.name}: ${JSON.stringify(now?.status)}`);
    }
    repo.close();
  });

  it("tells this side's listeners of the other side's commits, once per version", () => {
    const a = SqliteMicroVMRepository.open(dir);
    const b = SqliteMicroVMRepository.open(dir);
    const toldB: string[] = [];
    b.onChange((c) => toldB.push(c.kind === 'upsert' ? `upsert ${c.vm.id.name} v${c.vm.version}` : `removed ${c.id.name}`));
    const forwarded: Parameters<SqliteMicroVMRepository['applyCommitted']>[0][] = [];
    a.forwardCommits((c) => forwarded.push(c.kind === 'upsert' ? { kind: 'upsert', uid: c.vm.id.uid } : { kind: 'removed', id: c.id }));
    const vm = sampleVm({ id: { namespace: 'ns', name: 'told', uid: sampleUid() } });
    a.insertUnlessExists(vm);
    const inserted = a.get(vm.id.uid);
    a.saveStatus(vm.id.uid, { ...(inserted?.status ?? vm.status), retry: 3 }, Date.now());
    // Both notices arrive after both commits: the second reads the same (latest) version.
    for (const c of forwarded.splice(0)) b.applyCommitted(c);
    const latest = b.get(vm.id.uid);
    assert.deepEqual(toldB, [`upsert told v${latest?.version}`]);
    a.remove(vm.id.uid);
    for (const c of forwarded.splice(0)) b.applyCommitted(c);
    assert.deepEqual(toldB.at(-1), 'removed told');
    a.close();
    b.close();
  });
});
