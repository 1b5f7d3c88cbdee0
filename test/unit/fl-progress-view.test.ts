// What `--wait` prints: plain lines per change off a terminal; on one, a line updated in place
// that fits the terminal with its progress bar (the uid, then the image's path, give way first).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MicroVMSchema, MicroVMStatus_MicroVMState as State, type MicroVM } from '../../src/gen/flintlock/types/microvm_pb.js';
import { formatBytes, formatPull, progressBar, WaitView } from '../../src/cli/fl/progress-view.js';

const IMAGE = 'registry.example.com:5000/liquid-metal/images/ubuntu-kernel:6.1.74';

function vm(state: State, progress?: { step?: string; done?: number; total?: number }): MicroVM {
  return create(MicroVMSchema, {
    version: 1,
    spec: { uid: '01HGW2N7EH0000000000000001', id: 'worker-0', namespace: 'capmvm-system' },
    status: {
      state,
      reconcileStep: progress?.step ?? '',
      ...(progress?.done !== undefined ? { pullProgress: { image: IMAGE, bytesDone: BigInt(progress.done), bytesTotal: BigInt(progress.total ?? 0) } } : {}),
    },
  });
}

function capture(): { sink: { write: (t: string) => void }; text: () => string } {
  let text = '';
  return { sink: { write: (t: string) => void (text += t) }, text: () => text };
}

describe('progress formatting', () => {
  it('sizes, bars and pulls', () => {
    assert.equal(formatBytes(512 * 1024), '512.0 KiB');
    assert.equal(formatBytes(3 * 1024 * 1024 + 512 * 1024), '3.5 MiB');
    assert.equal(progressBar(50, 10), '[#####-----]');
    assert.equal(progressBar(0, 4), '[----]');
    const pull = vm(State.PENDING, { done: 1024 * 1024, total: 4 * 1024 * 1024 }).status?.pullProgress;
    assert.ok(pull);
    assert.equal(formatPull(pull), `${IMAGE} 1.0 MiB/4.0 MiB (25%)`);
    assert.equal(formatPull({ ...pull, bytesTotal: 0n }), `${IMAGE} 1.0 MiB`, 'no total, no percentage');
  });
});

describe('WaitView', () => {
  it('off a terminal: a plain line for each change, none for a repeat', () => {
    const out = capture();
    const view = new WaitView(out.sink, false);
    view.show(vm(State.PENDING));
    view.show(vm(State.PENDING));
    view.show(vm(State.PENDING, { step: 'kernel_image', done: 1024 * 1024, total: 4 * 1024 * 1024 }));
    view.show(vm(State.CREATED));
    assert.deepEqual(out.text().split('\n'), [
      'microvm capmvm-system/worker-0 (01HGW2N7EH0000000000000001): PENDING',
      `microvm capmvm-system/worker-0 (01HGW2N7EH0000000000000001): PENDING: step kernel_image, pulling ${IMAGE} 1.0 MiB/4.0 MiB (25%)`,
      'microvm capmvm-system/worker-0 (01HGW2N7EH0000000000000001): CREATED',
      '',
    ]);
  });

  it('on an 80-column terminal: one line rewritten in place, a bar kept; the uid, image path, step and byte counts give way', () => {
    const out = capture();
    const view = new WaitView(out.sink, true, 80);
    view.show(vm(State.PENDING, { step: 'kernel_image', done: 1024 * 1024, total: 4 * 1024 * 1024 }));
    view.show(vm(State.PENDING, { step: 'kernel_image', done: 3 * 1024 * 1024, total: 4 * 1024 * 1024 }));
    view.show(vm(State.CREATED));
    view.end();
    const [pending, created] = out.text().split('\n');
    const updates = (pending ?? '').split('\r\x1b[K').filter((u) => u !== '');
    assert.deepEqual(updates, [
      'capmvm-system/worker-0: PENDING: pulling ubuntu-kernel:6.1.74 [###-------] 25%',
      'capmvm-system/worker-0: PENDING: pulling ubuntu-kernel:6.1.74 [########--] 75%',
    ]);
    for (const u of updates) assert.ok(u.length < 80, `fits: ${u}`);
    assert.equal(created, '\r\x1b[Kmicrovm capmvm-system/worker-0 (01HGW2N7EH0000000000000001): CREATED');
  });

  it('on a 110-column terminal: the byte counts too; on a narrow one a cut line', () => {
    const out = capture();
    new WaitView(out.sink, true, 110).show(vm(State.PENDING, { step: 'kernel_image', done: 1024 * 1024, total: 4 * 1024 * 1024 }));
    assert.equal(out.text(), '\r\x1b[Kcapmvm-system/worker-0: PENDING: pulling ubuntu-kernel:6.1.74 [#####---------------] 1.0 MiB/4.0 MiB (25%)');
    const narrow = capture();
    new WaitView(narrow.sink, true, 40).show(vm(State.PENDING, { step: 'kernel_image', done: 1024 * 1024, total: 4 * 1024 * 1024 }));
    assert.equal(narrow.text(), '\r\x1b[Kcapmvm-system/worker-0: PENDING: pul...');
  });

  it('on a wide terminal: the whole line', () => {
    const out = capture();
    const view = new WaitView(out.sink, true, 250);
    view.show(vm(State.PENDING, { step: 'kernel_image', done: 1024 * 1024, total: 4 * 1024 * 1024 }));
    assert.equal(
      out.text(),
      `\r\x1b[Kmicrovm capmvm-system/worker-0 (01HGW2N7EH0000000000000001): PENDING: step kernel_image, pulling ${IMAGE} [#####---------------] 1.0 MiB/4.0 MiB (25%)`,
    );
  });
});
