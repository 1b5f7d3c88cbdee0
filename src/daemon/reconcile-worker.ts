// The reconcile worker thread's entry (ADR 0013): its own store connection, host networking,
// images and VMM providers, and the background work of background.ts. It hears of the API
// thread's commits and triggers, and tells it of its own commits, steps and image pulls.
import { parentPort, workerData } from 'node:worker_threads';
import { createDaemonLog } from '../adapters/log/logger.js';
import { Iproute2NetworkService } from '../adapters/network/iproute2.js';
import { SqliteMicroVMRepository } from '../adapters/store/sqlite-repository.js';
import { WriteLock } from '../adapters/store/write-lock.js';
import { startBackground, type RunningBackground } from './background.js';
import { CommitBatcher, type FromWorker, type ToWorker, type WorkerData } from './thread-messages.js';

const port = parentPort;
if (port === null) throw new Error('reconcile-worker.ts runs only as a worker thread');
const data = workerData as WorkerData;
const { log, reopen } = createDaemonLog(data.log);
const post = (message: FromWorker): void => port.postMessage(message);
// As on the main thread: a bug is logged, it does not stop every VM's supervision.
process.on('unhandledRejection', (reason) => log.error({ error: String(reason) }, 'unhandled rejection'));

const repo = SqliteMicroVMRepository.open(data.config.stateDir, { writeLock: new WriteLock(data.writeLock) });
const commits = new CommitBatcher((changes) => post({ type: 'committed', changes }));
repo.forwardCommits((change) => commits.add(change));
const network = new Iproute2NetworkService();
let background: RunningBackground | undefined;

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'committed':
      for (const change of message.changes) repo.applyCommitted(change);
      return;
    case 'trigger':
      // Before start-up ends nothing triggers (the API is not serving); the reconciler's start
      // reads the durable queue anyway.
      background?.trigger(message.uid);
      return;
    case 'cache-size':
      if (background === undefined) return post({ type: 'cache-size', id: message.id, error: 'starting' });
      background.cacheSize().then(
        (size) => post({ type: 'cache-size', id: message.id, size }),
        (e: unknown) => post({ type: 'cache-size', id: message.id, error: String(e) }),
      );
      return;
    case 'reopen-log':
      reopen();
      return;
    case 'stop':
      void (async () => {
        try {
          await background?.stop();
        } finally {
          commits.flush();
          network.close();
          repo.close();
          post({ type: 'stopped' });
          port.close();
        }
      })();
      return;
  }
});

try {
  background = await startBackground({
    config: data.config,
    log,
    repo,
    network,
    deviceOwner: data.deviceOwner,
    stepObserver: { stepDone: (kind, ms, outcome) => post({ type: 'step', kind, ms, outcome }) },
    imageObserver: {
      received: (bytes) => post({ type: 'image-received', bytes }),
      pulled: (outcome, seconds) => post({ type: 'image-pulled', outcome, seconds }),
    },
  });
  post({ type: 'ready' });
} catch (e) {
  network.close();
  repo.close();
  post({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
  port.close();
}
