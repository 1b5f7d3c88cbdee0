// flintlock.services.ext.v1alpha1.MicroVMWatch/WatchMicroVMs (docs/adr/0011): a snapshot, then
// every change and removal, each with its position in the daemon's change history so a client can
// resume. Each stream has a bounded backlog (../bounded-writer.ts); a client that falls further
// behind is cut off with RESOURCE_EXHAUSTED rather than buffered without end.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { ChangeJournal, ReplayItem } from '../../../core/change-journal.js';
import { DEFAULT_WATCH_BUFFER } from '../../../core/limits.js';
import type { MicroVM, VmId } from '../../../core/model.js';
import type { ListQuery, VmChange } from '../../../core/ports.js';
import { errorMessage } from '../../../core/result.js';
import { matches, type MicroVMService } from '../../../core/service.js';
import { MicroVMSchema } from '../../../gen/flintlock/types/microvm_pb.js';
import {
  MicroVMWatch,
  WatchEvent_Type as EventType,
  WatchEventSchema,
  type WatchEvent,
  type WatchMicroVMsRequest,
} from '../../../gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import type { TokenCheck } from '../auth.js';
import { listQuery, microvmToProto } from '../convert.js';
import type { ApiMetrics } from '../metrics.js';
import { BoundedWriter, type Backlog, type BacklogLimits } from '../bounded-writer.js';
import { authorizationOf, failStream, statusError } from './call.js';
import { encodeOnce } from './service-definition.js';

export const WATCH_SERVICE = MicroVMWatch.typeName;

/** Per client (DEFAULT_WATCH_BUFFER). On top of it grpc-js holds up to 16 messages and HTTP/2 a flow-control window. */
export const DEFAULT_WATCH_LIMITS: BacklogLimits = { maxMessages: DEFAULT_WATCH_BUFFER.events, maxBytes: DEFAULT_WATCH_BUFFER.bytes };

export interface WatchStats {
  readonly streams: number;
  readonly queuedMessages: number;
  readonly queuedBytes: number;
  /** The largest backlog any one stream has had. */
  readonly peakQueuedMessages: number;
  readonly peakQueuedBytes: number;
  readonly cutOffs: number;
}

type WatchCall = grpc.ServerWritableStream<WatchMicroVMsRequest, WatchEvent>;

/** How a stream ended (a cut-off is counted in flintlock_watch_cut_off_total). */
type Outcome = 'cancelled' | 'resource-exhausted' | 'unavailable' | 'internal';

function deletedVm(id: VmId): WatchEvent['microvm'] {
  return create(MicroVMSchema, { spec: { id: id.name, namespace: id.namespace, uid: id.uid } });
}

export class WatchHub {
  private readonly streams = new Set<WatchStream>();
  private peakMessages = 0;
  private peakBytes = 0;
  private cutOffs = 0;
  private readonly unsubscribe: () => void;
  private readonly unobserve: () => void;

  constructor(
    private readonly service: MicroVMService,
    private readonly journal: ChangeJournal,
    private readonly limits: BacklogLimits,
    private readonly metrics?: ApiMetrics,
  ) {
    this.unsubscribe = journal.subscribe((sequence, change) => this.dispatch(sequence, change));
    this.unobserve = metrics?.observeWatches(() => ({ streams: this.streams.size, queuedBytes: this.stats().queuedBytes })) ?? (() => undefined);
  }

  /** Starts a stream: the snapshot (or the replay of a resume), then live changes. */
  open(call: WatchCall): void {
    const request = call.request;
    const query = listQuery(request.namespace, request.name);
    // The snapshot (or replay) and the subscription happen in this one synchronous step: no change
    // can commit between them, so nothing is missed and nothing is sent twice.
    const initial = this.initialEvents(request, query);
    const stream = new WatchStream(call, query, this.limits, (outcome) => this.ended(stream, outcome));
    this.streams.add(stream);
    stream.start(initial);
  }

  stats(): WatchStats {
    let queuedMessages = 0;
    let queuedBytes = 0;
    for (const s of this.streams) {
      const b = s.backlog();
      queuedMessages += b.messages;
      queuedBytes += b.bytes;
    }
    return {
      streams: this.streams.size,
      queuedMessages,
      queuedBytes,
      peakQueuedMessages: this.peakMessages,
      peakQueuedBytes: this.peakBytes,
      cutOffs: this.cutOffs,
    };
  }

  /** Ends every stream with UNAVAILABLE (the daemon is stopping), so clients know to reconnect. */
  close(): void {
    this.unsubscribe();
    this.unobserve();
    for (const s of [...this.streams]) s.fail('unavailable', grpc.status.UNAVAILABLE, 'flintlockd is shutting down: reconnect to watch again');
  }

  private initialEvents(request: WatchMicroVMsRequest, query: ListQuery): Iterable<WatchEvent> {
    const epoch = this.journal.epoch;
    if (request.resumeEpoch !== '') {
      const replay = this.journal.replay(request.resumeEpoch, Number(request.resumeSequence), query);
      if (replay !== undefined) {
        const marker = create(WatchEventSchema, { type: EventType.SNAPSHOT_END, epoch, sequence: request.resumeSequence, resumed: true });
        return [marker, ...replay.map((item) => this.replayEvent(item))];
      }
    }
    const vms = this.service.list(query);
    const sequence = BigInt(this.journal.sequence);
    return (function* snapshot(): Generator<WatchEvent> {
      for (const vm of vms) yield create(WatchEventSchema, { type: EventType.SNAPSHOT, microvm: microvmToProto(vm), epoch, sequence });
      yield create(WatchEventSchema, { type: EventType.SNAPSHOT_END, epoch, sequence });
    })();
  }

  private replayEvent(item: ReplayItem): WatchEvent {
    return item.kind === 'upsert' ? this.updated(item.sequence, item.vm) : this.deleted(item.sequence, item.id);
  }

  private updated(sequence: number, vm: MicroVM): WatchEvent {
    return create(WatchEventSchema, { type: EventType.UPDATED, microvm: microvmToProto(vm), epoch: this.journal.epoch, sequence: BigInt(sequence) });
  }

  private deleted(sequence: number, id: VmId): WatchEvent {
    return create(WatchEventSchema, { type: EventType.DELETED, microvm: deletedVm(id), epoch: this.journal.epoch, sequence: BigInt(sequence) });
  }

  private dispatch(sequence: number, change: VmChange): void {
    const id = change.kind === 'upsert' ? change.vm.id : change.id;
    // One event object for every stream: converted once and, through the serializer's cache, encoded once.
    let event: WatchEvent | undefined;
    for (const s of [...this.streams]) {
      if (!matches(s.query, id.namespace, id.name)) continue;
      event ??= change.kind === 'upsert' ? this.updated(sequence, change.vm) : this.deleted(sequence, change.id);
      s.push(event);
      const b = s.backlog();
      this.peakMessages = Math.max(this.peakMessages, b.messages);
      this.peakBytes = Math.max(this.peakBytes, b.bytes);
    }
  }

  private ended(stream: WatchStream, outcome: Outcome): void {
    this.streams.delete(stream);
    if (outcome === 'resource-exhausted') {
      this.cutOffs += 1;
      this.metrics?.watchCutOffs();
    }
  }
}

class WatchStream {
  private readonly writer: BoundedWriter<WatchEvent>;
  private done = false;

  constructor(
    private readonly call: WatchCall,
    readonly query: ListQuery,
    private readonly limits: BacklogLimits,
    private readonly onEnd: (outcome: Outcome) => void,
  ) {
    this.writer = new BoundedWriter<WatchEvent>(
      call,
      limits,
      (event) => encodeOnce(WatchEventSchema, event).length,
      (backlog) => this.cutOff(backlog),
    );
    const cancelled = (): void => this.finish('cancelled');
    call.on('cancelled', cancelled);
    call.on('close', cancelled);
    // A write that fails (the connection went away) ends the call with an error of its own.
    call.on('error', () => this.finish('internal'));
  }

  start(initial: Iterable<WatchEvent>): void {
    // Gone before the handler ran: no 'cancelled' event will come to release the stream.
    if (this.call.cancelled) return this.finish('cancelled');
    this.writer.start(initial, { failed: (e) => this.fail('internal', grpc.status.INTERNAL, `internal error: ${errorMessage(e)}`) });
  }

  push(event: WatchEvent): void {
    if (!this.done) this.writer.push(event);
  }

  backlog(): Backlog {
    return this.writer.backlog();
  }

  /** Ends the stream with a status (sent after what grpc-js already holds for the client). */
  fail(outcome: Outcome, code: grpc.status, message: string): void {
    if (this.done) return;
    this.finish(outcome);
    failStream(this.call, statusError(code, message));
  }

  private cutOff(backlog: Backlog): void {
    const message =
      `watch cut off: the client fell behind (${backlog.messages} events, ${backlog.bytes} bytes waiting; ` +
      `the bound is ${this.limits.maxMessages} events or ${this.limits.maxBytes} bytes). ` +
      'Reconnect, with resume_epoch and resume_sequence from the last event received, to resume';
    this.fail('resource-exhausted', grpc.status.RESOURCE_EXHAUSTED, message);
  }

  private finish(outcome: Outcome): void {
    if (this.done) return;
    this.done = true;
    this.writer.stop();
    this.onEnd(outcome);
  }
}

/** The MicroVMWatch handlers; the token is checked first, as for the MicroVM service. */
export function watchHandlers(hub: WatchHub, check: TokenCheck): grpc.UntypedServiceImplementation {
  const watchMicroVMs: grpc.handleServerStreamingCall<WatchMicroVMsRequest, WatchEvent> = (call) => {
    const denied = check(authorizationOf(call.metadata));
    if (denied !== undefined) {
      failStream(call, denied);
      return;
    }
    hub.open(call);
  };
  return { watchMicroVMs };
}
