// The change history behind resumable watches: numbered changes, replay of what changed since a
// position (each VM once, as it is now), and refusal when the history no longer reaches back.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ChangeJournal } from '../../src/core/change-journal.js';
import { emptyStatus, type MicroVM } from '../../src/core/model.js';
import { createTestService } from '../helpers/service.js';

const svc = createTestService('fl-journal-');
after(() => svc.close());

let n = 0;
function insert(namespace: string, name: string): MicroVM {
  n += 1;
  const uid = `01J0000000000000000000${String(n).padStart(4, '0')}`;
  const vm: MicroVM = {
    id: { namespace, name, uid },
    version: 1,
    spec: {} as MicroVM['spec'],
    status: emptyStatus(),
    createdAt: Date.now(),
    updatedAt: Date.now(),
  };
  const outcome = svc.repo.insertUnlessExists(vm);
  assert.ok(outcome.inserted);
  return outcome.vm;
}

function bump(vm: MicroVM, retry: number): void {
  svc.repo.saveStatus(vm.id.uid, { ...vm.status, retry }, Date.now());
}

describe('ChangeJournal', () => {
  it('numbers changes and tells subscribers', () => {
    const journal = new ChangeJournal(svc.service, 'e1');
    const seen: number[] = [];
    const unsubscribe = journal.subscribe((sequence) => seen.push(sequence));
    assert.equal(journal.sequence, 0);
    const vm = insert('j1', 'a');
    bump(vm, 1);
    assert.deepEqual(seen, [1, 2]);
    unsubscribe();
    bump(vm, 2);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(journal.sequence, 3);
    journal.close();
  });

  it('replays each changed VM once, in the order of its latest change, filtered', () => {
    const journal = new ChangeJournal(svc.service, 'e2');
    const a = insert('j2', 'a');
    const b = insert('j2', 'b');
    const from = journal.sequence;
    bump(a, 1);
    bump(b, 1);
    insert('other', 'x');
    bump(a, 2);
    svc.repo.remove(b.id.uid);
    const replay = journal.replay('e2', from, { namespace: 'j2' });
    assert.deepEqual(
      replay?.map((r) => [r.kind, r.sequence, r.kind === 'upsert' ? r.vm.status.retry : r.id.uid]),
      [
        ['upsert', from + 4, 2],
        ['removed', from + 5, b.id.uid],
      ],
    );
    assert.deepEqual(journal.replay('e2', journal.sequence, {}), [], 'nothing since the latest position');
    journal.close();
  });

  it('refuses another epoch, a position from the future, and one the history no longer reaches', () => {
    const journal = new ChangeJournal(svc.service, 'e3', 4);
    const vm = insert('j3', 'a');
    assert.ok(journal.replay('e3', 0, {}) !== undefined);
    assert.equal(journal.replay('other', 0, {}), undefined);
    assert.equal(journal.replay('e3', 5, {}), undefined);
    for (let i = 1; i <= 5; i++) bump(vm, i);
    assert.equal(journal.sequence, 6);
    assert.equal(journal.replay('e3', 1, {}), undefined, 'sequence 2 was overwritten');
    assert.equal(journal.replay('e3', 2, {})?.length, 1, 'sequences 3-6 are kept');
    journal.close();
  });
});
