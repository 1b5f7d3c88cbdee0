// What every gRPC handler needs: the caller's authorization value, and AppErrors as statuses.
import * as grpc from '@grpc/grpc-js';
import { boundedMessage, type AppError } from '../../../core/result.js';
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
