// One daemon per state dir. Two daemons on one dir would both reconcile the same VMs (two VMMs per
// VM, each deleting the other's devices), so the state dir is claimed at start with an exclusive
// lock that the kernel drops when the process ends, however it ends (an fcntl lock, taken through
// SQLite, which is already here: Node has no flock). The claim also yields the daemon's owner id,
// which every host device alias carries, so a daemon never touches another daemon's devices.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from './open-database.js';

export const LOCK_FILE = 'flintlockd.lock';
export const PID_FILE = 'flintlockd.pid';
export const OWNER_FILE = 'daemon-id';
const OWNER_PATTERN = /^[a-f0-9]{12}$/;

export class StateDirInUseError extends Error {
  constructor(stateDir: string, pid: string | undefined) {
    super(`state-dir ${stateDir} is in use by another flintlockd${pid !== undefined ? ` (pid ${pid})` : ''}: stop it, or give this one another state-dir`);
    this.name = 'StateDirInUseError';
  }
}

export interface StateDirClaim {
  /** This state dir's daemon id: 12 hex characters, made once and kept in `<state-dir>/daemon-id`. */
  readonly owner: string;
  /** Drops the lock (the kernel drops it too if the process dies). */
  release(): void;
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function ownerId(stateDir: string): string {
  const path = join(stateDir, OWNER_FILE);
  const existing = readOptional(path);
  if (existing !== undefined && OWNER_PATTERN.test(existing)) return existing;
  const owner = randomBytes(6).toString('hex');
  writeFileSync(`${path}.tmp`, `${owner}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
  return owner;
}

/**
 * Claims `stateDir` (creating it, mode 0700; the daemon then makes it 0711 for the VMMs' uids,
 * ADR 0009, while the claim's own files stay 0600) or throws StateDirInUseError.
 */
export function claimStateDir(stateDir: string): StateDirClaim {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const db = openDatabase(join(stateDir, LOCK_FILE), { timeout: 0 });
  try {
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code === 'SQLITE_BUSY') throw new StateDirInUseError(stateDir, readOptional(join(stateDir, PID_FILE)));
    throw e;
  }
  chmodSync(join(stateDir, LOCK_FILE), 0o600);
  writeFileSync(join(stateDir, PID_FILE), `${process.pid}\n`, { mode: 0o600 });
  const owner = ownerId(stateDir);
  let released = false;
  return {
    owner,
    release: () => {
      if (released) return;
      released = true;
      rmSync(join(stateDir, PID_FILE), { force: true });
      db.close();
    },
  };
}
