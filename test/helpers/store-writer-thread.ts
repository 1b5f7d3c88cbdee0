// A worker thread that writes VM statuses into a store as fast as it can, as the reconcile worker
// thread does (ADR 0013): for test/integration/store-two-threads.test.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { WriteLock } from '../../src/adapters/store/write-lock.js';

const { stateDir, uids, ms, lock } = workerData as { stateDir: string; uids: string[]; ms: number; lock?: SharedArrayBuffer };
const repo = SqliteMicroVMRepository.open(stateDir, lock !== undefined ? { writeLock: new WriteLock(lock) } : {});
let writes = 0;
const errors: string[] = [];
const until = Date.now() + ms;
while (Date.now() < until) {
  for (const uid of uids) {
    try {
      const vm = repo.get(uid);
      if (vm === undefined) continue;
      repo.saveStatus(uid, { ...vm.status, retry: vm.status.retry + 1 }, Date.now());
      repo.enqueue(uid, Date.now() + 1000);
      writes++;
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
}
repo.close();
parentPort?.postMessage({ writes, errors: errors.slice(0, 5), errorCount: errors.length });
