// Start-up checks of the paths a config names: each problem names the key and says what to set.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stateDirProblem } from '../../src/config/paths.js';
import { openDatabase } from '../../src/adapters/store/open-database.js';

const dir = mkdtempSync(join(tmpdir(), 'fl-paths-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('state-dir check', () => {
  it('accepts an existing directory and a missing one below a directory', () => {
    assert.equal(stateDirProblem(dir), undefined);
    assert.equal(stateDirProblem(join(dir, 'new', 'state')), undefined);
  });

  it('refuses a file in its place, saying what to set', () => {
    const file = join(dir, 'file');
    writeFileSync(file, '');
    assert.equal(
      stateDirProblem(file),
      `state-dir ${file} is a file, not a directory: set state-dir to a directory this daemon may write (it is created when missing), or move the file away`,
    );
  });

  it('refuses a path that cannot be created because a file is above it', () => {
    const file = join(dir, 'blocker');
    writeFileSync(file, '');
    assert.match(
      stateDirProblem(join(file, 'a', 'b')) ?? '',
      new RegExp(`^state-dir ${file}/a/b cannot be created: ${file} is a file, not a directory; set state-dir to`),
    );
  });
});

describe('opening a database file', () => {
  it('names the path and what to check when SQLite cannot open it', () => {
    const where = join(dir, 'db-is-a-dir');
    mkdirSync(where);
    assert.throws(
      () => openDatabase(where, {}),
      (e: Error) => {
        assert.equal(
          e.message,
          `unable to open database file ${where}: check that state-dir ${dir} is a directory on a local filesystem that this user may write, and that ${where} is a file`,
        );
        return true;
      },
    );
  });
});
