// A typed promise client of the MicroVM service for tests, over the same protobuf-es/grpc-js
// bridge the server uses.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { grpcServiceDefinition } from '../../src/adapters/api/grpc/service-definition.js';
import type { MicroVM, MicroVMSpec } from '../../src/gen/flintlock/types/microvm_pb.js';
import { MicroVM as MicroVMDesc, type ListMessage } from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { MicroVMSpecSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { MicroVMWatch, WatchMicroVMsRequestSchema, WatchEventSchema, type WatchEvent } from '../../src/gen/flintlock/services/ext/v1alpha1/watch_pb.js';
import { GetHostInfoRequestSchema, GetHostInfoResponseSchema, Host, type HostInfo } from '../../src/gen/flintlock/services/ext/v1alpha1/host_pb.js';

export type WatchRequestInit = MessageInitShape<typeof WatchMicroVMsRequestSchema>;

export type SpecInit = MessageInitShape<typeof MicroVMSpecSchema>;

type Callback<T> = (error: grpc.ServiceError | null, value?: T) => void;
interface RawClient extends grpc.Client {
  createMicroVM(req: { microvm: SpecInit }, md: grpc.Metadata, cb: Callback<{ microvm?: MicroVM }>): void;
  getMicroVM(req: { uid: string }, md: grpc.Metadata, cb: Callback<{ microvm?: MicroVM }>): void;
  deleteMicroVM(req: { uid: string }, md: grpc.Metadata, cb: Callback<object>): void;
  listMicroVMs(req: { namespace: string; name?: string }, md: grpc.Metadata, cb: Callback<{ microvm: MicroVM[] }>): void;
  listMicroVMsStream(req: { namespace: string; name?: string }, md: grpc.Metadata): grpc.ClientReadableStream<ListMessage>;
}

const Constructor = grpc.makeGenericClientConstructor(grpcServiceDefinition(MicroVMDesc), 'MicroVM') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => RawClient;

export class TestClient {
  readonly raw: RawClient;
  private readonly metadata = new grpc.Metadata();

  constructor(endpoint: string, options: { credentials?: grpc.ChannelCredentials; authorization?: string; channelOptions?: grpc.ClientOptions } = {}) {
    this.raw = new Constructor(endpoint, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions);
    if (options.authorization !== undefined) this.metadata.set('authorization', options.authorization);
  }

  private call<T>(fn: (cb: Callback<T>) => void): Promise<T> {
    return new Promise((resolve, reject) => fn((error, value) => (error !== null ? reject(error) : resolve(value as T))));
  }

  async create(spec: SpecInit): Promise<MicroVM> {
    const res = await this.call<{ microvm?: MicroVM }>((cb) => this.raw.createMicroVM({ microvm: spec }, this.metadata, cb));
    if (res.microvm === undefined) throw new Error('create answered without a microvm');
    return res.microvm;
  }
  async get(uid: string): Promise<MicroVM> {
    const res = await this.call<{ microvm?: MicroVM }>((cb) => this.raw.getMicroVM({ uid }, this.metadata, cb));
    if (res.microvm === undefined) throw new Error('get answered without a microvm');
    return res.microvm;
  }
  delete(uid: string): Promise<object> {
    return this.call<object>((cb) => this.raw.deleteMicroVM({ uid }, this.metadata, cb));
  }
  async list(namespace = '', name?: string): Promise<MicroVM[]> {
    const res = await this.call<{ microvm: MicroVM[] }>((cb) =>
      this.raw.listMicroVMs({ namespace, ...(name !== undefined ? { name } : {}) }, this.metadata, cb),
    );
    return res.microvm;
  }
  stream(namespace = '', name?: string): grpc.ClientReadableStream<ListMessage> {
    return this.raw.listMicroVMsStream({ namespace, ...(name !== undefined ? { name } : {}) }, this.metadata);
  }
  /** MicroVMWatch/WatchMicroVMs, our extension service, on the same channel. */
  watch(request: WatchRequestInit = {}): grpc.ClientReadableStream<WatchEvent> {
    return this.raw.makeServerStreamRequest(
      `/${MicroVMWatch.typeName}/${MicroVMWatch.method.watchMicroVMs.name}`,
      (value: WatchRequestInit) => Buffer.from(toBinary(WatchMicroVMsRequestSchema, create(WatchMicroVMsRequestSchema, value))),
      (bytes: Buffer) => fromBinary(WatchEventSchema, bytes),
      request,
      this.metadata,
    );
  }
  /** Host/GetHostInfo, our extension service, on the same channel. */
  async hostInfo(): Promise<HostInfo> {
    const res = await this.call<{ host?: HostInfo }>((cb) =>
      this.raw.makeUnaryRequest(
        `/${Host.typeName}/${Host.method.getHostInfo.name}`,
        () => Buffer.from(toBinary(GetHostInfoRequestSchema, create(GetHostInfoRequestSchema, {}))),
        (bytes: Buffer) => fromBinary(GetHostInfoResponseSchema, bytes),
        {},
        this.metadata,
        cb,
      ),
    );
    if (res.host === undefined) throw new Error('GetHostInfo answered without a host');
    return res.host;
  }
  close(): void {
    this.raw.close();
  }
}

/** A stable locally administered MAC per name (macvtaps on one parent need distinct MACs). */
export function macFor(name: string): string {
  const hash = createHash('sha256').update(name).digest();
  return ['02', ...[...hash.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** A registry address where nothing listens (pulls fail fast, locally). */
export const UNREACHABLE_REGISTRY = '127.0.0.1:47';

/** A CAPMVM-shaped create request (provider "", empty kernel filename, guest MAC, base64 metadata). */
export function capmvmSpec(name: string, guestMac = macFor(name)): MicroVMSpec {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return create(MicroVMSpecSchema, {
    id: name,
    namespace: 'capmvm-ns',
    labels: { 'cluster-name': 'c1' },
    vcpu: 2,
    memoryInMb: 512,
    // Loopback port 47: nothing listens (and fetch allows it), so a pull fails at once and no test ever leaves the host.
    kernel: { image: `${UNREACHABLE_REGISTRY}/liquidmetal-dev/flintlock-kernel:5.10.77`, filename: '', cmdline: {}, addNetworkConfig: true },
    rootVolume: { id: 'root', isReadOnly: false, source: { containerSource: `${UNREACHABLE_REGISTRY}/liquidmetal-dev/capmvm-kubernetes:1.23.5` } },
    interfaces: [{ deviceId: 'eth1', type: 0, guestMac }],
    metadata: {
      'meta-data': b64('local_hostname: node1\nvm_host: host1\n'),
      'user-data': b64('#cloud-config\nhostname: node1\n'),
      'vendor-data': b64('#cloud-config\nmounts: []\n'),
    },
    provider: '',
  });
}

export type { MicroVMSpec };
