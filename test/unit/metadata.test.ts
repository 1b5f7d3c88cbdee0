import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse, parseDocument } from 'yaml';

import { decodeBase64Strict, injectInstanceId } from '../../src/core/metadata.js';

const UID = '01HGW2N7EH0000000000000001';
const b64 = (text: string): string => Buffer.from(text).toString('base64');

function metaData(metadata: Record<string, string>): unknown {
  const encoded = metadata['meta-data'];
  assert.ok(encoded !== undefined, 'meta-data missing');
  const text = decodeBase64Strict(encoded);
  assert.ok(text !== undefined, 'meta-data is not base64');
  return parse(text);
}

function inject(metadata: Record<string, string>): Record<string, string> {
  const r = injectInstanceId(metadata, UID);
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  return r.value;
}

function injectError(metadata: Record<string, string>): { kind: string; message: string } {
  const r = injectInstanceId(metadata, UID);
  assert.equal(r.ok, false, 'expected an error');
  if (r.ok) throw new Error('unreachable');
  return r.error;
}

describe('injectInstanceId', () => {
  it('adds meta-data with instance_id when absent', () => {
    const out = inject({});
    assert.deepEqual(metaData(out), { instance_id: UID });
    assert.deepEqual(Object.keys(out), ['meta-data']);
  });

  it('treats an empty meta-data value as absent', () => {
    assert.deepEqual(metaData(inject({ 'meta-data': '' })), { instance_id: UID });
  });

  it('treats YAML that is empty or null as an empty mapping', () => {
    assert.deepEqual(metaData(inject({ 'meta-data': b64('') })), { instance_id: UID });
    assert.deepEqual(metaData(inject({ 'meta-data': b64('# just a comment\n') })), { instance_id: UID });
    assert.deepEqual(metaData(inject({ 'meta-data': b64('null\n') })), { instance_id: UID });
  });

  it('adds instance_id to an existing mapping and keeps the other keys', () => {
    const out = inject({ 'meta-data': b64('local_hostname: vm1\nvm_host: host-a\nnested:\n  a: 1\n') });
    assert.deepEqual(metaData(out), { local_hostname: 'vm1', vm_host: 'host-a', nested: { a: 1 }, instance_id: UID });
  });

  it('does not overwrite an instance_id that is present', () => {
    const original = b64('instance_id: mine\nlocal_hostname: vm1\n');
    const out = inject({ 'meta-data': original });
    assert.equal(out['meta-data'], original, 'meta-data must be passed through untouched');
    assert.deepEqual(metaData(out), { instance_id: 'mine', local_hostname: 'vm1' });
  });

  it('keeps an instance_id that is present even when its value is empty or null', () => {
    const original = b64('instance_id:\n');
    assert.equal(inject({ 'meta-data': original })['meta-data'], original);
  });

  it('leaves the other keys untouched (user-data may be raw text)', () => {
    const userData = '#cloud-config\nhostname: vm1\n';
    const vendorData = b64('#cloud-config\nmounts: []\n');
    const out = inject({ 'user-data': userData, 'vendor-data': vendorData, 'network-config': 'not base64 at all!' });
    assert.equal(out['user-data'], userData);
    assert.equal(out['vendor-data'], vendorData);
    assert.equal(out['network-config'], 'not base64 at all!');
    assert.deepEqual(metaData(out), { instance_id: UID });
  });

  it('does not modify its input', () => {
    const input = { 'user-data': 'x' };
    inject(input);
    assert.deepEqual(input, { 'user-data': 'x' });
  });

  it('rejects meta-data that is not base64, naming metadata[meta-data]', () => {
    const e = injectError({ 'meta-data': 'local_hostname: vm1' });
    assert.equal(e.kind, 'invalid-argument');
    assert.match(e.message, /metadata\[meta-data\]/);
    assert.match(e.message, /base64/);
  });

  it('rejects meta-data YAML that is a list', () => {
    const e = injectError({ 'meta-data': b64('- a\n- b\n') });
    assert.equal(e.kind, 'invalid-argument');
    assert.match(e.message, /metadata\[meta-data\]: must be a YAML mapping/);
  });

  it('rejects meta-data YAML that is a scalar', () => {
    const e = injectError({ 'meta-data': b64('just text') });
    assert.equal(e.kind, 'invalid-argument');
    assert.match(e.message, /metadata\[meta-data\]: must be a YAML mapping/);
  });

  it('rejects meta-data that is not valid YAML', () => {
    const e = injectError({ 'meta-data': b64('a: [1, 2\nb: }\n') });
    assert.equal(e.kind, 'invalid-argument');
    assert.match(e.message, /metadata\[meta-data\]: is not valid YAML/);
  });

  // Found by the API fuzzer: yaml parses these without error and throws when converting them,
  // which reached the client as Internal (gRPC) or 500 (HTTP).
  it('rejects meta-data with an alias to no anchor, or an alias bomb, as invalid YAML instead of throwing', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
    ];
    for (const text of ['a: *nowhere\n', '<<: [*x]\n', `${bomb.join('\n')}\n`]) {
      const e = injectError({ 'meta-data': b64(text) });
      assert.equal(e.kind, 'invalid-argument');
      assert.match(e.message, /^invalid microvm spec: metadata\[meta-data\]: is not valid YAML: (Unresolved alias|Excessive alias count)/);
    }
  });
});

describe('decodeBase64Strict', () => {
  it('decodes padded and unpadded-length-aligned base64', () => {
    assert.equal(decodeBase64Strict('aGVsbG8='), 'hello');
    assert.equal(decodeBase64Strict('aGk='), 'hi');
    assert.equal(decodeBase64Strict('aGVsbG8gd29ybGQh'), 'hello world!');
    assert.equal(decodeBase64Strict(''), '');
  });
  it('tolerates whitespace between groups (wrapped output of base64)', () => {
    assert.equal(decodeBase64Strict('aGVs\nbG8g\r\nd29y bGQh\n'), 'hello world!');
  });
  it('decodes utf-8', () => {
    assert.equal(decodeBase64Strict(b64('größe: ✓')), 'größe: ✓');
  });
  it('rejects text that is not base64', () => {
    for (const bad of ['hello world', 'local_hostname: vm1', 'aGVsbG8', 'aGVsbG8===', 'a=Gk', '!!!!', 'aGk-', 'aGk_']) {
      assert.equal(decodeBase64Strict(bad), undefined, bad);
    }
  });
});

describe('injectInstanceId: flat meta-data appended as a line', () => {
  it('says exactly what the YAML parser says, for generated documents of flat and tricky lines', () => {
    const key = fc.constantFrom('a', 'b', 'local_hostname', 'local-hostname', 'x.y', '_k', 'instance_id', 'true', 'True', 'NULL', 'null', 'False', 'Ab1');
    const value = fc.constantFrom(
      '',
      ' ',
      ' vm1',
      ' host-a',
      '  10.0.0.1',
      ' 1e3',
      ' 0x1f',
      ' .5',
      ' /path/x',
      ' yes',
      ' a b c',
      ' ~',
      ' null',
      ' a: b',
      ' http://x',
      ' #c',
      ' a #c',
      ' - x',
      ' &a x',
      ' *a',
      ' [1',
      ' {x',
      ' "q"',
      " 'q'",
      '\ta',
      ' a\tb',
      ' |',
      ' >',
      ' !tag x',
      ' %x',
      ' @x',
      ' `x',
      ' x,y',
      ' x]',
      ' x:',
    );
    const line = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(key, value).map(([k, v]) => `${k}:${v}`) },
      { weight: 1, arbitrary: fc.constantFrom('', '# comment', '#', '  a: 1', ' b', '---', '...', '- x', 'a', 'a:b', 'a :b', 'x\r', '? a', '%YAML 1.2') },
    );
    const doc = fc.tuple(fc.array(line, { maxLength: 6 }), fc.boolean()).map(([lines, nl]) => lines.join('\n') + (nl && lines.length > 0 ? '\n' : ''));
    fc.assert(
      fc.property(doc, (text) => {
        const r = injectInstanceId({ 'meta-data': b64(text) }, UID);
        let expected: unknown;
        try {
          const parsed = parseDocument(text, { logLevel: 'error' });
          expected = parsed.errors.length > 0 ? 'error' : parsed.toJS();
        } catch {
          expected = 'error';
        }
        if (expected === 'error' || (expected !== null && expected !== undefined && (typeof expected !== 'object' || Array.isArray(expected)))) {
          assert.equal(r.ok, false, `accepted ${JSON.stringify(text)}`);
          return;
        }
        assert.ok(r.ok, `refused ${JSON.stringify(text)}: ${r.ok ? '' : r.error.message}`);
        const doc = (expected ?? {}) as Record<string, unknown>;
        assert.deepEqual(metaData(r.value), 'instance_id' in doc ? doc : { ...doc, instance_id: UID }, JSON.stringify(text));
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps the client text as it was, comments too, with instance_id as a last line', () => {
    const out = inject({ 'meta-data': b64('# from capmvm\nlocal_hostname: vm1\nvm_host: host-a') });
    assert.equal(decodeBase64Strict(out['meta-data'] ?? ''), `# from capmvm\nlocal_hostname: vm1\nvm_host: host-a\ninstance_id: ${UID}\n`);
  });
});
