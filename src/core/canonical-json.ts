// Canonical JSON: object keys sorted and undefined-valued properties dropped, so two values that
// mean the same thing serialise identically whatever their key order or `x: undefined` noise.
// Used for stored spec/status (change detection) and for comparing create requests.

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  // A Date, Map or class instance would serialise as something other than what the caller holds.
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON with object keys sorted and undefined-valued properties dropped, so two statuses that
 * mean the same thing serialise identically whatever their key order or `x: undefined` noise.
 * Refuses values JSON cannot carry faithfully rather than storing something else (NaN -> null).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalize(value, '$'));
}

function canonicalize(value: unknown, path: string): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`cannot store non-finite number at ${path}`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => canonicalize(v, `${path}[${i}]`));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = value[key];
      if (v !== undefined) out[key] = canonicalize(v, `${path}.${key}`);
    }
    return out;
  }
  throw new TypeError(`cannot store ${typeof value} at ${path}`);
}
