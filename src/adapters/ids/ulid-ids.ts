// VM uids: monotonic ULIDs (ulid's factory) drawing their randomness from a pooled buffer of
// crypto bytes. ulid's default source asks the kernel for one byte per character, 16 calls per
// id; under load that was half a millisecond of the event loop per Create (bench/load.ts profile).
import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';
import type { IdGenerator } from '../../core/ports.js';

const POOL_BYTES = 4096;

/** A source of uniform numbers in [0, 1) with 8 bits each, as ulid's PRNG contract asks, from crypto bytes. */
export function pooledCryptoRandom(): () => number {
  const pool = Buffer.alloc(POOL_BYTES);
  let next = POOL_BYTES;
  return () => {
    if (next === POOL_BYTES) {
      randomFillSync(pool);
      next = 0;
    }
    return (pool[next++] ?? 0) / 256;
  };
}

export function ulidIds(): IdGenerator {
  const nextUlid = monotonicFactory(pooledCryptoRandom());
  return { next: () => nextUlid() };
}
