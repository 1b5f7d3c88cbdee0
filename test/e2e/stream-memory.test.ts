// Stream clients that stop reading cost the real daemon (bin/flintlockd) at most their buffer
// (issue 9, ADR 0011). In a test network namespace (a bridge br0; VMs whose images cannot be
// pulled, so each fails at once after making its tap): two WatchMicroVMs clients and a
// ListMicroVMsStream client read a little, then stop, while create/delete cycles of VMs carrying
// METADATA_BYTES of metadata each run. The daemon's RSS may pass what the same cycles cost without
// stalled clients by no more than what the configured watch buffer allows for them, and each
// stalled watch is cut off with RESOURCE_EXHAUSTED; the list stream still ends with every VM.
//
// What the stalled clients may hold: per watch, `watch-buffer-size` plus what grpc-js (16
// messages and the one being written) and HTTP/2 (a flow-control window) hold beyond it; for the
// list stream the same messages and window, plus the VMs it lists. The allowance is four times
// that: each held event is there twice (the message and its encoding), and V8 lets the heap grow
// to about twice what is live before a full collection. Raise `watch-buffer-size` far above what
// the cycles send (STREAM_MEMORY_WATCH_BUFFER=4GiB) and the test fails: no cut-off, and the
// backlog grows with every event; a daemon that ignored the bound would fail the RSS check too.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { status as grpcStatus, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { NetworkInterface_IfaceType as IfaceType, type MicroVMSpec } from '../../src/gen/flintlock/types/microvm_pb.js';
import { WatchEvent_Type as EventType, type WatchEvent } from '../../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import type { ListMessage } from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { makeTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { capmvmSpec, TestClient } from '../helpers/grpc-client.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, NETNS } from '../helpers/prerequisites.js';
import { atExit } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;
/** Per VM, base64 as sent: every event about a VM carries it. */
const METADATA_BYTES = 256 * 1024;
/** The configured bound; STREAM_MEMORY_WATCH_BUFFER=4GiB shows the test failing without it. */
const WATCH_BUFFER = process.env.STREAM_MEMORY_WATCH_BUFFER ?? '1MiB';
const WATCH_BUFFER_BYTES = (() => {
  const m = /^(\d+)(MiB|GiB)$/.exec(WATCH_BUFFER);
  assert.ok(m !== null, `STREAM_MEMORY_WATCH_BUFFER must be <n>MiB or <n>GiB, not ${WATCH_BUFFER}`);
  return Number(m[1]) * (m[2] === 'GiB' ? 1024 * MiB : MiB);
})();
/** grpc-js's writable high-water mark (messages) plus the one write that returned false. */
const GRPC_HELD_MESSAGES = 17;
/** A generous HTTP/2 flow-control window held for a client that stopped reading. */
const HTTP2_WINDOW = 4 * MiB;
const CYCLES = 100;
const CONCURRENCY = 4;
const LISTED_VMS = 12;

function rssBytes(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN) * 1024;
}

describeWith('stream clients that stop reading (real daemon)', [NETNS], { timeout: 150_000 }, () => {
  let lab: TestNetns;
  let daemon: DaemonHandle;
  let client: TestClient;
  let pid: number;
  const metadata = randomBytes((METADATA_BYTES * 3) / 4).toString('base64');

  const spec = (name: string): MicroVMSpec => {
    const s = capmvmSpec(name);
    s.namespace = 'churn';
    for (const iface of s.interfaces) iface.type = IfaceType.TAP;
    s.metadata['user-data'] = metadata;
    return s;
  };

  /** CYCLES creates and deletes, CONCURRENCY at a time; RSS sampled meanwhile; the peak. */
  async function churn(tag: string): Promise<number> {
    let peak = rssBytes(pid);
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 100);
    let next = 0;
    const loop = async (): Promise<void> => {
      for (let i = next++; i < CYCLES; i = next++) {
        const vm = await client.create(spec(`${tag}-${i}`));
        await client.delete(vm.spec?.uid ?? '');
      }
    };
    try {
      await Promise.all(Array.from({ length: CONCURRENCY }, loop));
      // While many are still being deleted their metadata makes the list larger than a client
      // accepts (RESOURCE_EXHAUSTED): that too means not gone yet.
      const gone = async (): Promise<boolean> => {
        try {
          return (await client.list('churn')).length === 0;
        } catch (e) {
          if ((e as ServiceError).code === grpcStatus.RESOURCE_EXHAUSTED) return false;
          throw e;
        }
      };
      await waitFor('the churned VMs to be gone', gone, 60_000, 200);
    } finally {
      clearInterval(sampler);
    }
    return Math.max(peak, rssBytes(pid));
  }

  before(async () => {
    lab = createTestNetns('flstrm');
    const dir = makeTempDir('fl-stream-mem-');
    daemon = await startDaemon({
      netns: lab.name,
      dir,
      config: { 'bridge-name': 'br0', 'maximum-retry': 0, verbosity: 0, 'watch-buffer-size': WATCH_BUFFER, 'watch-buffer-events': 1 << 24 },
    });
    atExit(() => {
      lab.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    pid = daemon.process.pid ?? 0;
    client = new TestClient(daemon.endpoint, { channelOptions: { 'grpc.max_receive_message_length': 64 * MiB } });
  });

  after(async () => {
    client?.close();
    await daemon?.stop();
  });

  it('keeps the daemon within the buffers of the stalled clients and cuts the stalled watches off with RESOURCE_EXHAUSTED', async () => {
    // The same churn with no stalled client first, twice: the first brings the heap to its working
    // size, the second is what the churn costs the daemon by itself.
    await churn('warm');
    const alone = await churn('alone');

    // VMs for the list stream to list, kept while the others churn.
    const listed = [];
    for (let i = 0; i < LISTED_VMS; i++) listed.push(await client.create(Object.assign(spec(`listed-${i}`), { namespace: 'kept' })));

    // Two watches that read the snapshot, then stop (grpc-js then stops reading the HTTP/2 stream;
    // one never read at all would buffer without bound on the client side instead).
    const watches = [0, 1].map(() => {
      const stream: ClientReadableStream<WatchEvent> = client.watch({});
      const state = { received: 0, snapshotDone: false, error: undefined as ServiceError | undefined, stream };
      stream.on('data', (e: WatchEvent) => {
        state.received += 1;
        if (e.type === EventType.SNAPSHOT_END) {
          state.snapshotDone = true;
          stream.pause();
        }
      });
      stream.on('error', (e: ServiceError) => (state.error = e));
      return state;
    });
    // A list stream that reads one VM, then stops.
    const list: ClientReadableStream<ListMessage> = client.stream('kept');
    const listState = { received: 0, ended: false, error: undefined as ServiceError | undefined };
    list.on('data', () => {
      listState.received += 1;
      if (listState.received === 1) list.pause();
    });
    list.on('end', () => (listState.ended = true));
    list.on('error', (e: ServiceError) => (listState.error = e));
    await waitFor('the watches to read their snapshots', () => watches.every((w) => w.snapshotDone), 10_000);
    await waitFor('the list stream to send its first VM', () => listState.received === 1, 10_000);

    const stalled = await churn('stalled');

    const event = METADATA_BYTES + 4096; // the largest event: a VM with its metadata
    const held =
      watches.length * (WATCH_BUFFER_BYTES + GRPC_HELD_MESSAGES * event + HTTP2_WINDOW) + GRPC_HELD_MESSAGES * event + HTTP2_WINDOW + LISTED_VMS * event;
    const allowance = 4 * held;
    const mb = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
    const figures = `RSS peak ${mb(alone)} churning alone, ${mb(stalled)} with the stalled clients; allowance ${mb(allowance)} (watch-buffer-size ${WATCH_BUFFER})`;
    console.log(figures);
    assert.ok(stalled - alone <= allowance, `the daemon grew past the stalled clients' buffers: ${figures}`);

    // The watches catch up: what was sent, then the cut-off; the list stream ends with every VM.
    for (const w of watches) w.stream.resume();
    list.resume();
    await waitFor('the stalled watches to be cut off', () => watches.every((w) => w.error !== undefined), 20_000);
    for (const w of watches) {
      assert.equal(w.error?.code, grpcStatus.RESOURCE_EXHAUSTED, `watch ended with ${w.error?.code}: ${w.error?.details}`);
      assert.match(w.error?.details ?? '', /watch cut off: the client fell behind/);
    }
    await waitFor('the list stream to end', () => listState.ended || listState.error !== undefined, 20_000);
    assert.equal(listState.error, undefined);
    assert.equal(listState.received, LISTED_VMS);
    for (const vm of listed) await client.delete(vm.spec?.uid ?? '');
  });
});
