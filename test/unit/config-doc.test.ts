// docs/configuration.md's key reference is generated from the one table of keys: it cannot drift.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_KEY_SPECS, envName, IGNORED_KEYS } from '../../src/config/config.js';
import { configReferenceMarkdown, withConfigReference } from '../../src/config/example.js';
import { REPO_ROOT } from '../helpers/daemon.js';

const DOC = join(REPO_ROOT, 'docs/configuration.md');

describe('docs/configuration.md', () => {
  it('has the key reference the table of keys gives (regenerate: node --import tsx scripts/config-doc.ts)', () => {
    const doc = readFileSync(DOC, 'utf8');
    assert.equal(doc, withConfigReference(doc));
  });

  it('names every key with its environment variable, and every ignored key', () => {
    const reference = configReferenceMarkdown();
    for (const key of Object.keys(CONFIG_KEY_SPECS)) assert.match(reference, new RegExp(`^\\| \`${key}\` \\|.*\\| \`${envName(key)}\` \\|`, 'm'), key);
    for (const key of Object.keys(IGNORED_KEYS)) assert.match(reference, new RegExp(`^\\| \`${key}\` \\|`, 'm'), key);
  });

  it('notices a stale row', () => {
    const doc = readFileSync(DOC, 'utf8');
    const stale = doc.replace(/^\| `resync-period` \| `10m` \|/m, '| `resync-period` | `5m` |');
    assert.notEqual(stale, doc);
    assert.notEqual(withConfigReference(stale), stale);
  });
});
