// Schema migrations for the state database, tracked with `PRAGMA user_version`.
//
// Rules for adding one: append (never edit or reorder a released entry), use the next version
// number, and keep each step valid inside a single transaction. `foreign_keys` cannot be toggled
// inside a transaction, so a step that rebuilds a referenced table must not rely on doing that.
import type Database from 'better-sqlite3';

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'microvms, work queue and host device records',
    sql: `
      CREATE TABLE microvms (
        uid        TEXT    PRIMARY KEY NOT NULL,
        namespace  TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        version    INTEGER NOT NULL CHECK (version >= 1),
        spec       TEXT    NOT NULL,
        status     TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER NULL
      ) STRICT;

      -- Serves list filters and the deterministic list order.
      CREATE INDEX microvms_namespace_name ON microvms (namespace, name, created_at, uid);

      -- At most one live VM per name: the database backs up insertUnlessExists's check, so a bug
      -- there (or a second writer) fails loudly instead of creating a twin.
      CREATE UNIQUE INDEX microvms_live_name ON microvms (namespace, name) WHERE deleted_at IS NULL;

      CREATE TABLE work_queue (
        uid    TEXT    PRIMARY KEY NOT NULL REFERENCES microvms (uid) ON DELETE CASCADE,
        due_at INTEGER NOT NULL
      ) STRICT;

      CREATE INDEX work_queue_due_at ON work_queue (due_at, uid);

      -- No foreign key: a record must outlive its VM row so the orphan sweep can still find and
      -- delete a host device whose VM vanished.
      CREATE TABLE host_devices (
        name       TEXT    PRIMARY KEY NOT NULL,
        vm_uid     TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        device_id  TEXT    NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;

      CREATE INDEX host_devices_vm_uid ON host_devices (vm_uid);
    `,
  },
  {
    version: 2,
    description: 'lifecycle intent (stop, start, pause, restart) beside the immutable spec',
    sql: `
      ALTER TABLE microvms ADD COLUMN intent TEXT NOT NULL DEFAULT '{"power":"running","restarts":0}';
    `,
  },
];

export const LATEST_SCHEMA_VERSION: number = MIGRATIONS.at(-1)?.version ?? 0;

export class SchemaVersionError extends Error {
  constructor(
    readonly found: number,
    readonly supported: number,
    file: string,
  ) {
    super(
      `state database ${file} has schema version ${found}, but this flintlockd only knows up to version ${supported}; ` +
        'it was written by a newer release: upgrade flintlockd or restore a backup (refusing to use it)',
    );
    this.name = 'SchemaVersionError';
  }
}

export function userVersion(db: Database.Database): number {
  const v = db.pragma('user_version', { simple: true });
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new Error(`unexpected PRAGMA user_version result: ${String(v)}`);
  return v;
}

/** Throws SchemaVersionError when the database is newer than `migrations` know. */
export function assertNotNewer(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): void {
  const latest = latestVersion(migrations);
  const found = userVersion(db);
  if (found > latest) throw new SchemaVersionError(found, latest, db.name);
}

/**
 * Brings the database up to the latest version, one transaction per step. Returns the versions
 * applied. IMMEDIATE transactions plus the re-check inside make two processes opening the same
 * fresh file at once safe: the second sees the first's work and skips it.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number[] {
  validate(migrations);
  assertNotNewer(db, migrations);
  const applied: number[] = [];
  for (const m of migrations) {
    const step = db.transaction(() => {
      const current = userVersion(db);
      if (current >= m.version) return false;
      if (current !== m.version - 1) throw new Error(`schema migration ${m.version} expects version ${m.version - 1}, found ${current}`);
      db.exec(m.sql);
      // user_version lives in the database header, which is written as part of this
      // transaction: a crash mid-step leaves neither the schema change nor the new version.
      db.pragma(`user_version = ${m.version}`);
      return true;
    });
    try {
      if (step.immediate()) applied.push(m.version);
    } catch (e) {
      throw new Error(`schema migration ${m.version} (${m.description}) failed: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
  }
  return applied;
}

function latestVersion(migrations: readonly Migration[]): number {
  return migrations.at(-1)?.version ?? 0;
}

function validate(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`schema migrations must be numbered 1, 2, 3, ...: entry ${i} has version ${m.version}`);
  });
}
