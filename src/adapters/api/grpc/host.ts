// flintlock.services.ext.v1alpha1.Host/GetHostInfo: what this host offers (providers, KVM or
// TCG, network modes, capacity, version), for schedulers and `fl host info`. The report itself is
// gathered by the composition root (it knows the adapters); this only checks the token and
// converts it to the wire shape.
import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import type { VmState } from '../../../core/model.js';
import { thrownError } from '../../../core/result.js';
import type { Logger } from '../../../core/ports.js';
import {
  Acceleration,
  GetHostInfoResponseSchema,
  type GetHostInfoRequest,
  type GetHostInfoResponse,
} from '../../../gen/flintlock/services/ext/v1alpha1/host_pb.js';
import { MicroVMStatus_MicroVMState as WireState, NetworkInterface_IfaceType as WireIfaceType } from '../../../gen/flintlock/types/microvm_pb.js';
import type { TokenCheck } from '../auth.js';
import { authorizationOf, toServiceError } from './call.js';

/** What GetHostInfo reports, in the daemon's terms. */
export interface HostReport {
  readonly daemonVersion: string;
  readonly hostname: string;
  readonly defaultProvider: string;
  readonly providers: ReadonlyArray<{ readonly name: string; readonly available: boolean; readonly reason?: string; readonly capabilities: readonly string[] }>;
  readonly kvm: { readonly usable: boolean; readonly reason: string };
  readonly networkModes: ReadonlyArray<{ readonly type: 'macvtap' | 'tap'; readonly configKey: string; readonly device: string; readonly problem?: string }>;
  readonly capacity: {
    readonly cpus: number;
    readonly memoryTotalBytes: number;
    readonly memoryAvailableBytes: number;
    readonly microvmsRunning: number;
    readonly vcpusAllocated: number;
    readonly memoryAllocatedBytes: number;
    readonly microvms: ReadonlyArray<{ readonly state: VmState; readonly provider: string; readonly count: number }>;
  };
}

const WIRE_STATE: Record<VmState, WireState> = {
  pending: WireState.PENDING,
  created: WireState.CREATED,
  failed: WireState.FAILED,
  deleting: WireState.DELETING,
};

export function hostInfoToProto(report: HostReport): GetHostInfoResponse {
  const c = report.capacity;
  return create(GetHostInfoResponseSchema, {
    host: {
      daemonVersion: report.daemonVersion,
      hostname: report.hostname,
      defaultProvider: report.defaultProvider,
      providers: report.providers.map((p) => ({ name: p.name, available: p.available, unavailableReason: p.reason ?? '', capabilities: [...p.capabilities] })),
      acceleration: report.kvm.usable ? Acceleration.KVM : Acceleration.TCG,
      accelerationReason: report.kvm.reason,
      networkModes: report.networkModes.map((m) => ({
        type: m.type === 'tap' ? WireIfaceType.TAP : WireIfaceType.MACVTAP,
        configKey: m.configKey,
        device: m.device,
        usable: m.problem === undefined,
        problem: m.problem ?? '',
      })),
      capacity: {
        cpus: c.cpus,
        memoryTotalBytes: BigInt(c.memoryTotalBytes),
        memoryAvailableBytes: BigInt(c.memoryAvailableBytes),
        microvmsRunning: c.microvmsRunning,
        vcpusAllocated: c.vcpusAllocated,
        memoryAllocatedBytes: BigInt(c.memoryAllocatedBytes),
        microvms: c.microvms.map((m) => ({ state: WIRE_STATE[m.state], provider: m.provider, count: m.count })),
      },
    },
  });
}

/** The Host handlers; the token is checked first, as for the MicroVM service. */
export function hostHandlers(report: () => Promise<HostReport>, check: TokenCheck, log: Logger): grpc.UntypedServiceImplementation {
  const getHostInfo: grpc.handleUnaryCall<GetHostInfoRequest, GetHostInfoResponse> = (call, callback) => {
    const denied = check(authorizationOf(call.metadata));
    if (denied !== undefined) {
      callback(toServiceError(denied), null);
      return;
    }
    report().then(
      (r) => callback(null, hostInfoToProto(r)),
      (e: unknown) => {
        const error = thrownError(e);
        log.error({ method: 'GetHostInfo', error: error.message }, 'request failed');
        callback(toServiceError(error), null);
      },
    );
  };
  return { getHostInfo };
}
