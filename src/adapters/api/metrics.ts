// API metrics in the shape of go-grpc-prometheus (the Go original's), so existing dashboards keep
// working: grpc_server_handled_total{grpc_service,grpc_method,grpc_code}. The HTTP gateway counts
// into http_server_handled_total with the same labels.
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

const SERVICE = 'microvm.services.api.v1alpha1.MicroVM';

export class ApiMetrics {
  readonly registry = new Registry();
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

  constructor(withProcessMetrics = true) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry });
  }

  handled(transport: 'grpc' | 'http', method: string, code: string): void {
    if (transport === 'grpc')
      this.grpcHandled.inc({
        grpc_type: method === 'ListMicroVMsStream' ? 'server_stream' : 'unary',
        grpc_service: SERVICE,
        grpc_method: method,
        grpc_code: code,
      });
    else this.httpHandled.inc({ grpc_service: SERVICE, grpc_method: method, grpc_code: code });
  }
}
