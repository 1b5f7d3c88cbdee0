// The state dir itself (ADR 0009): VMMs run as uids of their own and reach their VM dirs and the
// shared image files below it by path, so it is searchable by everyone but listable by the daemon
// only (0711); what is in it is protected one level down (the database 0600, the image cache's
// private parts 0700, VM dirs by group). Set at every start: an older daemon made it 0700.
import { chmod, mkdir } from 'node:fs/promises';

export const STATE_DIR_MODE = 0o711;

export async function prepareStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: STATE_DIR_MODE });
  await chmod(stateDir, STATE_DIR_MODE);
}
