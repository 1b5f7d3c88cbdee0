// The cloud-init NoCloud disk (COMPAT §4): a FAT filesystem labelled CIDATA holding meta-data,
// user-data, vendor-data and network-config, for providers that deliver metadata as a disk (QEMU,
// Cloud Hypervisor). The image is built in memory (fat-image.ts: a few hundred bytes of
// structure around the files) and written with one open, write and fsync, then renamed into
// place: no mkfs.vfat or mcopy process per VM (they took ~14 ms of a create), no loop mount.
//
// The rename matters: the cloud-init step is done once the file exists, so a crash must never
// leave a partial image under the final name. The fsync before it makes the image's data durable
// before its name is.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EMPTY_CLOUD_CONFIG } from '../../core/cloud-init.js';
import type { CloudInitDiskBuilder, CloudInitFiles } from '../../core/ports.js';
import { fatImage, type FatFile } from './fat-image.js';

/** cloud-init's NoCloud looks for `cidata` or `CIDATA`; FAT labels are upper case. */
export const CIDATA_LABEL = 'CIDATA';
const FILE_NAMES = ['meta-data', 'user-data', 'vendor-data', 'network-config'] as const;

export interface FatCidataDiskOptions {
  /** The entries' timestamps; default now. */
  readonly now?: () => Date;
  /** The volume serial; default random (as mkfs.vfat makes it). */
  readonly volumeId?: () => number;
}

/** The cidata image's bytes: the files given, with an empty #cloud-config user-data when none is. */
export function cidataImage(files: CloudInitFiles, date: Date, volumeId: number): Buffer {
  const entries: FatFile[] = [];
  for (const name of FILE_NAMES) {
    const text = files[name] ?? (name === 'user-data' ? EMPTY_CLOUD_CONFIG : undefined);
    if (text !== undefined) entries.push({ name, data: Buffer.from(text, 'utf8') });
  }
  return fatImage(entries, { label: CIDATA_LABEL, volumeId, date });
}

export class FatCidataDiskBuilder implements CloudInitDiskBuilder {
  constructor(private readonly options: FatCidataDiskOptions = {}) {}

  async build(path: string, files: CloudInitFiles): Promise<void> {
    const image = cidataImage(files, this.options.now?.() ?? new Date(), this.options.volumeId?.() ?? randomBytes(4).readUInt32LE(0));
    // Unique names: two builds of one path never share a partial image.
    const partial = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`);
    try {
      // 0600: user-data may hold secrets; the sandbox step grants the VM's group read access.
      const fh = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        for (let written = 0; written < image.length;) {
          written += (await fh.write(image, written, image.length - written, written)).bytesWritten;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(partial, path);
    } catch (e) {
      await rm(partial, { force: true });
      throw new Error(`building the cidata disk ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
}
