import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lastLines, TailLines } from '../../src/cli/fl/tail-lines.js';

describe('fl logs --tail: the last lines', () => {
  it('keeps the last n lines, a last line without its newline counting as one', () => {
    assert.equal(lastLines('a\nb\nc\n', 2), 'b\nc\n');
    assert.equal(lastLines('a\nb\nc', 2), 'b\nc');
    assert.equal(lastLines('a\nb\nc\n', 3), 'a\nb\nc\n');
    assert.equal(lastLines('a\nb\nc\n', 10), 'a\nb\nc\n');
    assert.equal(lastLines('a\nb\nc\n', 1), 'c\n');
    assert.equal(lastLines('\n', 1), '\n');
    assert.equal(lastLines('', 3), '');
  });

  it('asks for enough bytes for the lines (all of the log for 0), and passes text through after the first part', () => {
    const out: string[] = [];
    assert.equal(new TailLines(0, () => undefined).bytesToAsk, 0);
    assert.equal(new TailLines(20, () => undefined).bytesToAsk, 20 * 1024);
    assert.equal(new TailLines(1_000_000, () => undefined).bytesToAsk, 4 * 1024 * 1024);
    const tail = new TailLines(2, (t) => out.push(t));
    tail.write('partial li');
    tail.write('ne\nx\ny\nz\n');
    assert.deepEqual(out, []);
    tail.flush();
    assert.deepEqual(out, ['y\nz\n']);
    tail.write('later\n');
    assert.deepEqual(out, ['y\nz\n', 'later\n']);
    tail.stop();
  });

  it('without a tail, passes everything through at once', () => {
    const out: string[] = [];
    const tail = new TailLines(0, (t) => out.push(t));
    tail.write('a\nb\n');
    tail.flush();
    assert.deepEqual(out, ['a\nb\n']);
  });
});
