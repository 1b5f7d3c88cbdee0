// What every gRPC handler needs: the caller's authorization value, and AppErrors as statuses.
import * as grpc from '@grpc/grpc-js';
import { boundedMessage, thrownError, type AppError } from '../../../core/result.js';
import type { Logger } from '../../../core/ports.js';
import type { TokenCheck } from '../auth.js';
import { GRPC_CODES } from '../grpc-codes.js';

export function toServiceError(error: AppError): Partial<grpc.StatusObject> {
  return { code: GRPC_CODES[error.kind], details: boundedMessage(error.message) };
}

/** An Error that grpc-js turns into this status when a streaming call emits it. */
export function statusError(code: grpc.status, message: string): Error {
  const details = boundedMessage(message);
  return Object.assign(new Error(details), { code, details });
}

/**
 * Ends a server-streaming call with `error`. Emitted, not destroyed: grpc-js sends the status from
 * the stream's own 'error' handler, after what is already buffered; a destroyed stream never
 * reaches it and the client would hang.
 */
export function failStream(call: grpc.ServerWritableStream<unknown, unknown>, error: AppError | Error): void {
  call.emit('error', error instanceof Error ? error : statusError(GRPC_CODES[error.kind], error.message));
}

export function authorizationOf(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

/** A throw from below (e.g. the store failing) becomes an Internal error, not a crash. */
export function guarded<T>(body: () => { ok: true; value: T } | { ok: false; error: AppError }): { ok: true; value: T } | { ok: false; error: AppError } {
  try {
    return body();
  } catch (e) {
    return { ok: false, error: thrownError(e) };
  }
}

/**
 * Unary handlers of a service: each checks the token first, answers AppErrors as statuses and
 * (outcomes are counted by ApiMetrics.interceptor). A handler that `writes` is answered only once its change is on disk
 * (`durable`, one fsync shared by every commit before it).
 */
export function unaryCalls(check: TokenCheck, log: Logger, durable?: () => Promise<void>) {
  const fail = (method: string, error: AppError, callback: grpc.sendUnaryData<never>): void => {
    if (error.kind === 'internal') log.error({ method, error: error.message }, 'request failed');
    callback(toServiceError(error), null);
  };
  return <Req, Res>(
      method: string,
      body: (req: Req) => { ok: true; value: Res } | { ok: false; error: AppError },
      writes = false,
    ): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const denied = check(authorizationOf(call.metadata));
      const result = denied !== undefined ? { ok: false as const, error: denied } : guarded(() => body(call.request));
      if (!result.ok) return fail(method, result.error, callback);
      const answer = (): void => callback(null, result.value);
      if (!writes || durable === undefined) return answer();
      durable().then(answer, (e: unknown) => fail(method, thrownError(e), callback));
    };
}
