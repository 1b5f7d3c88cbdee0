// The cloud-init NoCloud disk (COMPAT §4): a FAT filesystem labelled `cidata` holding meta-data,
// user-data, vendor-data and network-config, for providers that deliver metadata as a disk (QEMU,
// Cloud Hypervisor). Built with Debian's dosfstools (mkfs.vfat -C makes the image file) and
// mtools (mcopy writes into it): no loop mount, no root. execFile only, never a shell.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { EMPTY_CLOUD_CONFIG } from '../../core/cloud-init.js';
import type { CloudInitDiskBuilder, CloudInitFiles } from '../../core/ports.js';
import { findExecutable, programSearchDirs } from '../host/programs.js';

const run = promisify(execFile);

export const CIDATA_LABEL = 'cidata';
const FILE_NAMES = ['meta-data', 'user-data', 'vendor-data', 'network-config'] as const;
const MIN_KIB = 1024;

export interface FatCidataDiskOptions {
  /** Default: `mkfs.vfat` found in the search path. */
  readonly mkfsBin?: string;
  /** Default: `mcopy` found in the search path. */
  readonly mcopyBin?: string;
  /** Directories searched for the tools; default PATH, then the sbin directories. */
  readonly searchPath?: readonly string[];
  /** Per command; default 30 s. */
  readonly timeoutMs?: number;
}

/** Image size in KiB (mkfs.vfat -C counts 1 KiB blocks): the files with slack for FAT and clusters. */
export function cidataSizeKib(contents: readonly string[]): number {
  // Each file takes whole clusters (at most 4 KiB on an image this small), plus long-name entries.
  const data = contents.reduce((sum, c) => sum + Math.ceil(Math.max(Buffer.byteLength(c), 1) / 4096) * 4, 0);
  return Math.max(MIN_KIB, Math.ceil(data * 1.1) + 256);
}

function commandError(tool: string, e: unknown): Error {
  const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String(e.stderr).trim() : '';
  const message = e instanceof Error ? e.message : String(e);
  return new Error(`building the cidata disk: ${tool} failed: ${stderr !== '' ? stderr : message}`);
}

export class FatCidataDiskBuilder implements CloudInitDiskBuilder {
  private tools: { mkfs: string; mcopy: string } | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly options: FatCidataDiskOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Resolves the tools once; a miss names the Debian packages to install and is looked up again
   * next time (the packages may have been installed meanwhile).
   */
  private resolveTools(): { mkfs: string; mcopy: string } {
    if (this.tools !== undefined) return this.tools;
    // mkfs.vfat lives in sbin, which a non-root PATH often lacks: findExecutable looks there too.
    const dirs = this.options.searchPath ?? programSearchDirs();
    const mkfsName = this.options.mkfsBin ?? 'mkfs.vfat';
    const mcopyName = this.options.mcopyBin ?? 'mcopy';
    const mkfs = findExecutable(mkfsName, dirs);
    const mcopy = findExecutable(mcopyName, dirs);
    if (mkfs === undefined || mcopy === undefined) {
      const missing = [
        ...(mkfs === undefined ? [`${mkfsName} (Debian package dosfstools)`] : []),
        ...(mcopy === undefined ? [`${mcopyName} (Debian package mtools)`] : []),
      ];
      throw new Error(`building the cidata disk needs ${missing.join(' and ')}, not found: apt-get install dosfstools mtools`);
    }
    this.tools = { mkfs, mcopy };
    return this.tools;
  }

  async build(path: string, files: CloudInitFiles): Promise<void> {
    const { mkfs, mcopy } = this.resolveTools();
    const contents = new Map<string, string>();
    for (const name of FILE_NAMES) {
      const value = files[name];
      if (value !== undefined) contents.set(name, value);
    }
    if (!contents.has('user-data')) contents.set('user-data', EMPTY_CLOUD_CONFIG);

    const dir = dirname(path);
    // Unique names: two builds of one path never share a partial image.
    const partial = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`);
    const staging = await mkdtemp(join(dir, `.${basename(path)}.files-`));
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    try {
      try {
        await run(mkfs, ['-n', CIDATA_LABEL, '-C', partial, String(cidataSizeKib([...contents.values()]))], { timeout: this.timeoutMs, env });
      } catch (e) {
        throw commandError('mkfs.vfat', e);
      }
      for (const [name, text] of contents) {
        const source = join(staging, name);
        await writeFile(source, text);
        try {
          await run(mcopy, ['-o', '-i', partial, source, `::${name}`], { timeout: this.timeoutMs, env });
        } catch (e) {
          throw commandError('mcopy', e);
        }
      }
      await rename(partial, path);
    } catch (e) {
      await rm(partial, { force: true });
      throw e;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
}
