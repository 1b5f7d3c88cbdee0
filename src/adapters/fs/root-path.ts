// Paths inside an unpacked image root, resolved the way the guest will see them. The image's
// symlinks are kept verbatim (unpack.ts), so `boot/initrd -> /etc/hostname` names the *guest's*
// /etc/hostname; following it on the host with stat/open would hand the host's file to the VMM.
// Here every component is looked up with lstat and links are followed by hand: an absolute
// target restarts at the root, `..` never climbs above it, so whatever the links say the answer
// is a path under the root. The unpacker (creating parents) and the image file lookups (kernel,
// initrd, boot/ listing) share this one walk.
//
// Synchronous on purpose: each step is an lstat or readlink taking microseconds, and the
// unpacker calls this once per tar entry, where thread-pool round trips cost 20x (unpack.ts).
import { lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { FileInRoot, FileInRootProblem } from '../../core/ports.js';

/** Links followed in one lookup before giving up, as Linux does (MAXSYMLINKS, ELOOP). */
export const MAX_SYMLINKS = 40;

export type RootLookup =
  /** `rel`: the real path relative to the root ('' is the root itself); never a symlink. */
  | { readonly kind: 'found'; readonly rel: string; readonly stats: Stats; readonly links: number }
  /** `rel`: the real path of the first component that does not exist; `rest`: what was to follow it. */
  | { readonly kind: 'missing'; readonly rel: string; readonly rest: string; readonly links: number }
  /** `rel`: a component that has to be a directory (something follows it) but is not. */
  | { readonly kind: 'not-a-directory'; readonly rel: string; readonly links: number }
  | { readonly kind: 'loop'; readonly links: number };

/**
 * Resolves `path` (absolute or relative: both are taken from the root) inside `root`, following
 * every symlink component within the root, the last one included. With `create`, missing
 * components are made as directories (0755) on the way, so the result is then always found.
 */
export function lookupInRoot(root: string, path: string, create = false): RootLookup {
  const pending = path.split('/');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      // `resolved` holds real directories only, so dropping the last is the real parent.
      resolved.pop();
      continue;
    }
    const rel = [...resolved, part].join('/');
    const abs = join(root, rel);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (st === undefined) {
      if (!create) return { kind: 'missing', rel, rest: pending.filter((p) => p !== '' && p !== '.').join('/'), links };
      mkdirSync(abs, { mode: 0o755 });
      resolved.push(part);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return { kind: 'loop', links };
      const target = readlinkSync(abs);
      // Relative targets are relative to the link's directory, which `resolved` already is.
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/'));
      continue;
    }
    const last = pending.every((p) => p === '' || p === '.');
    if (!last && !st.isDirectory()) return { kind: 'not-a-directory', rel, links };
    resolved.push(part);
  }
  const rel = resolved.join('/');
  // The root itself is the operator's directory (it may be reached through a host symlink).
  return { kind: 'found', rel, stats: rel === '' ? statSync(root) : lstatSync(join(root, rel)), links };
}

function describeType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a fifo';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** "<path> is ..." or, when links were followed, "<path> resolves ... to /<rel>, which is ...". */
function subject(path: string, rel: string, links: number): string {
  const shown = path === '' ? '/' : path;
  return links === 0 ? `${shown} ` : `${shown} resolves through symbolic links inside the image to /${rel}, which `;
}

function missing(links: number): FileInRootProblem {
  return links === 0 ? 'missing' : 'dangling-symlink';
}

/**
 * The host path of the regular file `path` inside `root`, or why there is none. The returned
 * path has no symlink under the root, so opening it can't leave the root whatever the image says.
 */
export function regularFileInRoot(root: string, path: string): FileInRoot {
  const found = lookupInRoot(root, path);
  switch (found.kind) {
    case 'found':
      if (found.stats.isFile()) return { ok: true, hostPath: join(root, found.rel) };
      return { ok: false, problem: 'not-a-regular-file', path, reason: `${subject(path, found.rel, found.links)}is ${describeType(found.stats)}` };
    case 'missing': {
      const wanted = found.rest === '' ? found.rel : `${found.rel}/${found.rest}`;
      return { ok: false, problem: missing(found.links), path, reason: `${subject(path, wanted, found.links)}does not exist` };
    }
    case 'not-a-directory':
      return { ok: false, problem: missing(found.links), path, reason: `${path} does not exist: /${found.rel} in the image is not a directory` };
    case 'loop':
      return { ok: false, problem: 'symlink-loop', path, reason: `${path}: too many levels of symbolic links (more than ${MAX_SYMLINKS})` };
  }
}

/** Entry names of directory `path` inside `root` (resolved like regularFileInRoot); empty when it is none. */
export function listDirInRoot(root: string, path: string): string[] {
  const found = lookupInRoot(root, path);
  if (found.kind !== 'found' || !found.stats.isDirectory()) return [];
  return readdirSync(join(root, found.rel)).sort();
}
