// VM state directories and device nodes on the local filesystem, and files inside unpacked
// images, looked up without leaving them (root-path.ts).
//
// Who may reach what (ADR 0009): `<state-dir>/vm`, `vm/<ns>` and `vm/<ns>/<name>` are searchable
// but not listable (0711), so a VMM reaches its own VM dir by name and learns nothing of the
// others; each VM dir belongs to root with the VM's gid (sticky, group-writable: the VMM makes its
// sockets, but can't remove or replace what the daemon made); the files the VMM opens are root's
// with the VM's gid, 0640 or 0660.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { VmId } from '../../core/model.js';
import type { FileAccess, FileInRoot, VmFilesystem, VmmAccess } from '../../core/ports.js';
import { PRIVATE_VM_DIR_MODE, VM_DIR_MODE, VMM_ACCESS_MODES } from '../../core/sandbox.js';
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

/** Directories on the way to the VM dirs. */
const SEARCH_ONLY = 0o711;

/** The daemon's own uid (root in production; tests as root too). */
const daemonUid = (): number => process.getuid?.() ?? 0;

export class NodeVmFilesystem implements VmFilesystem {
  constructor(private readonly stateDir: string) {}

  vmsDir(): string {
    return join(this.stateDir, 'vm');
  }

  vmDir(id: VmId): string {
    return join(this.vmsDir(), id.namespace, id.name, id.uid);
  }

  async ensureVmDir(id: VmId, gid?: number): Promise<boolean> {
    const dir = this.vmDir(id);
    for (const parent of [join(this.stateDir, 'vm'), join(this.stateDir, 'vm', id.namespace), join(this.stateDir, 'vm', id.namespace, id.name)]) {
      await mkdir(parent, { recursive: true, mode: SEARCH_ONLY });
      await chmod(parent, SEARCH_ONLY);
    }
    let created = true;
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      created = false;
    }
    // chown before chmod: chown(2) may clear mode bits.
    if (gid !== undefined) await chown(dir, daemonUid(), gid);
    await chmod(dir, gid !== undefined ? VM_DIR_MODE : PRIVATE_VM_DIR_MODE);
    return created;
  }

  async vmDirAccess(id: VmId): Promise<FileAccess | undefined> {
    return this.access(this.vmDir(id));
  }

  async access(path: string): Promise<FileAccess | undefined> {
    try {
      const st = await lstat(path);
      return { kind: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other', uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  async grantVmmAccess(path: string, gid: number, access: VmmAccess): Promise<void> {
    // Through an fd opened without following symlinks: the path is in a directory the VMM can
    // write to, and a chown through a symlink would hand it any file on the host.
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const st = await fh.stat();
      const want = access === 'dir' ? st.isDirectory() : st.isFile();
      if (!want) throw new Error(`${path} is not a ${access === 'dir' ? 'directory' : 'regular file'}; not granting the VMM access to it`);
      await fh.chown(daemonUid(), gid);
      await fh.chmod(VMM_ACCESS_MODES[access]);
    } finally {
      await fh.close();
    }
  }

  async ensureFile(path: string): Promise<void> {
    try {
      // O_EXCL with O_CREAT never follows a symlink: whatever is there already stays as it is.
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      await fh.close();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
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
