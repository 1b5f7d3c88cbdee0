// The per-stream backlog behind watches and paced list streams: writes while the sink accepts,
// queues (bounded) while it does not, flushes on 'drain', gives up past the bound.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { BoundedWriter, sendPaced, type Backlog } from '../../src/adapters/api/bounded-writer.js';

/** A sink that accepts `room` messages, then reports full until drained. */
class FakeSink extends EventEmitter {
  readonly written: string[] = [];
  constructor(private room: number) {
    super();
  }
  write(message: string): boolean {
    this.written.push(message);
    this.room -= 1;
    return this.room > 0;
  }
  drain(room: number): void {
    this.room = room;
    this.emit('drain');
  }
}

describe('BoundedWriter', () => {
  it('sends the initial messages first, pulling them only as the sink drains', () => {
    const sink = new FakeSink(2);
    const writer = new BoundedWriter<string>(
      sink,
      { maxMessages: 10, maxBytes: 1000 },
      (m) => m.length,
      () => assert.fail('no overflow'),
    );
    let pulled = 0;
    function* initial(): Generator<string> {
      for (const m of ['s1', 's2', 's3', 'end']) {
        pulled += 1;
        yield m;
      }
    }
    writer.push('early');
    writer.start(initial());
    assert.deepEqual(sink.written, ['s1', 's2']);
    assert.equal(pulled, 2, 'the rest is not converted yet');
    writer.push('live1');
    assert.deepEqual(writer.backlog(), { messages: 2, bytes: 10 });
    sink.drain(10);
    assert.deepEqual(sink.written, ['s1', 's2', 's3', 'end', 'early', 'live1']);
    assert.deepEqual(writer.backlog(), { messages: 0, bytes: 0 });
    writer.push('live2');
    assert.equal(sink.written.at(-1), 'live2', 'written at once while the sink has room');
  });

  it('gives up, once, when the backlog would pass its bound in messages or bytes', () => {
    // Eight-byte messages: three fit either bound, the fourth passes it.
    for (const limits of [
      { maxMessages: 3, maxBytes: 1000 },
      { maxMessages: 100, maxBytes: 25 },
    ]) {
      const sink = new FakeSink(1);
      const overflows: Backlog[] = [];
      const writer = new BoundedWriter<string>(
        sink,
        limits,
        (m) => m.length,
        (b) => overflows.push(b),
      );
      writer.start([]);
      writer.push('first-msg'); // fills the sink
      for (let i = 0; i < 9; i++) writer.push(`queued-${i}`);
      assert.deepEqual(overflows, [{ messages: 4, bytes: 32 }], 'once, with the backlog that passed the bound');
      const backlog = writer.backlog();
      assert.deepEqual(backlog, { messages: 0, bytes: 0 }, 'dropped');
      sink.drain(100);
      assert.deepEqual(sink.written, ['first-msg'], 'nothing more is sent');
    }
  });

  it('sendPaced writes everything as the sink drains, then calls back once', () => {
    const sink = new FakeSink(2);
    let done = 0;
    sendPaced(
      sink,
      ['a', 'b', 'c', 'd', 'e'],
      () => (done += 1),
      () => assert.fail('no failure'),
    );
    assert.deepEqual(sink.written, ['a', 'b']);
    assert.equal(done, 0);
    sink.drain(2);
    sink.drain(5);
    assert.deepEqual(sink.written, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(done, 1);
    assert.equal(sink.listenerCount('drain'), 0);
  });

  it('sendPaced stops early when told to', () => {
    const sink = new FakeSink(1);
    let done = 0;
    const stop = sendPaced(
      sink,
      ['a', 'b'],
      () => (done += 1),
      () => assert.fail('no failure'),
    );
    stop();
    sink.drain(5);
    assert.deepEqual(sink.written, ['a']);
    assert.equal(done, 0);
  });

  it('reports a message that cannot be produced, from a drain too, instead of throwing', () => {
    const sink = new FakeSink(1);
    const failures: unknown[] = [];
    function* broken(): Generator<string> {
      yield 'fine';
      throw new Error('conversion failed');
    }
    sendPaced(
      sink,
      broken(),
      () => assert.fail('not sent'),
      (e) => failures.push(e),
    );
    assert.doesNotThrow(() => sink.drain(5));
    assert.deepEqual(sink.written, ['fine']);
    assert.equal(failures.length, 1);
    assert.equal(sink.listenerCount('drain'), 0);
  });
});
