// cloud-init meta-data handling at create time (COMPAT §4): the server adds `instance_id: <uid>`
// to `meta-data` when absent, because kubelet's provider-id template depends on it.
import { parseDocument, stringify } from 'yaml';
import { appError, err, errorMessage, ok, type AppError, type Result } from './result.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 (whitespace allowed between groups): Buffer.from alone accepts anything. */
export function decodeBase64Strict(value: string): string | undefined {
  const compact = value.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !BASE64.test(compact)) return undefined;
  return Buffer.from(compact, 'base64').toString('utf8');
}

// The meta-data clients send is nearly always flat `key: value` lines (CAPMVM: local_hostname,
// vm_host, ...). Such a document is recognised line by line and instance_id appended as a line:
// ~5 µs instead of ~600 µs for a YAML parse and stringify, on the API's thread, per Create. Only
// what YAML reads exactly as written qualifies (tested against the parser with generated
// documents): plain keys that are strings (not null/true/false), unique; values that start with a
// letter, digit, `_`, `.` or `/` and hold no `#` or `:`; blank and comment lines. Anything else
// takes the parser.
const FLAT_LINE = /^(?:#[^\r]*|([A-Za-z_][A-Za-z0-9_.-]*):(?: +(?:[A-Za-z0-9_./][^#:\t\r]*)?)?)?$/;
const NON_STRING_KEY = /^(?:null|true|false)$/i;

/** The flat document's top-level keys, or undefined when it is not flat. */
function flatKeys(text: string): Set<string> | undefined {
  const keys = new Set<string>();
  for (const line of text.split('\n')) {
    const m = FLAT_LINE.exec(line);
    if (m === null) return undefined;
    const key = m[1];
    if (key === undefined) continue;
    if (NON_STRING_KEY.test(key) || keys.has(key)) return undefined;
    keys.add(key);
  }
  return keys;
}

export function injectInstanceId(metadata: Readonly<Record<string, string>>, uid: string): Result<Record<string, string>, AppError> {
  const encoded = metadata['meta-data'];
  let doc: Record<string, unknown> = {};
  if (encoded !== undefined && encoded !== '') {
    const text = decodeBase64Strict(encoded);
    if (text === undefined) return err(appError('invalid-argument', 'invalid microvm spec: metadata[meta-data]: must be base64-encoded YAML'));
    const flat = flatKeys(text);
    if (flat !== undefined && flat.size > 0) {
      if (flat.has('instance_id')) return ok({ ...metadata });
      const appended = `${text}${text.endsWith('\n') ? '' : '\n'}instance_id: ${uid}\n`;
      return ok({ ...metadata, 'meta-data': Buffer.from(appended).toString('base64') });
    }
    const notYaml = (why: string): Result<Record<string, string>, AppError> =>
      err(appError('invalid-argument', `invalid microvm spec: metadata[meta-data]: is not valid YAML: ${why}`));
    // logLevel 'error': a client's YAML must not make the daemon print warnings to its stderr.
    const parsed = parseDocument(text, { logLevel: 'error' });
    if (parsed.errors.length > 0) return notYaml(parsed.errors[0]?.message ?? '');
    let value: unknown;
    try {
      // toJS throws on an unresolved alias and past maxAliasCount (a "billion laughs" document):
      // the client's YAML is wrong, the server is not failing.
      value = parsed.toJS();
    } catch (e) {
      return notYaml(errorMessage(e));
    }
    if (value !== null && value !== undefined) {
      if (typeof value !== 'object' || Array.isArray(value))
        return err(appError('invalid-argument', 'invalid microvm spec: metadata[meta-data]: must be a YAML mapping'));
      doc = value as Record<string, unknown>;
    }
    if ('instance_id' in doc) return ok({ ...metadata });
  }
  return ok({ ...metadata, 'meta-data': Buffer.from(stringify({ ...doc, instance_id: uid })).toString('base64') });
}
