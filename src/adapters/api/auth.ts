// Token authentication shared by the gRPC server and the HTTP gateway (COMPAT §2.10): the
// `authorization` value must be `Basic base64(token)` (scheme case-insensitive), as the Go
// original and CAPMVM do it, or `Bearer token`. Messages never echo the token.
import { timingSafeEqual } from 'node:crypto';
import { appError, type AppError } from '../../core/result.js';

export interface TokenCheck {
  /** Undefined when the header is acceptable. */
  (authorization: string | undefined): AppError | undefined;
}

function equalSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A check for the configured token; with no token configured every request passes. */
export function tokenCheck(token: string | undefined): TokenCheck {
  if (token === undefined || token === '') return () => undefined;
  const basic = Buffer.from(token).toString('base64');
  return (authorization) => {
    if (authorization === undefined || authorization.trim() === '') {
      return appError('unauthenticated', 'missing authorization: send "authorization: Basic <base64 of the token>"');
    }
    const match = /^\s*(\S+)\s+(\S+)\s*$/.exec(authorization);
    const scheme = match?.[1]?.toLowerCase();
    const value = match?.[2] ?? '';
    const valid = (scheme === 'basic' && equalSecret(value, basic)) || (scheme === 'bearer' && equalSecret(value, token));
    if (!valid) return appError('unauthenticated', 'invalid auth token: failed basic authentication. Check the token supplied');
    return undefined;
  };
}
