// The one identifier policy: every string from a request that becomes a path component, a device
// or file name, a key in a generated file or a VMM argument is checked here, at the API edge, so
// nothing later has to wonder whether a value can escape a directory or split an argument.
// (Modelled on containerd's identifiers: a small character set, a length bound, no '/', no NUL,
// never '.' or '..'.)

/**
 * Kinds of identifier and their rules. `name`: the VM id, namespace, volume ids, partition ids and
 * metadata keys: 1-63 bytes of letters, digits, '.', '_' and '-', starting with a letter or digit
 * (COMPAT §2.9: safe as a path component and a host label). `device`: interface device ids, which
 * become guest interface names and network-config keys: `^[a-z][a-z0-9_]*$`, at most 15 bytes
 * (IFNAMSIZ). `labelKey`: a Kubernetes-style qualified name, `[prefix/]name`, whose prefix is a DNS
 * subdomain of at most 253 bytes and whose name follows `name`'s rule; labels are only stored, but
 * they travel in every answer.
 */
export type IdentifierKind = 'name' | 'device' | 'labelKey';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;
const DEVICE = /^[a-z][a-z0-9_]{0,14}$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export const IDENTIFIER_RULES: Readonly<Record<IdentifierKind, string>> = {
  name: "1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
  device: 'must match ^[a-z][a-z0-9_]*$ and be at most 15 characters',
  labelKey:
    "[prefix/]name: name 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit; prefix a lowercase DNS subdomain of at most 253 characters",
};

/** Whether `value` follows the rule of `kind`. */
export function isIdentifier(kind: IdentifierKind, value: string): boolean {
  switch (kind) {
    case 'name':
      return NAME.test(value);
    case 'device':
      return DEVICE.test(value);
    case 'labelKey': {
      const slash = value.indexOf('/');
      if (slash < 0) return NAME.test(value);
      return DNS_SUBDOMAIN.test(value.slice(0, slash)) && NAME.test(value.slice(slash + 1));
    }
  }
}

/** The problem with `value` as an identifier of `kind`, or undefined. */
export function identifierProblem(kind: IdentifierKind, value: string): string | undefined {
  return isIdentifier(kind, value) ? undefined : `${echo(value)} ${kind === 'device' ? IDENTIFIER_RULES.device : `must be ${IDENTIFIER_RULES[kind]}`}`;
}

/**
 * A path inside an image (`kernel.filename`, `initrd.filename`): relative (a leading '/' is
 * allowed and means the image's root), components of printable characters other than '/', none of
 * them '.' or '..', at most 255 bytes in all. The image adapter still resolves it inside the
 * image's root; this only keeps nonsense out of the store.
 */
export function inImagePathProblem(path: string): string | undefined {
  if (path === '' || Buffer.byteLength(path) > 255) return `${echo(path)} must be 1-255 bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) return `${echo(path)} must not contain control characters`;
  const parts = path.replace(/^\/+/, '').split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return `${echo(path)} must be a path of non-empty components without '.' or '..'`;
  return undefined;
}

/** At most this much of a client's value is repeated in an error message. */
export const ECHO_MAX_CHARS = 64;

/**
 * A client's value as an error message repeats it: JSON-quoted (so control characters, NUL and
 * newlines show as escapes) and cut to ECHO_MAX_CHARS with the full length said, so a 10 kB input
 * never becomes a 10 kB `grpc-message` header.
 */
export function echo(value: string): string {
  if (value.length <= ECHO_MAX_CHARS) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, ECHO_MAX_CHARS))}... (${Buffer.byteLength(value)} bytes)`;
}
