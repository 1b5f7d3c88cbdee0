// Errors as values: every fallible core operation returns a Result instead of throwing, so the
// API edge can map each kind of failure to its wire status without guessing.

export type Result<T, E = AppError> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: E };

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function err<E>(error: E): { ok: false; error: E } {
  return { ok: false, error };
}

/** What went wrong, in terms a client can act on. Mapped to gRPC codes in the API adapters. */
export type ErrorKind = 'invalid-argument' | 'failed-precondition' | 'not-found' | 'unauthenticated' | 'resource-exhausted' | 'unavailable' | 'internal';

export interface AppError {
  readonly kind: ErrorKind;
  readonly message: string;
}

/**
 * At most this many characters of an error message reach a client: it travels in the
 * `grpc-message` header, and Go and Python clients refuse oversized header lists (8-16 KiB).
 */
export const MAX_ERROR_MESSAGE_CHARS = 2048;

export function boundedMessage(message: string): string {
  if (message.length <= MAX_ERROR_MESSAGE_CHARS) return message;
  return `${message.slice(0, MAX_ERROR_MESSAGE_CHARS)}... (${message.length - MAX_ERROR_MESSAGE_CHARS} more characters)`;
}

export const appError = (kind: ErrorKind, message: string): AppError => ({ kind, message: boundedMessage(message) });

/**
 * A failure no retry can fix (the daemon's configuration lacks what the VM needs): the reconciler
 * marks the VM FAILED at once instead of retrying it to exhaustion.
 */
export class PermanentFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentFailure';
  }
}

/**
 * A reconcile stopped on purpose (a delete superseding a create, a daemon shutdown): not a failed
 * attempt, never counted or recorded as an error. The reason an AbortSignal carries.
 */
export class Aborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Aborted';
  }
}

/** ENOSPC from a write, or SQLite's "database or disk is full": no retry helps until space is freed. */
export function isDiskFull(e: unknown): boolean {
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return code === 'ENOSPC' || code === 'SQLITE_FULL';
}

/** A throw from below as the API answers it: a full disk is resource-exhausted, anything else internal. */
export function thrownError(e: unknown, internalMessage = `internal error: ${errorMessage(e)}`): AppError {
  return isDiskFull(e) ? appError('resource-exhausted', `the daemon's disk is full: ${errorMessage(e)}`) : appError('internal', internalMessage);
}

/** Message of anything thrown, for logs and status fields. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
