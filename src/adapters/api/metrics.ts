// API metrics in the shape of go-grpc-prometheus (the Go original's), so existing dashboards keep
// working: grpc_server_handled_total{grpc_service,grpc_method,grpc_code}. The HTTP gateway counts
// into http_server_handled_total with the same labels. Watches (our extension service) add gauges
// of their open streams and buffered bytes, and a counter of clients cut off for falling behind.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export const MICROVM_SERVICE = 'microvm.services.api.v1alpha1.MicroVM';
const STREAMING_METHODS = new Set(['ListMicroVMsStream', 'WatchMicroVMs']);

/** What a watch hub reports; summed over every hub (one per gRPC server). */
export interface WatchGauges {
  readonly streams: number;
  readonly queuedBytes: number;
}

export class ApiMetrics {
  readonly registry = new Registry();
  private readonly watchSources = new Set<() => WatchGauges>();
  private readonly grpcHandled = new Counter({
    name: 'grpc_server_handled_total',
    help: 'Total number of RPCs completed on the server, regardless of success or failure.',
    labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'] as const,
    registers: [this.registry],
  });
  private readonly httpHandled = new Counter({
    name: 'http_server_handled_total',
    help: 'Total number of HTTP gateway requests completed, by method and outcome.',
    labelNames: ['grpc_service', 'grpc_method', 'grpc_code'] as const,
    registers: [this.registry],
  });
  private readonly watchCutOff = new Counter({
    name: 'flintlock_watch_cut_off_total',
    help: 'Watch streams ended with RESOURCE_EXHAUSTED because the client fell too far behind.',
    registers: [this.registry],
  });

  constructor(withProcessMetrics = true) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry });
    const sum = (pick: (g: WatchGauges) => number): number => [...this.watchSources].reduce((total, source) => total + pick(source()), 0);
    const gauges: Array<[string, string, (g: WatchGauges) => number]> = [
      ['flintlock_watch_streams', 'Open WatchMicroVMs streams.', (g) => g.streams],
      ['flintlock_watch_queued_bytes', 'Bytes of watch events waiting for slow clients to read (bounded per client).', (g) => g.queuedBytes],
    ];
    for (const [name, help, pick] of gauges) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(sum(pick));
        },
      });
    }
  }

  handled(transport: 'grpc' | 'http', method: string, code: string, service = MICROVM_SERVICE): void {
    if (transport === 'grpc')
      this.grpcHandled.inc({
        grpc_type: STREAMING_METHODS.has(method) ? 'server_stream' : 'unary',
        grpc_service: service,
        grpc_method: method,
        grpc_code: code,
      });
    else this.httpHandled.inc({ grpc_service: service, grpc_method: method, grpc_code: code });
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
