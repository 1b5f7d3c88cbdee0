import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FairShare } from '../../src/core/fair-share.js';

describe('FairShare', () => {
  it('charges use per namespace and lets it decay with the half-life', () => {
    const share = new FairShare(10_000);
    assert.equal(share.usage('a', 0), 0, 'never charged');
    share.charge('a', 100, 0);
    share.charge('a', 100, 0);
    assert.equal(share.usage('a', 0), 200);
    assert.equal(share.usage('a', 10_000), 100, 'half after one half-life');
    assert.equal(share.usage('a', 20_000), 50);
    share.charge('a', 50, 20_000);
    assert.equal(share.usage('a', 20_000), 100, 'a new charge adds to the decayed use');
    assert.equal(share.usage('b', 20_000), 0, 'namespaces are charged separately');
    share.charge('b', -5, 0);
    assert.equal(share.usage('b', 0), 0, 'a negative amount charges nothing');
  });

  it('forgets namespaces whose use has decayed away once the table grows', () => {
    const share = new FairShare(1000);
    for (let i = 0; i < 1100; i++) share.charge(`ns-${i}`, 1, 0);
    share.charge('recent', 1, 60_000);
    assert.equal(share.usage('recent', 60_000), 1);
    assert.equal(share.usage('ns-0', 60_000), 0);
  });
});
