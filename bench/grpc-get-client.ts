// Load generator for bench/grpc-get.ts, run in its own process so its CPU doesn't share the
// server's event loop:
//
//   node --import tsx bench/grpc-get-client.ts <endpoint> <seconds> <concurrency> <uid...>
//   (BENCH_CHANNELS=4: connections the calls are spread over)
//
// Keeps <concurrency> GetMicroVM calls outstanding, spread over BENCH_CHANNELS channels (each its
// own HTTP/2 connection), cycling through the uids, for a 1 s warm-up and then <seconds>
// measured. Over a single connection two Node processes ping-pong (each side handles a whole
// batch of frames, then idles while the other handles the answers), so neither side gets near a
// full core; a few connections let the server's work overlap the client's. Requests are encoded once per uid and responses are
// kept as raw bytes (only their size is read), so the client spends as little CPU per call as
// grpc-js allows and the server is what's measured. One response per uid is decoded up front to
// check it really is that VM. Prints `measure-start` and `measure-end` when the measured window
// opens and closes (so the parent can sample the server's CPU time), then one JSON line:
// requests/s, p50/p99 latency, response sizes, the client's own CPU use.
import { performance } from 'node:perf_hooks';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { grpcServiceDefinition } from '../src/adapters/api/grpc/service-definition.js';
import { GetMicroVMRequestSchema, GetMicroVMResponseSchema, MicroVM as MicroVMDesc } from '../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';

export interface ClientResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  /** How many uids answered with that very VM in the up-front check. */
  readonly matched: number;
  /** The client's own CPU use over the measured window (100 = one core). */
  readonly clientCpuPct: number;
}

const WARMUP_MS = 1000;

type Callback = (error: grpc.ServiceError | null, value?: Buffer) => void;
interface RawClient extends grpc.Client {
  getMicroVM(req: Buffer, md: grpc.Metadata, cb: Callback): grpc.ClientUnaryCall;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const [endpoint, secondsArg, concurrencyArg, ...uids] = process.argv.slice(2);
  const seconds = Number(secondsArg);
  const concurrency = Number.parseInt(concurrencyArg ?? '', 10);
  if (endpoint === undefined || !(seconds > 0) || !(concurrency > 0) || uids.length === 0) {
    throw new Error('usage: grpc-get-client.ts <endpoint> <seconds> <concurrency> <uid...>');
  }

  // The service's own method path, with byte-level (de)serializers for the one method we call.
  const get = grpcServiceDefinition(MicroVMDesc)['getMicroVM'];
  if (get === undefined) throw new Error('MicroVM service has no getMicroVM method');
  const identity = (b: Buffer): Buffer => b;
  const definition: grpc.ServiceDefinition = {
    getMicroVM: { ...get, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  };
  const Constructor = grpc.makeGenericClientConstructor(definition, 'MicroVM') as unknown as new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ClientOptions,
  ) => RawClient;
  const channels = Math.min(64, Math.max(1, Number.parseInt(process.env['BENCH_CHANNELS'] ?? '4', 10) || 4));
  // A local subchannel pool per client: otherwise grpc-js shares one connection among them.
  const clients = Array.from({ length: channels }, () => new Constructor(endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const metadata = new grpc.Metadata();
  const requests = uids.map((uid) => Buffer.from(toBinary(GetMicroVMRequestSchema, create(GetMicroVMRequestSchema, { uid }))));

  const call = (client: RawClient, req: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      client.getMicroVM(req, metadata, (error, value) =>
        error !== null ? reject(error) : value === undefined ? reject(new Error('no response')) : resolve(value),
      ),
    );

  try {
    // Sanity: every uid answers with a microvm; count those answering with the asked one (all of
    // them for the real service, one for the canned server, which answers the same VM each time).
    let matched = 0;
    for (const [i, uid] of uids.entries()) {
      const got = fromBinary(GetMicroVMResponseSchema, await call(clients[i % clients.length] as RawClient, requests[i] as Buffer)).microvm?.spec?.uid;
      if (got === undefined || got === '') throw new Error(`GetMicroVM(${uid}) answered without a microvm`);
      if (got === uid) matched += 1;
    }

    // The measured window opens after the warm-up and closes <seconds> later; its edges are
    // printed as markers so the parent samples the server's CPU time over the same window.
    let windowStart = Number.POSITIVE_INFINITY;
    let windowEnd = Number.POSITIVE_INFINITY;
    let cpuAtStart = process.cpuUsage();
    let cpu = { user: 0, system: 0 };
    setTimeout(() => {
      windowStart = performance.now();
      cpuAtStart = process.cpuUsage();
      process.stdout.write('measure-start\n');
      setTimeout(() => {
        windowEnd = performance.now();
        cpu = process.cpuUsage(cpuAtStart);
        process.stdout.write('measure-end\n');
      }, seconds * 1000);
    }, WARMUP_MS);

    const latencies: number[] = [];
    let errors = 0;
    let minBytes = Number.POSITIVE_INFINITY;
    let maxBytes = 0;
    let next = 0;

    const worker = (_: unknown, w: number): Promise<void> =>
      new Promise((resolve) => {
        const client = clients[w % clients.length] as RawClient;
        const one = (): void => {
          const t0 = performance.now();
          if (windowEnd !== Number.POSITIVE_INFINITY) {
            resolve();
            return;
          }
          const req = requests[next] as Buffer;
          next = (next + 1) % requests.length;
          client.getMicroVM(req, metadata, (error, value) => {
            const t1 = performance.now();
            // Only calls wholly inside the window count (windowEnd is +Infinity while it is open).
            if (t0 >= windowStart && t1 <= windowEnd) {
              if (error !== null || value === undefined) errors += 1;
              else {
                latencies.push(t1 - t0);
                if (value.length < minBytes) minBytes = value.length;
                if (value.length > maxBytes) maxBytes = value.length;
              }
            }
            one();
          });
        };
        one();
      });

    await Promise.all(Array.from({ length: concurrency }, worker));
    const windowSeconds = (windowEnd - windowStart) / 1000;
    const sorted = Float64Array.from(latencies).sort();
    const result: ClientResult = {
      requests: latencies.length,
      errors,
      seconds: windowSeconds,
      rps: latencies.length / windowSeconds,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      minBytes: latencies.length > 0 ? minBytes : 0,
      maxBytes,
      matched,
      clientCpuPct: ((cpu.user + cpu.system) / 1000 / (windowSeconds * 1000)) * 100,
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const c of clients) c.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`grpc-get-client: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
