// VM state directories and device nodes on the local filesystem, and files inside unpacked
// images, looked up without leaving them (root-path.ts).
import { execFile } from 'node:child_process';
import { lstat, mkdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { VmId } from '../../core/model.js';
import type { FileInRoot, VmFilesystem } from '../../core/ports.js';
import { listDirInRoot, regularFileInRoot } from './root-path.js';

const run = promisify(execFile);

/** Linux dev_t decoding (glibc's gnu_dev_major/minor). */
function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

export class NodeVmFilesystem implements VmFilesystem {
  constructor(private readonly stateDir: string) {}

  vmDir(id: VmId): string {
    return join(this.stateDir, 'vm', id.namespace, id.name, id.uid);
  }

  async ensureVmDir(id: VmId): Promise<boolean> {
    const created = await mkdir(this.vmDir(id), { recursive: true, mode: 0o755 });
    return created !== undefined;
  }

  async vmDirExists(id: VmId): Promise<boolean> {
    try {
      return (await stat(this.vmDir(id))).isDirectory();
    } catch (e) {
      if (isMissing(e)) return false;
      throw e;
    }
  }

  async removeVmDir(id: VmId): Promise<void> {
    await rm(this.vmDir(id), { recursive: true, force: true });
    // Prune the now-empty <name> and <ns> parents; a non-empty one holds other VMs and stays.
    for (const dir of [join(this.stateDir, 'vm', id.namespace, id.name), join(this.stateDir, 'vm', id.namespace)]) {
      try {
        await rmdir(dir);
      } catch {
        return;
      }
    }
  }

  async charDevice(path: string): Promise<{ major: number; minor: number } | undefined> {
    try {
      const info = await lstat(path, { bigint: true });
      return info.isCharacterDevice() ? splitDev(info.rdev) : undefined;
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  async ensureCharDevice(path: string, dev: { major: number; minor: number }): Promise<void> {
    const have = await this.charDevice(path);
    if (have !== undefined && have.major === dev.major && have.minor === dev.minor) return;
    await unlink(path).catch((e: unknown) => {
      if (!isMissing(e)) throw e;
    });
    // Node has no mknod(2) binding; coreutils' mknod is always there on Debian.
    await run('mknod', ['-m', '0600', path, 'c', String(dev.major), String(dev.minor)]);
  }

  async cloneFile(source: string, target: string): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    // Written beside the target and renamed, so a crash never leaves a half copy under the
    // final name. --reflink=auto shares blocks (btrfs/xfs); elsewhere --sparse keeps holes.
    const partial = `${target}.partial`;
    await run('cp', ['--reflink=auto', '--sparse=always', source, partial]);
    await rename(partial, target);
  }

  async overlayFile(backing: string, target: string): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    const partial = `${target}.partial`;
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', backing, partial]);
    await rename(partial, target);
  }

  async fileExists(path: string): Promise<boolean> {
    try {
      return (await lstat(path)).isFile();
    } catch (e) {
      if (isMissing(e)) return false;
      throw e;
    }
  }

  fileInRoot(root: string, path: string): Promise<FileInRoot> {
    return Promise.resolve().then(() => regularFileInRoot(root, path));
  }

  listDirInRoot(root: string, path: string): Promise<string[]> {
    return Promise.resolve().then(() => listDirInRoot(root, path));
  }
}
