import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { tokenCheck } from '../../src/adapters/api/auth.js';

const TOKEN = 's3cr3t-T0ken';
const BASIC = Buffer.from(TOKEN).toString('base64');

function assertRejected(authorization: string | undefined, token = TOKEN): string {
  const error = tokenCheck(token)(authorization);
  assert.ok(error !== undefined, `expected ${JSON.stringify(authorization)} to be rejected`);
  assert.equal(error.kind, 'unauthenticated');
  assert.ok(!error.message.includes(token), `message reveals the token: ${error.message}`);
  assert.ok(!error.message.includes(Buffer.from(token).toString('base64')), `message reveals the encoded token: ${error.message}`);
  return error.message;
}

describe('tokenCheck without a token', () => {
  for (const token of [undefined, '']) {
    it(`lets everything through (token ${JSON.stringify(token)})`, () => {
      const check = tokenCheck(token);
      for (const header of [undefined, '', 'Basic nonsense', 'Bearer x', 'garbage']) assert.equal(check(header), undefined, String(header));
    });
  }
});

describe('tokenCheck with a token', () => {
  it('accepts Basic base64(token)', () => {
    assert.equal(tokenCheck(TOKEN)(`Basic ${BASIC}`), undefined);
  });

  for (const scheme of ['basic', 'BASIC', 'bAsIc']) {
    it(`treats the scheme case-insensitively (${scheme})`, () => {
      assert.equal(tokenCheck(TOKEN)(`${scheme} ${BASIC}`), undefined);
    });
  }

  it('accepts Bearer token (any case)', () => {
    assert.equal(tokenCheck(TOKEN)(`Bearer ${TOKEN}`), undefined);
    assert.equal(tokenCheck(TOKEN)(`bearer ${TOKEN}`), undefined);
  });

  it('tolerates surrounding and repeated whitespace', () => {
    assert.equal(tokenCheck(TOKEN)(`  Basic   ${BASIC}  `), undefined);
  });

  it('accepts a token with non-ASCII characters', () => {
    const token = 'pässwörd✓';
    assert.equal(tokenCheck(token)(`Basic ${Buffer.from(token).toString('base64')}`), undefined);
  });

  it('rejects a missing header', () => {
    assert.match(assertRejected(undefined), /missing authorization/);
  });

  it('rejects an empty or blank header', () => {
    assertRejected('');
    assertRejected('   ');
  });

  it('rejects a wrong token', () => {
    assertRejected(`Basic ${Buffer.from('wrong').toString('base64')}`);
    assertRejected(`Bearer wrong`);
    // A prefix or extension of the right token is still wrong.
    assertRejected(`Bearer ${TOKEN.slice(0, -1)}`);
    assertRejected(`Bearer ${TOKEN}x`);
    assertRejected(`Basic ${Buffer.from(`${TOKEN}x`).toString('base64')}`);
  });

  it('rejects a wrong scheme', () => {
    assertRejected(`Digest ${BASIC}`);
    assertRejected(`Token ${TOKEN}`);
  });

  it('rejects the raw token under Basic', () => {
    assertRejected(`Basic ${TOKEN}`);
  });

  it('rejects base64 under Bearer', () => {
    assertRejected(`Bearer ${BASIC}`);
  });

  it('rejects a header without a scheme, or with extra parts', () => {
    assertRejected(BASIC);
    assertRejected(TOKEN);
    assertRejected('Basic');
    assertRejected(`Basic ${BASIC} extra`);
  });

  it('says why without revealing the token', () => {
    const message = assertRejected(`Basic ${Buffer.from('nope').toString('base64')}`);
    assert.match(message, /invalid auth token/);
    assert.ok(!message.includes('nope'), 'message echoes the supplied value');
  });
});
