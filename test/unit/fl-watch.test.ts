// What `fl microvm list --watch` prints across reconnects: the first list, changes, deletions;
// after a resume only the replay; after a fresh snapshot only what differs from what it knew.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MicroVMSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import { WatchEvent_Type as Type, WatchEventSchema, type WatchEvent } from '../../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { Backoff, WatchState } from '../../src/cli/fl/watch.js';

function event(type: Type, uid?: string, version = 1, extra: Partial<{ epoch: string; sequence: bigint; resumed: boolean }> = {}): WatchEvent {
  return create(WatchEventSchema, {
    type,
    epoch: extra.epoch ?? 'e1',
    sequence: extra.sequence ?? 1n,
    resumed: extra.resumed ?? false,
    ...(uid !== undefined ? { microvm: create(MicroVMSchema, { version, spec: { uid, id: `name-${uid}`, namespace: 'ns' }, status: {} }) } : {}),
  });
}

function lines(state: WatchState, ...events: WatchEvent[]): string[] {
  return events.flatMap((e) => state.apply(e)).map((l) => `${l.type} ${l.vm.spec?.uid ?? ''} v${l.vm.version}`);
}

function eventNames(state: WatchState, ...events: WatchEvent[]): string[] {
  return events.flatMap((e) => state.apply(e)).map((l) => `${l.event} ${l.vm.spec?.uid ?? ''}`);
}

describe('WatchState', () => {
  it('prints the first list, then changes and deletions; remembers the position', () => {
    const state = new WatchState();
    assert.equal(state.position(), undefined);
    assert.deepEqual(lines(state, event(Type.SNAPSHOT, 'a'), event(Type.SNAPSHOT, 'b'), event(Type.SNAPSHOT_END)), ['SNAPSHOT a v1', 'SNAPSHOT b v1']);
    assert.deepEqual(lines(state, event(Type.UPDATED, 'a', 2, { sequence: 5n })), ['UPDATED a v2']);
    // A deletion carries only ids: the last state seen is printed.
    const deleted = create(WatchEventSchema, { type: Type.DELETED, epoch: 'e1', sequence: 6n, microvm: { spec: { uid: 'b' } } });
    assert.deepEqual(lines(state, deleted), ['DELETED b v1']);
    assert.deepEqual(state.position(), { epoch: 'e1', sequence: 6n });
  });

  it('after a resume prints only the replay', () => {
    const state = new WatchState();
    lines(state, event(Type.SNAPSHOT, 'a'), event(Type.SNAPSHOT_END));
    assert.deepEqual(lines(state, event(Type.SNAPSHOT_END, undefined, 1, { resumed: true }), event(Type.UPDATED, 'a', 3)), ['UPDATED a v3']);
  });

  it('after a fresh snapshot prints what differs, and what is missing as deleted', () => {
    const state = new WatchState();
    lines(state, event(Type.SNAPSHOT, 'same'), event(Type.SNAPSHOT, 'changed'), event(Type.SNAPSHOT, 'gone'), event(Type.SNAPSHOT_END));
    assert.deepEqual(
      lines(state, event(Type.SNAPSHOT, 'same', 1, { epoch: 'e2' }), event(Type.SNAPSHOT, 'changed', 2), event(Type.SNAPSHOT, 'new'), event(Type.SNAPSHOT_END)),
      ['UPDATED changed v2', 'UPDATED new v1', 'DELETED gone v1'],
    );
    assert.deepEqual(lines(state, event(Type.SNAPSHOT_END)), ['DELETED same v1', 'DELETED changed v2', 'DELETED new v1'], 'an empty snapshot: all gone');
  });
});

describe('WatchState events (the EVENT column)', () => {
  it('says ADDED for a VM new to the list, MODIFIED for a change, DELETED for a deletion', () => {
    const state = new WatchState();
    assert.deepEqual(eventNames(state, event(Type.SNAPSHOT, 'a'), event(Type.SNAPSHOT_END)), ['ADDED a']);
    assert.deepEqual(eventNames(state, event(Type.UPDATED, 'b'), event(Type.UPDATED, 'b', 2), event(Type.UPDATED, 'a', 2)), [
      'ADDED b',
      'MODIFIED b',
      'MODIFIED a',
    ]);
    assert.deepEqual(eventNames(state, event(Type.DELETED, 'b', 3)), ['DELETED b']);
    // After a fresh snapshot (the daemon restarted): a VM it did not know is ADDED, one it did MODIFIED.
    assert.deepEqual(eventNames(state, event(Type.SNAPSHOT, 'a', 3, { epoch: 'e2' }), event(Type.SNAPSHOT, 'c', 1), event(Type.SNAPSHOT_END)), [
      'MODIFIED a',
      'ADDED c',
    ]);
  });
});

describe('Backoff', () => {
  it('doubles up to its cap and starts over after a reset', () => {
    const b = new Backoff(100, 500);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 500, 500]);
    b.reset();
    assert.equal(b.next(), 100);
  });
});
