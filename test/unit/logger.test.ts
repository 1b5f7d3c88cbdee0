// The daemon's log lines: JSON with level names and ISO times, text with every field on the
// event's line, and a log file reopened at its path (SIGHUP after logrotate).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDaemonLog } from '../../src/adapters/log/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'fl-logger-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const lines = (path: string): string[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '');

describe('daemon log', () => {
  it('writes JSON lines with the level name and an ISO-8601 time', () => {
    const file = join(dir, 'json.log');
    const { log } = createDaemonLog({ format: 'json', verbosity: 0, output: file });
    log.warn({ vmid: 'ns/vm/uid' }, 'something odd');
    const [line] = lines(file);
    const event = JSON.parse(line ?? '') as Record<string, unknown>;
    assert.equal(event['level'], 'warn');
    assert.match(String(event['time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(event['msg'], 'something odd');
    assert.equal(event['vmid'], 'ns/vm/uid');
  });

  it('writes one text line per event, the error on it too', () => {
    const file = join(dir, 'text.log');
    const { log } = createDaemonLog({ format: 'text', verbosity: 0, output: file });
    log.error({ vmid: 'ns/vm/uid', error: 'pulling x: cannot reach registry\nretrying' }, 'reconcile failed');
    log.info({}, 'next event');
    const got = lines(file);
    assert.equal(got.length, 2, got.join('\n'));
    assert.match(got[0] ?? '', /^\[.*\] ERROR: reconcile failed \{"vmid":"ns\/vm\/uid","error":"pulling x: cannot reach registry\\nretrying"\}$/);
  });

  it('reopens a log file at its path after it was moved away; stderr has nothing to reopen', () => {
    const file = join(dir, 'rotated.log');
    const { log, reopen } = createDaemonLog({ format: 'json', verbosity: 0, output: file });
    log.info({}, 'before rotation');
    renameSync(file, `${file}.1`);
    log.info({}, 'after the move, before reopening');
    assert.equal(reopen(), true);
    log.info({}, 'after reopening');
    const msgs = (path: string): unknown[] => lines(path).map((l) => (JSON.parse(l) as { msg: unknown }).msg);
    assert.deepEqual(msgs(`${file}.1`), ['before rotation', 'after the move, before reopening']);
    assert.deepEqual(msgs(file), ['after reopening']);
    assert.equal(createDaemonLog({ format: 'text', verbosity: 0, output: 'stderr' }).reopen(), false);
  });
});
