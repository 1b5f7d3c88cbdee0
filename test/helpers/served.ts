// A test service (real store, no reconciler) served over plaintext gRPC on loopback, with a client.
import { silentLogger } from '../../src/adapters/log/logger.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/adapters/api/grpc/server.js';
import { TestClient } from './grpc-client.js';
import { createTestService, type TestService } from './service.js';

export interface ServedTestService {
  readonly svc: TestService;
  readonly server: RunningGrpcServer;
  readonly client: TestClient;
  /** Client, server, store: closed in that order. */
  close(): Promise<void>;
}

export async function serveTestService(prefix: string): Promise<ServedTestService> {
  const svc = createTestService(prefix);
  const server = await startGrpcServer(svc.service, { endpoint: '127.0.0.1:0', tls: { insecure: true, clientValidate: false }, log: silentLogger() });
  const client = new TestClient(`127.0.0.1:${server.port}`);
  return {
    svc,
    server,
    client,
    close: async () => {
      client.close();
      await server.close();
      svc.close();
    },
  };
}
