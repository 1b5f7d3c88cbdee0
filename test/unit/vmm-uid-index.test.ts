import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { VmmUidIndex } from '../../src/core/vmm-uid-index.js';
import { sampleUid, sampleVm } from '../helpers/fixtures.js';

describe('VmmUidIndex', () => {
  let dir: string;
  let repo: SqliteMicroVMRepository;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'flintlock-uids-'));
    repo = SqliteMicroVMRepository.open(dir);
  });
  afterEach(() => {
    repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const stored = (name: string, vmmUid?: number): string => {
    const vm = sampleVm({
      id: { namespace: 'ns', name, uid: sampleUid() },
      ...(vmmUid !== undefined ? { status: { vmmIdentity: { uid: vmmUid, gid: vmmUid } } } : {}),
    });
    assert.ok(repo.insertUnlessExists(vm).inserted);
    return vm.id.uid;
  };

  it('knows the uids stored before it, and follows saves, changes and removals', () => {
    const a = stored('a', 1000);
    stored('b');
    const index = new VmmUidIndex(repo);
    assert.equal(index.has(1000), true);
    assert.equal(index.has(1001), false);
    // A status save that allocates is known at once (the same synchronous turn).
    const b = repo.list({ name: 'b' })[0];
    assert.ok(b !== undefined);
    repo.saveStatus(b.id.uid, { ...b.status, vmmIdentity: { uid: 1001, gid: 1001 } }, 1);
    assert.equal(index.has(1001), true);
    // A VM whose status keeps its identity holds it still; a removed one lets go.
    const current = repo.get(a);
    assert.ok(current !== undefined);
    repo.saveStatus(a, { ...current.status, retry: 2 }, 2);
    assert.equal(index.has(1000), true);
    repo.remove(a);
    assert.equal(index.has(1000), false);
    // Two VMs holding one uid (a store from before the index): free only when both let go.
    const c = stored('c', 1001);
    repo.remove(b.id.uid);
    assert.equal(index.has(1001), true);
    repo.remove(c);
    assert.equal(index.has(1001), false);
    index.close();
    stored('d', 1005);
    assert.equal(index.has(1005), false, 'closed: no longer follows the store');
  });
});
