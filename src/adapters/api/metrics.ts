// API metrics in the shape of go-grpc-prometheus (the Go original's), so existing dashboards keep
// working: grpc_server_started_total, grpc_server_handled_total (grpc_code spelled as Go's
// codes.Code String(): "OK", "InvalidArgument", "Canceled"), grpc_server_msg_received_total,
// grpc_server_msg_sent_total, and the grpc_server_handling_seconds histogram (default buckets),
// counted by one server interceptor for every service on the port, and made to exist at zero for
// every method and code before the first call (InitializeMetrics). The HTTP gateway counts into
// http_server_handled_total with the same labels. Watches (our extension service) add gauges of
// their open streams and buffered bytes, and a counter of clients cut off for falling behind.
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ALL_GO_CODE_NAMES, goCodeName } from './grpc-codes.js';

export const MICROVM_SERVICE = 'microvm.services.api.v1alpha1.MicroVM';

/** What a watch hub reports; summed over every hub (one per gRPC server). */
export interface WatchGauges {
  readonly streams: number;
  readonly queuedBytes: number;
}

type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

interface MethodShape {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

function grpcType(method: MethodShape): GrpcType {
  if (!method.requestStream) return method.responseStream ? 'server_stream' : 'unary';
  return method.responseStream ? 'bidi_stream' : 'client_stream';
}

/** `/pkg.Service/Method` as go-grpc-prometheus splits it. */
function methodLabels(method: MethodShape): { grpc_type: GrpcType; grpc_service: string; grpc_method: string } {
  const [service = 'unknown', name = 'unknown'] = method.path.replace(/^\//, '').split('/');
  return { grpc_type: grpcType(method), grpc_service: service, grpc_method: name };
}

const METHOD_LABELS = ['grpc_type', 'grpc_service', 'grpc_method'] as const;

interface MethodCounters {
  readonly started: { inc(): void };
  readonly received: { inc(): void };
  readonly sent: { inc(): void };
  readonly seconds: { observe(value: number): void };
  handled(code: number): { inc(): void };
}

export class ApiMetrics {
  readonly registry: Registry;
  private readonly watchSources = new Set<() => WatchGauges>();
  private readonly grpcStarted: Counter<(typeof METHOD_LABELS)[number]>;
  private readonly grpcHandled: Counter<(typeof METHOD_LABELS)[number] | 'grpc_code'>;
  private readonly grpcReceived: Counter<(typeof METHOD_LABELS)[number]>;
  private readonly grpcSent: Counter<(typeof METHOD_LABELS)[number]>;
  private readonly grpcSeconds: Histogram<(typeof METHOD_LABELS)[number]>;
  private readonly httpHandled: Counter<'grpc_service' | 'grpc_method' | 'grpc_code'>;
  private readonly watchCutOff: Counter;
  private readonly methodCounters = new Map<string, MethodCounters>();

  constructor(withProcessMetrics = true, registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    if (withProcessMetrics) collectDefaultMetrics({ register: registry });
    this.grpcStarted = new Counter({
      name: 'grpc_server_started_total',
      help: 'Total number of RPCs started on the server.',
      labelNames: METHOD_LABELS,
      registers,
    });
    this.grpcHandled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: [...METHOD_LABELS, 'grpc_code'],
      registers,
    });
    this.grpcReceived = new Counter({
      name: 'grpc_server_msg_received_total',
      help: 'Total number of RPC stream messages received on the server.',
      labelNames: METHOD_LABELS,
      registers,
    });
    this.grpcSent = new Counter({
      name: 'grpc_server_msg_sent_total',
      help: 'Total number of gRPC stream messages sent by the server.',
      labelNames: METHOD_LABELS,
      registers,
    });
    // prom-client's default buckets are Prometheus' DefBuckets, as go-grpc-prometheus uses.
    this.grpcSeconds = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
      labelNames: METHOD_LABELS,
      registers,
    });
    this.httpHandled = new Counter({
      name: 'http_server_handled_total',
      help: 'Total number of HTTP gateway requests completed, by method and outcome.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.watchCutOff = new Counter({
      name: 'flintlock_watch_cut_off_total',
      help: 'Watch streams ended with RESOURCE_EXHAUSTED because the client fell too far behind.',
      registers,
    });
    const sum = (pick: (g: WatchGauges) => number): number => [...this.watchSources].reduce((total, source) => total + pick(source()), 0);
    const gauges: Array<[string, string, (g: WatchGauges) => number]> = [
      ['flintlock_watch_streams', 'Open WatchMicroVMs streams.', (g) => g.streams],
      ['flintlock_watch_queued_bytes', 'Bytes of watch events waiting for slow clients to read (bounded per client).', (g) => g.queuedBytes],
    ];
    for (const [name, help, pick] of gauges) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(sum(pick));
        },
      });
    }
  }

  /** Every method of a service at zero, for every code (go-grpc-prometheus' InitializeMetrics). */
  initializeService(definition: grpc.ServiceDefinition): void {
    for (const method of Object.values(definition)) {
      const labels = methodLabels(method);
      this.grpcStarted.inc(labels, 0);
      this.grpcReceived.inc(labels, 0);
      this.grpcSent.inc(labels, 0);
      this.grpcSeconds.zero(labels);
      for (const code of ALL_GO_CODE_NAMES) this.grpcHandled.inc({ ...labels, grpc_code: code }, 0);
    }
  }

  /**
   * Counts every call on the server: started, messages each way, and the status it ended with
   * (a call the client cancelled before any status counts as Canceled, as a Go handler returns).
   */
  readonly interceptor: grpc.ServerInterceptor = (method, call) => {
    const counters = this.countersOf(method);
    const started = process.hrtime.bigint();
    let handled = false;
    const finish = (code: number): void => {
      if (handled) return;
      handled = true;
      counters.handled(code).inc();
      counters.seconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    };
    counters.started.inc();
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMessage: (message, forward) => {
            counters.received.inc();
            forward(message);
          },
          onCancel: () => finish(grpc.status.CANCELLED),
        });
      },
      sendMessage: (message, next) => {
        counters.sent.inc();
        next(message);
      },
      sendStatus: (status, next) => {
        finish(status.code);
        next(status);
      },
    });
  };

  /**
   * The labelled children of one method, resolved once: prom-client hashes a label object on every
   * inc(), five times a call, and a profile under load (bench/load.ts) counted that in the API's time.
   */
  private countersOf(method: MethodShape): MethodCounters {
    let counters = this.methodCounters.get(method.path);
    if (counters !== undefined) return counters;
    const labels = methodLabels(method);
    const byCode = new Map<number, { inc(): void }>();
    counters = {
      started: this.grpcStarted.labels(labels),
      received: this.grpcReceived.labels(labels),
      sent: this.grpcSent.labels(labels),
      seconds: this.grpcSeconds.labels(labels),
      handled: (code) => {
        let child = byCode.get(code);
        if (child === undefined) {
          child = this.grpcHandled.labels({ ...labels, grpc_code: goCodeName(code) });
          byCode.set(code, child);
        }
        return child;
      },
    };
    this.methodCounters.set(method.path, counters);
    return counters;
  }

  /** A request the HTTP gateway answered, by the RPC it stands for and its gRPC status code. */
  httpHandledRequest(method: string, code: number, service = MICROVM_SERVICE): void {
    this.httpHandled.inc({ grpc_service: service, grpc_method: method, grpc_code: goCodeName(code) });
  }

  /** Reports a watch hub's gauges until the returned function is called. */
  observeWatches(source: () => WatchGauges): () => void {
    this.watchSources.add(source);
    return () => {
      this.watchSources.delete(source);
    };
  }

  watchCutOffs(): void {
    this.watchCutOff.inc();
  }
}
