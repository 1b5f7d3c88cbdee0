// Opening an SQLite file in the state dir. better-sqlite3 says only "unable to open database file"
// (SQLITE_CANTOPEN) without the path; the operator needs the path and what to check.
import Database from 'better-sqlite3';
import { dirname } from 'node:path';

export function openDatabase(path: string, options: Database.Options): Database.Database {
  try {
    return new Database(path, options);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== 'SQLITE_CANTOPEN') throw e;
    throw new Error(
      `unable to open database file ${path}: check that state-dir ${dirname(path)} is a directory on a local filesystem that this user may write, and that ${path} is a file`,
      { cause: e },
    );
  }
}
