// A worker thread running a TypeScript file of this repo: a worker does not inherit tsx's loader
// (`node --import tsx`), so it registers it before importing the file.
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function tsWorker(file: URL, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  const code = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(file.href)}); })`;
  return new Worker(code, { ...options, eval: true });
}
