// The durable MicroVMRepository: one SQLite file in the state directory.
//
// Every port method is one transaction, in WAL mode with synchronous=NORMAL: a method that
// returned has its commit in the WAL, which survives a crash of the daemon (SIGKILL included),
// and durable() fsyncs the WAL (on libuv's thread pool, one fsync for every commit made before
// it) so that an acknowledged Create or Delete survives a power cut too. With synchronous=FULL
// every commit fsynced on the event loop: under load (bench/load.ts) a fifth of its time, every
// API call waiting behind it. Checkpoints still fsync (the WAL, then the database) before the WAL
// is reused, so a commit durable() covered stays on disk.
import { canonicalJson, isPlainObject } from '../../core/canonical-json.js';
import { chmodSync, closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from './open-database.js';
import {
  intentOf,
  type IfaceType,
  type LifecycleIntent,
  type MicroVM,
  type MicroVMSpec,
  type MicroVMStatus,
  type PowerIntent,
  type VmId,
  type VmState,
} from '../../core/model.js';
import type { HostDeviceRecord, InsertOutcome, ListQuery, MicroVMRepository, QueueEntry, QueueStats, VmChange } from '../../core/ports.js';
import { assertNotNewer, migrate } from './migrations.js';
import { WriteLock } from './write-lock.js';
import { VmRowCache, type CachedVm } from './vm-row-cache.js';

export const DB_FILE_NAME = 'flintlock.db';

/** How long a write waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

interface VmRow {
  uid: string;
  namespace: string;
  name: string;
  version: number;
  spec: string;
  status: string;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
  intent: string;
}

interface QueueRow {
  uid: string;
  due_at: number;
}

interface QueueStatsRow {
  entries: number;
  due: number;
  oldest_due: number | null;
}

interface DeviceRow {
  name: string;
  vm_uid: string;
  kind: string;
  device_id: string;
  created_at: number;
}

interface VmInsertParams {
  uid: string;
  namespace: string;
  name: string;
  spec: string;
  status: string;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

interface VmUpdateParams {
  uid: string;
  status: string;
  updated_at: number;
  deleted_at: number | null;
}

const VM_COLUMNS = 'uid, namespace, name, version, spec, status, created_at, updated_at, deleted_at, intent';
const VM_ORDER = 'ORDER BY namespace, name, created_at, uid';
/** Parsed VMs kept (vm-row-cache.ts): every VM of a large host, at a few KB each. */
const PARSED_VMS_KEPT = 4096;

interface VersionRow {
  uid: string;
  version: number;
}

interface Listener {
  readonly fn: (change: VmChange) => void;
}

/**
 * A transaction begun with BEGIN IMMEDIATE: the write lock is taken first (waiting up to
 * busy_timeout). A deferred one that reads, then writes after the other thread's connection
 * committed, fails at once with SQLITE_BUSY (its snapshot is stale), which no timeout helps
 * (ADR 0013).
 */
function immediateTransaction<A extends unknown[], R>(db: Database.Database, body: (...args: A) => R): (...args: A) => R {
  const tx = db.transaction(body);
  return (...args) => tx.immediate(...args);
}

export class SqliteMicroVMRepository implements MicroVMRepository {
  private readonly listeners = new Set<Listener>();
  private forward: ((change: VmChange) => void) | undefined;
  /** With a second thread: the version last told to listeners per VM (its notices may arrive after this side's own newer write). */
  private readonly emitted = new Map<string, number>();
  private wal: Promise<FileHandle> | undefined;
  /** The fsync running now, and the one that follows it for commits made meanwhile. */
  private syncing: Promise<void> | undefined;
  private nextSync: Promise<void> | undefined;

  private readonly stmt: {
    readonly getVm: Database.Statement<[string], VmRow>;
    readonly versionOf: Database.Statement<[string], number>;
    readonly versionsAll: Database.Statement<[], VersionRow>;
    readonly versionsNs: Database.Statement<[string], VersionRow>;
    readonly versionsName: Database.Statement<[string], VersionRow>;
    readonly versionsNsName: Database.Statement<[string, string], VersionRow>;
    readonly liveByName: Database.Statement<[string, string], VmRow>;
    readonly listAll: Database.Statement<[], VmRow>;
    readonly listNs: Database.Statement<[string], VmRow>;
    readonly listName: Database.Statement<[string], VmRow>;
    readonly listNsName: Database.Statement<[string, string], VmRow>;
    readonly insertVm: Database.Statement<[VmInsertParams], void>;
    readonly updateVm: Database.Statement<[VmUpdateParams], void>;
    readonly updateIntent: Database.Statement<[{ uid: string; intent: string; updated_at: number }], void>;
    readonly deleteVm: Database.Statement<[string], void>;
    readonly enqueue: Database.Statement<[number, string], void>;
    readonly dequeue: Database.Statement<[string], void>;
    readonly queue: Database.Statement<[], QueueRow>;
    readonly queueStats: Database.Statement<[number, number], QueueStatsRow>;
    readonly recordDevice: Database.Statement<[DeviceRow], void>;
    readonly forgetDevice: Database.Statement<[string], void>;
    readonly forgetVmDevices: Database.Statement<[string], void>;
    readonly devicesAll: Database.Statement<[], DeviceRow>;
    readonly devicesOfVm: Database.Statement<[string], DeviceRow>;
    readonly deviceNamed: Database.Statement<[string], DeviceRow>;
  };

  private readonly parsed = new VmRowCache(PARSED_VMS_KEPT);
  // Each transaction returns what it wrote; the caller adds it to `parsed` once committed.
  private readonly txInsert: (vm: MicroVM) => { inserted: true; entry: CachedVm } | { inserted: false; existing: CachedVm };
  private readonly txMarkDeleting: (uid: string, now: number) => CachedVm | undefined;
  private readonly txSetIntent: (uid: string, change: (current: LifecycleIntent) => LifecycleIntent, now: number) => CachedVm | undefined;
  private readonly txSaveStatus: (
    uid: string,
    status: MicroVMStatus,
    now: number,
    expectedVersion?: number,
  ) => { entry: CachedVm; changed: boolean } | undefined;
  private readonly txRemove: (uid: string) => VmId | undefined;

  /** Opens (creating if needed) `<stateDir>/flintlock.db` and brings its schema up to date. */
  static open(stateDir: string, options: { readonly writeLock?: WriteLock } = {}): SqliteMicroVMRepository {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    restrictDatabaseFiles(join(stateDir, DB_FILE_NAME));
    const db = openDatabase(join(stateDir, DB_FILE_NAME), { timeout: BUSY_TIMEOUT_MS });
    try {
      // Before anything that writes (journal_mode=WAL rewrites the header): a database from a
      // newer release must be left exactly as it was found.
      assertNotNewer(db);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`could not switch ${db.name} to WAL mode (got ${String(mode)})`);
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      migrate(db);
      return new SqliteMicroVMRepository(db, options.writeLock);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Takes ownership of an open, migrated connection (use `open` unless testing). */
  constructor(
    private readonly db: Database.Database,
    /** Shared with the daemon's other thread's connection (write-lock.ts); none with one thread. */
    private readonly writeLock: WriteLock = new WriteLock(),
  ) {
    this.stmt = {
      getVm: db.prepare<[string], VmRow>(`SELECT ${VM_COLUMNS} FROM microvms WHERE uid = ?`),
      versionOf: db.prepare<[string], number>('SELECT version FROM microvms WHERE uid = ?').pluck(),
      versionsAll: db.prepare<[], VersionRow>(`SELECT uid, version FROM microvms ${VM_ORDER}`),
      versionsNs: db.prepare<[string], VersionRow>(`SELECT uid, version FROM microvms WHERE namespace = ? ${VM_ORDER}`),
      versionsName: db.prepare<[string], VersionRow>(`SELECT uid, version FROM microvms WHERE name = ? ${VM_ORDER}`),
      versionsNsName: db.prepare<[string, string], VersionRow>(`SELECT uid, version FROM microvms WHERE namespace = ? AND name = ? ${VM_ORDER}`),
      liveByName: db.prepare<[string, string], VmRow>(
        `SELECT ${VM_COLUMNS} FROM microvms WHERE namespace = ? AND name = ? AND deleted_at IS NULL ORDER BY created_at, uid LIMIT 1`,
      ),
      listAll: db.prepare<[], VmRow>(`SELECT ${VM_COLUMNS} FROM microvms ${VM_ORDER}`),
      listNs: db.prepare<[string], VmRow>(`SELECT ${VM_COLUMNS} FROM microvms WHERE namespace = ? ${VM_ORDER}`),
      listName: db.prepare<[string], VmRow>(`SELECT ${VM_COLUMNS} FROM microvms WHERE name = ? ${VM_ORDER}`),
      listNsName: db.prepare<[string, string], VmRow>(`SELECT ${VM_COLUMNS} FROM microvms WHERE namespace = ? AND name = ? ${VM_ORDER}`),
      insertVm: db.prepare<[VmInsertParams], void>(
        `INSERT INTO microvms (uid, namespace, name, version, spec, status, created_at, updated_at, deleted_at)
         VALUES (@uid, @namespace, @name, 1, @spec, @status, @created_at, @updated_at, @deleted_at)`,
      ),
      updateVm: db.prepare<[VmUpdateParams], void>(
        `UPDATE microvms SET status = @status, updated_at = @updated_at, deleted_at = @deleted_at, version = version + 1 WHERE uid = @uid`,
      ),
      updateIntent: db.prepare<[{ uid: string; intent: string; updated_at: number }], void>(
        `UPDATE microvms SET intent = @intent, updated_at = @updated_at, version = version + 1 WHERE uid = @uid`,
      ),
      deleteVm: db.prepare<[string], void>('DELETE FROM microvms WHERE uid = ?'),
      // The SELECT makes enqueueing a VM that is gone a no-op instead of a foreign-key error: a
      // reconcile that finishes after a concurrent remove must not crash the worker. The WHERE
      // clause is also what lets SQLite parse ON CONFLICT after INSERT ... SELECT.
      enqueue: db.prepare<[number, string], void>(
        `INSERT INTO work_queue (uid, due_at) SELECT uid, ? FROM microvms WHERE uid = ?
         ON CONFLICT (uid) DO UPDATE SET due_at = min(due_at, excluded.due_at)`,
      ),
      dequeue: db.prepare<[string], void>('DELETE FROM work_queue WHERE uid = ?'),
      queue: db.prepare<[], QueueRow>('SELECT uid, due_at FROM work_queue ORDER BY due_at, uid'),
      // Aggregated inside SQLite over the (due_at, uid) index: no rows come out for a scrape.
      queueStats: db.prepare<[number, number], QueueStatsRow>(
        'SELECT count(*) AS entries, count(CASE WHEN due_at <= ? THEN 1 END) AS due, min(CASE WHEN due_at <= ? THEN due_at END) AS oldest_due FROM work_queue',
      ),
      recordDevice: db.prepare<[DeviceRow], void>(
        `INSERT INTO host_devices (name, vm_uid, kind, device_id, created_at) VALUES (@name, @vm_uid, @kind, @device_id, @created_at)
         ON CONFLICT (name) DO UPDATE SET vm_uid = excluded.vm_uid, kind = excluded.kind, device_id = excluded.device_id, created_at = excluded.created_at`,
      ),
      forgetDevice: db.prepare<[string], void>('DELETE FROM host_devices WHERE name = ?'),
      forgetVmDevices: db.prepare<[string], void>('DELETE FROM host_devices WHERE vm_uid = ?'),
      devicesAll: db.prepare<[], DeviceRow>('SELECT name, vm_uid, kind, device_id, created_at FROM host_devices ORDER BY name'),
      devicesOfVm: db.prepare<[string], DeviceRow>('SELECT name, vm_uid, kind, device_id, created_at FROM host_devices WHERE vm_uid = ? ORDER BY name'),
      deviceNamed: db.prepare<[string], DeviceRow>('SELECT name, vm_uid, kind, device_id, created_at FROM host_devices WHERE name = ?'),
    };

    this.txInsert = immediateTransaction(db, (vm: MicroVM) => {
      const live = this.stmt.liveByName.get(vm.id.namespace, vm.id.name);
      if (live) return { inserted: false as const, existing: this.parse(live) };
      this.stmt.insertVm.run({
        uid: vm.id.uid,
        namespace: vm.id.namespace,
        name: vm.id.name,
        spec: canonicalJson(vm.spec),
        status: canonicalJson(vm.status),
        created_at: vm.createdAt,
        updated_at: vm.updatedAt,
        deleted_at: vm.deletedAt ?? null,
      });
      this.stmt.enqueue.run(vm.createdAt, vm.id.uid);
      return { inserted: true as const, entry: this.mustGet(vm.id.uid) };
    });

    this.txMarkDeleting = immediateTransaction(db, (uid: string, now: number): CachedVm | undefined => {
      const current = this.read(uid)?.vm;
      if (!current) return undefined;
      // failureReason and lastError stay for the record; nextRetryAt and nextRestartAt would
      // describe a retry or a VMM restart that the delete supersedes.
      const status: { -readonly [K in keyof MicroVMStatus]: MicroVMStatus[K] } = { ...current.status, state: 'deleting', retry: 0 };
      delete status.nextRetryAt;
      delete status.nextRestartAt;
      this.stmt.updateVm.run({ uid, status: canonicalJson(status), updated_at: now, deleted_at: current.deletedAt ?? now });
      this.stmt.enqueue.run(now, uid);
      return this.mustGet(uid);
    });

    this.txSetIntent = immediateTransaction(db, (uid: string, change: (current: LifecycleIntent) => LifecycleIntent, now: number): CachedVm | undefined => {
      const current = this.read(uid)?.vm;
      if (!current || current.deletedAt !== undefined) return undefined;
      this.stmt.updateIntent.run({ uid, intent: canonicalJson(change(intentOf(current))), updated_at: now });
      this.stmt.enqueue.run(now, uid);
      return this.mustGet(uid);
    });

    this.txSaveStatus = immediateTransaction(db, (uid: string, status: MicroVMStatus, now: number, expectedVersion?: number) => {
      const entry = this.read(uid);
      if (!entry) return undefined;
      const current = entry.vm;
      // Compare-and-swap: a writer that read an older version must re-read and decide again.
      if (expectedVersion !== undefined && current.version !== expectedVersion) return undefined;
      // A Delete that landed while a reconcile was working must not be undone by that
      // reconcile's status write: once deleted_at is set the state stays 'deleting'.
      const next = canonicalJson(current.deletedAt !== undefined && status.state !== 'deleting' ? { ...status, state: 'deleting' } : status);
      if (entry.statusJson === next) return { entry, changed: false };
      this.stmt.updateVm.run({ uid, status: next, updated_at: now, deleted_at: current.deletedAt ?? null });
      // What the row now holds (updateVm bumps the version), without reading the spec back.
      const written: MicroVM = { ...current, version: current.version + 1, updatedAt: now, status: JSON.parse(next) as MicroVMStatus };
      return { entry: { vm: written, statusJson: next }, changed: true };
    });

    this.txRemove = immediateTransaction(db, (uid: string): VmId | undefined => {
      const row = this.stmt.getVm.get(uid);
      this.stmt.forgetVmDevices.run(uid);
      // The queue row goes with the VM row (ON DELETE CASCADE).
      this.stmt.deleteVm.run(uid);
      return row ? { namespace: row.namespace, name: row.name, uid: row.uid } : undefined;
    });
  }

  insertUnlessExists(vm: MicroVM): InsertOutcome {
    const outcome = this.writeLock.run(() => this.txInsert(vm));
    if (!outcome.inserted) return { inserted: false, existing: this.remember(outcome.existing) };
    const inserted = this.remember(outcome.entry);
    this.emit({ kind: 'upsert', vm: inserted });
    return { inserted: true, vm: inserted };
  }

  get(uid: string): MicroVM | undefined {
    const entry = this.read(uid);
    return entry !== undefined ? this.remember(entry) : undefined;
  }

  list(query: ListQuery): MicroVM[] {
    // Empty strings are proto3's "unset", and no VM has an empty namespace or name.
    const ns = query.namespace ? query.namespace : undefined;
    const name = query.name ? query.name : undefined;
    // The versions first: only a VM not parsed at its current version is read in full.
    let rows: VersionRow[];
    if (ns !== undefined && name !== undefined) rows = this.stmt.versionsNsName.all(ns, name);
    else if (ns !== undefined) rows = this.stmt.versionsNs.all(ns);
    else if (name !== undefined) rows = this.stmt.versionsName.all(name);
    else rows = this.stmt.versionsAll.all();
    const vms: MicroVM[] = [];
    for (const { uid, version } of rows) {
      const hit = this.parsed.get(uid, version);
      if (hit !== undefined) {
        vms.push(hit.vm);
        continue;
      }
      const row = this.stmt.getVm.get(uid);
      if (row) vms.push(this.remember(this.parse(row)));
    }
    return vms;
  }

  markDeleting(uid: string, now: number): MicroVM | undefined {
    const entry = this.writeLock.run(() => this.txMarkDeleting(uid, now));
    if (!entry) return undefined;
    const vm = this.remember(entry);
    this.emit({ kind: 'upsert', vm });
    return vm;
  }

  setIntent(uid: string, change: (current: LifecycleIntent) => LifecycleIntent, now: number): MicroVM | undefined {
    const entry = this.writeLock.run(() => this.txSetIntent(uid, change, now));
    if (!entry) return undefined;
    const vm = this.remember(entry);
    this.emit({ kind: 'upsert', vm });
    return vm;
  }

  saveStatus(uid: string, status: MicroVMStatus, now: number, expectedVersion?: number): MicroVM | undefined {
    const result = this.writeLock.run(() => this.txSaveStatus(uid, status, now, expectedVersion));
    if (!result) return undefined;
    const vm = this.remember(result.entry);
    if (result.changed) this.emit({ kind: 'upsert', vm });
    return vm;
  }

  remove(uid: string): void {
    const id = this.writeLock.run(() => this.txRemove(uid));
    this.parsed.delete(uid);
    if (id) this.emit({ kind: 'removed', id });
  }

  enqueue(uid: string, dueAt: number): void {
    this.writeLock.run(() => this.stmt.enqueue.run(dueAt, uid));
  }

  dequeue(uid: string): void {
    this.writeLock.run(() => this.stmt.dequeue.run(uid));
  }

  queue(): QueueEntry[] {
    return this.stmt.queue.all().map((r) => ({ uid: r.uid, dueAt: r.due_at }));
  }

  queueStats(now: number): QueueStats {
    const row = this.stmt.queueStats.get(now, now) ?? { entries: 0, due: 0, oldest_due: null };
    return { entries: row.entries, due: row.due, ...(row.oldest_due !== null ? { oldestDueAt: row.oldest_due } : {}) };
  }

  recordDevice(device: HostDeviceRecord): void {
    this.writeLock.run(() =>
      this.stmt.recordDevice.run({
        name: device.name,
        vm_uid: device.vmUid,
        kind: device.kind,
        device_id: device.deviceId,
        created_at: device.createdAt,
      }),
    );
  }

  forgetDevice(name: string): void {
    this.writeLock.run(() => this.stmt.forgetDevice.run(name));
  }

  devices(vmUid?: string): HostDeviceRecord[] {
    const rows = vmUid === undefined ? this.stmt.devicesAll.all() : this.stmt.devicesOfVm.all(vmUid);
    return rows.map(rowToDevice);
  }
  deviceNamed(name: string): HostDeviceRecord | undefined {
    const row = this.stmt.deviceNamed.get(name);
    return row !== undefined ? rowToDevice(row) : undefined;
  }

  onChange(listener: (change: VmChange) => void): () => void {
    // A wrapper per subscription, so subscribing the same function twice gives two independent
    // subscriptions and each unsubscribe removes only its own.
    const entry: Listener = { fn: listener };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  durable(): Promise<void> {
    if (this.syncing === undefined) {
      this.syncing = this.syncWal().finally(() => (this.syncing = undefined));
      return this.syncing;
    }
    // The running fsync may have started before this caller's commit: one more, shared by everyone who asks meanwhile.
    this.nextSync ??= this.syncing
      .catch(() => undefined)
      .then(() => {
        this.nextSync = undefined;
        return this.durable();
      });
    return this.nextSync;
  }

  close(): void {
    this.listeners.clear();
    const wal = this.wal;
    this.wal = undefined;
    void wal?.then((h) => h.close()).catch(() => undefined);
    if (this.db.open) this.db.close();
  }

  private async syncWal(): Promise<void> {
    if (!this.db.open) throw new Error('the store is closed');
    // The WAL exists while the connection is open (SQLite keeps and reuses the file, never
    // replaces it), so one handle serves every sync.
    this.wal ??= open(`${this.db.name}-wal`, 'r');
    const handle = await this.wal.catch((e: unknown) => {
      this.wal = undefined;
      throw e;
    });
    await handle.datasync();
  }

  private mustGet(uid: string): CachedVm {
    const row = this.stmt.getVm.get(uid);
    if (!row) throw new Error(`microvm ${uid} vanished inside its own transaction`);
    return this.parse(row);
  }

  /** The VM at its current version: kept if parsed before, else read and parsed (not kept: see remember). */
  private read(uid: string): CachedVm | undefined {
    const version = this.stmt.versionOf.get(uid);
    if (version === undefined) return undefined;
    const hit = this.parsed.get(uid, version);
    if (hit !== undefined) return hit;
    const row = this.stmt.getVm.get(uid);
    return row ? this.parse(row) : undefined;
  }

  private parse(row: VmRow): CachedVm {
    const hit = this.parsed.get(row.uid, row.version);
    if (hit !== undefined) return hit;
    const vm = rowToVm(row);
    return { vm, statusJson: canonicalJson(vm.status) };
  }

  /** Keeps a committed row's VM for later reads (never one from inside a transaction: it may roll back). */
  private remember(entry: CachedVm): MicroVM {
    if (this.parsed.get(entry.vm.id.uid, entry.vm.version) !== entry) this.parsed.set(entry);
    return entry.vm;
  }

  /**
   * Hears of every change this connection commits (not of those applied with applyCommitted):
   * how the daemon's other thread is told (daemon/thread-bridge.ts). One hearer.
   */
  forwardCommits(hearer: ((change: VmChange) => void) | undefined): void {
    this.forward = hearer;
  }

  /**
   * A change another connection (the daemon's other thread) committed: the VM is read again
   * from the database and told to this side's listeners. A VM already removed, or whose version
   * this side has told already, is not told again.
   */
  applyCommitted(change: { readonly kind: 'upsert'; readonly uid: string } | { readonly kind: 'removed'; readonly id: VmId }): void {
    if (change.kind === 'removed') {
      this.parsed.delete(change.id.uid);
      this.emitted.delete(change.id.uid);
      this.notify({ kind: 'removed', id: change.id });
      return;
    }
    const vm = this.get(change.uid);
    if (vm === undefined || (this.emitted.get(vm.id.uid) ?? -1) >= vm.version) return;
    this.emitted.set(vm.id.uid, vm.version);
    this.notify({ kind: 'upsert', vm });
  }

  private emit(change: VmChange): void {
    if (this.forward !== undefined) {
      if (change.kind === 'upsert') this.emitted.set(change.vm.id.uid, change.vm.version);
      else this.emitted.delete(change.id.uid);
      this.forward(change);
    }
    this.notify(change);
  }

  private notify(change: VmChange): void {
    // Snapshot: a listener may unsubscribe (or subscribe) while being notified.
    for (const l of [...this.listeners]) {
      try {
        l.fn(change);
      } catch {
        // The change is committed; a broken observer must not turn it into a failed call.
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Row mapping

const VM_STATES: ReadonlySet<string> = new Set<VmState>(['pending', 'created', 'failed', 'deleting']);
const IFACE_TYPES: ReadonlySet<string> = new Set<IfaceType>(['macvtap', 'tap']);

function rowToVm(row: VmRow): MicroVM {
  const spec = parseObject(row.uid, 'spec', row.spec);
  const status = parseObject(row.uid, 'status', row.status);
  if (typeof status['state'] !== 'string' || !VM_STATES.has(status['state'])) {
    throw new CorruptRowError(row.uid, 'status', `unknown state ${JSON.stringify(status['state'])}`);
  }
  const vm: MicroVM = {
    id: { namespace: row.namespace, name: row.name, uid: row.uid },
    version: row.version,
    // Written only by this class from the typed model; the checks above catch damage, not drift.
    spec: spec as unknown as MicroVMSpec,
    status: status as unknown as MicroVMStatus,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ...intentFromRow(row),
  };
  return row.deleted_at === null ? vm : { ...vm, deletedAt: row.deleted_at };
}

const POWER: ReadonlySet<string> = new Set<PowerIntent>(['running', 'stopped', 'paused']);

/** The row's lifecycle intent; the default one is left out, so such a VM reads as before (no intent). */
function intentFromRow(row: VmRow): { intent?: LifecycleIntent } {
  const raw = parseObject(row.uid, 'intent', row.intent);
  const power = raw['power'];
  const restarts = raw['restarts'];
  if (typeof power !== 'string' || !POWER.has(power) || typeof restarts !== 'number' || !Number.isSafeInteger(restarts) || restarts < 0) {
    throw new CorruptRowError(row.uid, 'intent', `not a lifecycle intent: ${row.intent.slice(0, 200)}`);
  }
  if (power === 'running' && restarts === 0) return {};
  return { intent: { power: power as PowerIntent, restarts } };
}

function rowToDevice(row: DeviceRow): HostDeviceRecord {
  if (!IFACE_TYPES.has(row.kind)) throw new Error(`host device record ${row.name} has unknown kind ${JSON.stringify(row.kind)}`);
  return { name: row.name, vmUid: row.vm_uid, kind: row.kind as IfaceType, deviceId: row.device_id, createdAt: row.created_at };
}

export class CorruptRowError extends Error {
  constructor(
    readonly uid: string,
    readonly column: string,
    detail: string,
  ) {
    super(`microvm ${uid}: stored ${column} is unreadable: ${detail}`);
    this.name = 'CorruptRowError';
  }
}

/**
 * The database and its WAL files are the daemon's alone (0600): the state dir is searchable by
 * VMM uids (ADR 0009), and a well-known file name is all a reader would need. Made before SQLite
 * opens it (a new file is never readable by others, even for a moment); SQLite gives the -wal
 * and -shm files the database's mode.
 */
function restrictDatabaseFiles(path: string): void {
  closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

function parseObject(uid: string, column: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CorruptRowError(uid, column, e instanceof Error ? e.message : String(e));
  }
  if (!isPlainObject(value)) throw new CorruptRowError(uid, column, 'not a JSON object');
  return value;
}
