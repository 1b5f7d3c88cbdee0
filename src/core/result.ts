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
export type ErrorKind = 'invalid-argument' | 'not-found' | 'unauthenticated' | 'unavailable' | 'internal';

export interface AppError {
  readonly kind: ErrorKind;
  readonly message: string;
}

export const appError = (kind: ErrorKind, message: string): AppError => ({ kind, message });

/** Message of anything thrown, for logs and status fields. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
