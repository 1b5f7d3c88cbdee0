// The files and directories a config names, checked when it is loaded so that a wrong path stops
// the daemon with the key, the path and what to put there, rather than with an errno from deep in
// start-up (`EEXIST ... mkdir`, `EISDIR ... read`, sqlite's "unable to open database file").
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';

/** The keys whose value is a file, and what the file holds (the hint after "set <key> to"). */
export const TLS_FILE_KEYS = {
  'tls-cert': "the server certificate's PEM file",
  'tls-key': "the PEM file of the server certificate's private key",
  'tls-client-ca': "the PEM file of the CA that signs the clients' certificates",
} as const;

export interface ConfiguredPaths {
  readonly insecure: boolean;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly tlsClientCa: string;
}

function statOf(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

const writable = (path: string): boolean => {
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * What is wrong with `state-dir`: a file in its place or above it, or a directory this user can't
 * write. Checked at start rather than at load: whether it is writable depends on who runs it.
 */
export function stateDirProblem(stateDir: string): string | undefined {
  const what = 'set state-dir to a directory this daemon may write (it is created when missing)';
  const stat = statOf(stateDir);
  if (stat !== undefined) {
    if (!stat.isDirectory()) return `state-dir ${stateDir} is a file, not a directory: ${what}, or move the file away`;
    return writable(stateDir)
      ? undefined
      : `state-dir ${stateDir} is not writable by this user (uid ${process.getuid?.() ?? '?'}): run flintlockd as root or ${what}`;
  }
  // Missing: it will be created below its nearest existing ancestor, which must be a writable directory.
  let ancestor = dirname(stateDir);
  while (statOf(ancestor) === undefined && dirname(ancestor) !== ancestor) ancestor = dirname(ancestor);
  const above = statOf(ancestor);
  if (above !== undefined && !above.isDirectory()) return `state-dir ${stateDir} cannot be created: ${ancestor} is a file, not a directory; ${what}`;
  if (!writable(ancestor)) return `state-dir ${stateDir} cannot be created: ${ancestor} is not writable by this user; run flintlockd as root or ${what}`;
  return undefined;
}

function tlsFileProblem(key: keyof typeof TLS_FILE_KEYS, path: string): string | undefined {
  if (path === '') return undefined;
  const stat = statOf(path);
  if (stat === undefined) return `${key} ${path} does not exist: set ${key} to ${TLS_FILE_KEYS[key]}`;
  if (stat.isDirectory()) return `${key} ${path} is a directory: set ${key} to ${TLS_FILE_KEYS[key]}`;
  return undefined;
}

/** Every problem with the TLS files of a config (empty when they look usable). */
export function tlsPathProblems(c: ConfiguredPaths): string[] {
  if (c.insecure) return [];
  const problems = [tlsFileProblem('tls-cert', c.tlsCert), tlsFileProblem('tls-key', c.tlsKey), tlsFileProblem('tls-client-ca', c.tlsClientCa)];
  return problems.filter((p): p is string => p !== undefined);
}
