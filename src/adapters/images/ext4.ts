// ext4 filesystem images from unpacked root filesystems: `mkfs.ext4 -d` copies a directory tree
// (owners, modes, symlinks kept as links, hard links, fifos) into a new filesystem in a plain
// file, so no mount, loop device or devmapper pool is involved. The tree has no device nodes and
// no setuid/setgid bits (unpack.ts), so the volume has none either (ADR 0006). Built into
// `<name>.img.partial`, fsynced, then renamed: a file under the final name is always complete.
import { execFile } from 'node:child_process';
import { rename, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';

import { missingProgramMessage } from '../host/dependencies.js';
import { findExecutable } from '../host/programs.js';
import { fsyncFile } from './content-store.js';
import type { Timings } from './timings.js';

const execFileAsync = promisify(execFile);

const MiB = 1024 * 1024;

export interface ContentSize {
  /** Disk usage of the tree (blocks, hard links counted once). */
  readonly bytes: number;
  readonly inodes: number;
}

export interface Ext4Build {
  readonly rootfs: string;
  /** Final path of the image; `<target>.partial` while it is built. */
  readonly target: string;
  /** Requested size; undefined sizes to the content. */
  readonly sizeMb?: number;
  /** Filesystem label (ext4 allows 16 bytes). */
  readonly label: string;
  /** The mkfs.ext4 executable (default: from PATH, then /usr/sbin, /sbin). */
  readonly mkfs?: string;
  readonly timings?: Timings;
}

/** Content size as `du` sees it: what the files occupy, which is what the filesystem must hold. */
export async function contentSize(rootfs: string): Promise<ContentSize> {
  const [bytes, inodes] = await Promise.all([execFileAsync('du', ['-s', '-x', '-B1', rootfs]), execFileAsync('du', ['-s', '-x', '--inodes', rootfs])]);
  const parse = (out: string): number => Number(out.trim().split(/\s+/)[0]);
  return { bytes: parse(bytes.stdout), inodes: parse(inodes.stdout) };
}

/** Content plus 20% and 16 MiB for the journal and metadata, rounded up to a MiB. */
export function autoSizeMb(contentBytes: number): number {
  return Math.ceil((contentBytes * 1.2 + 16 * MiB) / MiB);
}

/** mke2fs.conf defaults: bytes per inode by filesystem size ("floppy", "small", default). */
function defaultInodes(sizeMb: number): number {
  const ratio = sizeMb < 3 ? 8192 : sizeMb < 512 ? 4096 : 16384;
  return Math.floor((sizeMb * MiB) / ratio);
}

/**
 * Inodes to ask for, when the defaults are too few for the image (many small files): mkfs would
 * otherwise fail part-way with "Could not allocate inode". Undefined keeps the defaults, which
 * leave the VM room for its own files.
 */
function inodesNeeded(content: ContentSize, sizeMb: number): number | undefined {
  const need = Math.ceil(content.inodes * 1.25) + 64;
  return need > defaultInodes(sizeMb) ? need : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function runMkfs(binary: string | undefined, args: string[]): Promise<void> {
  // mkfs.ext4 lives in sbin, which a daemon started from a user shell may lack on PATH.
  const mkfs = findExecutable(binary ?? 'mkfs.ext4');
  if (mkfs === undefined) throw new Error(missingProgramMessage(binary ?? 'mkfs.ext4'));
  try {
    await execFileAsync(mkfs, args, { maxBuffer: 16 * MiB });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const detail = (err.stderr ?? '').trim() || err.message;
    throw new Error(`mkfs.ext4 failed: ${detail}`, { cause: e });
  }
}

/** Builds the image unless it already exists; returns its path. */
export async function buildExt4(build: Ext4Build): Promise<string> {
  if (await exists(build.target)) return build.target;
  const t = build.timings;
  const content = await (t?.time('ext4: du', () => contentSize(build.rootfs)) ?? contentSize(build.rootfs));
  const contentMb = Math.ceil(content.bytes / MiB);
  if (build.sizeMb !== undefined && build.sizeMb < contentMb) {
    throw new Error(`size_in_mb ${build.sizeMb} is smaller than the image content (${contentMb} MiB)`);
  }
  let sizeMb = build.sizeMb ?? autoSizeMb(content.bytes);
  let inodes = inodesNeeded(content, sizeMb);
  if (build.sizeMb === undefined && inodes !== undefined) {
    // Extra inode tables take room too (256 bytes each).
    sizeMb += Math.ceil((inodes * 256) / MiB);
    inodes = inodesNeeded(content, sizeMb);
  }

  const partial = `${build.target}.partial`;
  await rm(partial, { force: true });
  const args = ['-q', '-F', '-d', build.rootfs, '-L', build.label.slice(0, 16)];
  if (inodes !== undefined) args.push('-N', String(inodes));
  args.push(partial, `${sizeMb}M`);
  try {
    await (t?.time('ext4: mkfs.ext4 -d', () => runMkfs(build.mkfs, args)) ?? runMkfs(build.mkfs, args));
    await (t?.time('ext4: fsync', () => fsyncFile(partial)) ?? fsyncFile(partial));
    await rename(partial, build.target);
  } catch (e) {
    await rm(partial, { force: true });
    throw e;
  }
  return build.target;
}
