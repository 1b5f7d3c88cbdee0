import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeTime, isValid } from 'ulid';
import { pooledCryptoRandom, ulidIds } from '../../src/adapters/ids/ulid-ids.js';

describe('ulid ids from pooled crypto bytes', () => {
  it('gives valid, unique, increasing ULIDs with the current time', () => {
    const ids = ulidIds();
    const before = Date.now();
    const made = Array.from({ length: 10_000 }, () => ids.next());
    assert.ok(made.every((id) => isValid(id)));
    assert.equal(new Set(made).size, made.length);
    assert.deepEqual([...made].sort(), made, 'monotonic');
    const t = decodeTime(made[0] ?? '');
    assert.ok(t >= before && t <= Date.now());
  });

  it('draws 8-bit values in [0, 1) past the end of its pool, every value about as often', () => {
    const random = pooledCryptoRandom();
    const counts = new Array<number>(256).fill(0);
    const n = 256 * 400; // many pools' worth
    for (let i = 0; i < n; i++) {
      const v = random();
      assert.ok(v >= 0 && v < 1 && Number.isInteger(v * 256));
      counts[v * 256] = (counts[v * 256] ?? 0) + 1;
    }
    // 400 expected per value: far outside [250, 550] only if the bytes are not uniform.
    assert.ok(Math.min(...counts) > 250 && Math.max(...counts) < 550, `counts ${Math.min(...counts)}..${Math.max(...counts)}`);
  });
});
