// gRPC status codes as Go's codes.Code String() spells them: the values of `grpc_code` in
// go-grpc-prometheus metrics, which dashboards written for the Go original filter on.
import { status } from '@grpc/grpc-js';
import type { ErrorKind } from '../../core/result.js';

export const GO_CODE_NAMES: Readonly<Record<status, string>> = {
  [status.OK]: 'OK',
  [status.CANCELLED]: 'Canceled',
  [status.UNKNOWN]: 'Unknown',
  [status.INVALID_ARGUMENT]: 'InvalidArgument',
  [status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [status.NOT_FOUND]: 'NotFound',
  [status.ALREADY_EXISTS]: 'AlreadyExists',
  [status.PERMISSION_DENIED]: 'PermissionDenied',
  [status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [status.ABORTED]: 'Aborted',
  [status.OUT_OF_RANGE]: 'OutOfRange',
  [status.UNIMPLEMENTED]: 'Unimplemented',
  [status.INTERNAL]: 'Internal',
  [status.UNAVAILABLE]: 'Unavailable',
  [status.DATA_LOSS]: 'DataLoss',
  [status.UNAUTHENTICATED]: 'Unauthenticated',
};

/** Every code, for metrics made to exist at zero before the first call (as InitializeMetrics does). */
export const ALL_GO_CODE_NAMES: readonly string[] = Object.values(GO_CODE_NAMES);

/** The status each kind of application error is answered with. */
export const GRPC_CODES: Readonly<Record<ErrorKind, status>> = {
  'invalid-argument': status.INVALID_ARGUMENT,
  'failed-precondition': status.FAILED_PRECONDITION,
  'not-found': status.NOT_FOUND,
  unauthenticated: status.UNAUTHENTICATED,
  'resource-exhausted': status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  internal: status.INTERNAL,
};

/** Go's name of a status code; a code outside the table (none today) counts as Unknown. */
export function goCodeName(code: number): string {
  return GO_CODE_NAMES[code as status] ?? 'Unknown';
}
