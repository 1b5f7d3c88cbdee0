// The debug endpoint's health answers: /readyz 503 (with the reason) until told the daemon serves,
// and again when told it stops; /healthz 503 until a check is set and whenever the check throws.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Registry } from 'prom-client';
import { startDebugServer, type DebugServer } from '../../src/daemon/debug-server.js';

let debug: DebugServer;
const get = async (path: string): Promise<[number, string]> => {
  const res = await fetch(`http://127.0.0.1:${debug.port}${path}`);
  return [res.status, await res.text()];
};

before(async () => {
  debug = await startDebugServer('127.0.0.1:0', new Registry());
});
after(() => debug.close());

it('answers /readyz 503 until the daemon serves, 200 then, 503 when it stops', async () => {
  assert.deepEqual(await get('/readyz'), [503, 'not ready: starting: the store is not open yet\n']);
  debug.setReady(false, 'starting: the API is not serving yet');
  assert.deepEqual(await get('/readyz'), [503, 'not ready: starting: the API is not serving yet\n']);
  debug.setReady(true);
  assert.deepEqual(await get('/readyz'), [200, 'ok\n']);
  debug.setReady(false, 'stopping');
  assert.deepEqual(await get('/readyz'), [503, 'not ready: stopping\n']);
});

it('answers /healthz with what the check finds', async () => {
  assert.equal((await get('/healthz'))[0], 503);
  let broken = false;
  debug.setHealthCheck(() => {
    if (broken) throw new Error('the database connection is not open');
  });
  assert.deepEqual(await get('/healthz'), [200, 'ok\n']);
  broken = true;
  assert.deepEqual(await get('/healthz'), [503, 'unhealthy: the database connection is not open\n']);
  assert.equal((await get('/nothing'))[0], 404);
});
