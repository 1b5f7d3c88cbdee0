// A FAT12/FAT16 filesystem image built in memory: a boot sector, two FATs, a root directory with
// a volume label and the files (VFAT long names where a name is not a plain 8.3 name), then the
// file data, each file in consecutive clusters. Enough for a cloud-init NoCloud disk, which the
// guest only reads; no subdirectories, no FAT32. Pure: no I/O, no clock, no randomness (the
// caller passes the date and volume serial), so the same input gives the same bytes.
//
// Layout and field offsets follow Microsoft's "FAT: General Overview of On-Disk Format" (the
// FAT12/16 BPB, directory entries, long-name entries and their checksum). The FAT type is decided
// by the cluster count alone, as Linux, fsck.fat and the specification decide it: below 4085
// clusters FAT12, below 65525 FAT16. The geometry chosen keeps the count inside its type's range.

export interface FatFile {
  /** A long name: letters, digits, '.', '-', '_'; at most 255 characters, unique ignoring case. */
  readonly name: string;
  readonly data: Uint8Array;
}

export interface FatImageOptions {
  /** Up to 11 characters: A-Z, 0-9, '-', '_' (FAT labels are upper case; fsck.fat -U insists). */
  readonly label: string;
  /** The volume serial number (32 bits). */
  readonly volumeId: number;
  /** Creation and modification time of every entry, stored as UTC. */
  readonly date: Date;
}

export interface FatGeometry {
  readonly fatBits: 12 | 16;
  readonly sectorsPerCluster: number;
  readonly fatSectors: number;
  readonly rootEntries: number;
  readonly totalSectors: number;
  readonly clusters: number;
}

const SECTOR = 512;
const DIR_ENTRY = 32;
const LFN_CHARS = 13;
const RESERVED_SECTORS = 1;
const FAT_COPIES = 2;
const MEDIA_FIXED_DISK = 0xf8;
/** mkfs.fat's CHS geometry for an image file; total sectors are a multiple of a track (mtools checks it). */
const SECTORS_PER_TRACK = 32;
const HEADS = 64;
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MIN_CLUSTERS = 4085;
const FAT16_MAX_CLUSTERS = 65524;
/** Cluster sizes tried, smallest first: small clusters for FAT12, up to 32 KiB for FAT16. */
const CANDIDATES: readonly { bits: 12 | 16; sectorsPerCluster: number }[] = [
  ...[1, 2, 4, 8].map((sectorsPerCluster) => ({ bits: 12 as const, sectorsPerCluster })),
  ...[8, 16, 32, 64].map((sectorsPerCluster) => ({ bits: 16 as const, sectorsPerCluster })),
];
const ATTR_ARCHIVE = 0x20;
const ATTR_VOLUME_ID = 0x08;
const ATTR_LONG_NAME = 0x0f;
const LAST_LONG_ENTRY = 0x40;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const PLAIN_83 = /^[A-Z0-9_-]{1,8}(\.[A-Z0-9_-]{1,3})?$/;
const LABEL = /^[A-Z0-9_-]{1,11}$/;

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);
const fatBytes = (bits: 12 | 16, entries: number): number => (bits === 12 ? ceilDiv(entries * 3, 2) : entries * 2);

/** Directory entries a name takes: its short entry, plus the long-name entries unless it is plain 8.3. */
function entriesFor(name: string): number {
  return PLAIN_83.test(name) ? 1 : 1 + ceilDiv(name.length, LFN_CHARS);
}

/**
 * The smallest image holding files of these sizes with this many root entries: the first
 * cluster size (FAT12 first) whose cluster count stays inside its FAT type's range.
 */
export function fatGeometry(sizes: readonly number[], rootEntries: number): FatGeometry {
  const rootSectors = (rootEntries * DIR_ENTRY) / SECTOR;
  for (const { bits, sectorsPerCluster } of CANDIDATES) {
    const needed = sizes.reduce((sum, size) => sum + ceilDiv(size, sectorsPerCluster * SECTOR), 0);
    let clusters = Math.max(needed, 1, bits === 16 ? FAT16_MIN_CLUSTERS : 0);
    // Rounding the total up to whole tracks adds free clusters, which may need a larger FAT,
    // which moves the data: repeat until the FAT covers every cluster the image holds.
    for (;;) {
      const fatSectors = ceilDiv(fatBytes(bits, clusters + 2), SECTOR);
      const dataStart = RESERVED_SECTORS + FAT_COPIES * fatSectors + rootSectors;
      const totalSectors = ceilDiv(dataStart + clusters * sectorsPerCluster, SECTORS_PER_TRACK) * SECTORS_PER_TRACK;
      const inImage = Math.floor((totalSectors - dataStart) / sectorsPerCluster);
      if (fatBytes(bits, inImage + 2) > fatSectors * SECTOR) {
        clusters = inImage;
        continue;
      }
      if (inImage > (bits === 12 ? FAT12_MAX_CLUSTERS : FAT16_MAX_CLUSTERS)) break;
      return { fatBits: bits, sectorsPerCluster, fatSectors, rootEntries, totalSectors, clusters: inImage };
    }
  }
  throw new Error(`FAT image: ${sizes.reduce((a, b) => a + b, 0)} bytes of files do not fit a FAT16 filesystem`);
}

/** DOS date and time (2-second resolution), from the UTC fields, clamped to 1980-2107. */
function dosDateTime(date: Date): { date: number; time: number } {
  const year = date.getUTCFullYear();
  if (year < 1980) return { date: (1 << 5) | 1, time: 0 }; // 1980-01-01 00:00:00
  if (year > 2107) return { date: (127 << 9) | (12 << 5) | 31, time: (23 << 11) | (59 << 5) | 29 }; // 2107-12-31 23:59:58
  return {
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | (date.getUTCSeconds() >> 1),
  };
}

/** An 8.3 name for `name`, as Windows derives one: upper case, the first six characters and ~N. */
function shortName(name: string, taken: Set<string>): string {
  if (PLAIN_83.test(name)) {
    const [base = '', ext = ''] = name.split('.');
    return base.padEnd(8) + ext.padEnd(3);
  }
  const dot = name.lastIndexOf('.');
  const clean = (s: string): string => s.toUpperCase().replace(/\./g, '');
  const base = clean(dot > 0 ? name.slice(0, dot) : name);
  const ext = clean(dot > 0 ? name.slice(dot + 1) : '').slice(0, 3);
  for (let n = 1; n < 1_000_000; n++) {
    const tail = `~${n}`;
    const candidate = (base.slice(0, 8 - tail.length) + tail).padEnd(8) + ext.padEnd(3);
    if (!taken.has(candidate)) return candidate;
  }
  throw new Error(`FAT image: no short name left for ${name}`);
}

/** The checksum of a short name that each of its long-name entries carries. */
function shortNameChecksum(short: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + (short[i] ?? 0)) & 0xff;
  return sum;
}

/** The long-name entries of `name`, in the order they are stored (last part first). */
function longNameEntries(name: string, checksum: number): Buffer {
  const count = ceilDiv(name.length, LFN_CHARS);
  const out = Buffer.alloc(count * DIR_ENTRY);
  // UCS-2 characters, a 0x0000 terminator when there is room, 0xFFFF padding after it.
  const units = new Uint16Array(count * LFN_CHARS).fill(0xffff);
  for (let i = 0; i < name.length; i++) units[i] = name.charCodeAt(i);
  if (name.length < units.length) units[name.length] = 0;
  const slots = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
  for (let part = 0; part < count; part++) {
    const entry = out.subarray((count - 1 - part) * DIR_ENTRY);
    entry[0] = (part + 1) | (part === count - 1 ? LAST_LONG_ENTRY : 0);
    entry[11] = ATTR_LONG_NAME;
    entry[13] = checksum;
    slots.forEach((offset, i) => entry.writeUInt16LE(units[part * LFN_CHARS + i] ?? 0, offset));
  }
  return out;
}

function writeShortEntry(entry: Buffer, short: string, attr: number, cluster: number, size: number, when: { date: number; time: number }): void {
  entry.write(short, 0, 11, 'latin1');
  entry[11] = attr;
  entry.writeUInt16LE(when.time, 14);
  entry.writeUInt16LE(when.date, 16);
  entry.writeUInt16LE(when.date, 18);
  entry.writeUInt16LE(when.time, 22);
  entry.writeUInt16LE(when.date, 24);
  entry.writeUInt16LE(cluster, 26);
  entry.writeUInt32LE(size, 28);
}

function writeBootSector(sector: Buffer, g: FatGeometry, options: FatImageOptions): void {
  sector.set([0xeb, 0x3c, 0x90], 0); // jmp to the boot code, nop
  sector.write('FLINTLCK', 3, 8, 'latin1');
  sector.writeUInt16LE(SECTOR, 11);
  sector[13] = g.sectorsPerCluster;
  sector.writeUInt16LE(RESERVED_SECTORS, 14);
  sector[16] = FAT_COPIES;
  sector.writeUInt16LE(g.rootEntries, 17);
  sector.writeUInt16LE(g.totalSectors < 0x10000 ? g.totalSectors : 0, 19);
  sector[21] = MEDIA_FIXED_DISK;
  sector.writeUInt16LE(g.fatSectors, 22);
  sector.writeUInt16LE(SECTORS_PER_TRACK, 24);
  sector.writeUInt16LE(HEADS, 26);
  sector.writeUInt32LE(0, 28); // hidden sectors: no partition table in front
  sector.writeUInt32LE(g.totalSectors < 0x10000 ? 0 : g.totalSectors, 32);
  sector[36] = 0x80; // drive number: a fixed disk
  sector[38] = 0x29; // extended boot signature: serial, label and type follow
  sector.writeUInt32LE(options.volumeId >>> 0, 39);
  sector.write(options.label.padEnd(11), 43, 11, 'latin1');
  sector.write(g.fatBits === 12 ? 'FAT12   ' : 'FAT16   ', 54, 8, 'latin1');
  sector.set([0xcd, 0x18], 62); // boot code: int 18h, "not bootable, try the next device"
  sector[510] = 0x55;
  sector[511] = 0xaa;
}

function setFatEntry(fat: Buffer, bits: 12 | 16, cluster: number, value: number): void {
  if (bits === 16) {
    fat.writeUInt16LE(value, cluster * 2);
    return;
  }
  // FAT12: two entries share three bytes; an even entry takes the low 12 bits.
  const offset = Math.floor((cluster * 3) / 2);
  const pair = fat.readUInt16LE(offset);
  fat.writeUInt16LE(cluster % 2 === 0 ? (pair & 0xf000) | value : (pair & 0x000f) | (value << 4), offset);
}

/** The whole filesystem image: root directory entries in the order `files` are given. */
export function fatImage(files: readonly FatFile[], options: FatImageOptions): Buffer {
  if (!LABEL.test(options.label)) throw new Error(`FAT image: label ${JSON.stringify(options.label)} is not 1-11 of A-Z 0-9 - _`);
  const seen = new Set<string>();
  for (const f of files) {
    if (!NAME.test(f.name)) throw new Error(`FAT image: file name ${JSON.stringify(f.name)} is not allowed`);
    if (seen.has(f.name.toUpperCase())) throw new Error(`FAT image: file name ${f.name} given twice`);
    seen.add(f.name.toUpperCase());
    if (f.data.length > 0xffffffff) throw new Error(`FAT image: ${f.name} is larger than a FAT file can be`);
  }
  const used = 1 + files.reduce((sum, f) => sum + entriesFor(f.name), 0);
  const rootEntries = Math.max(16, ceilDiv(used, 16) * 16);
  if (rootEntries > 0xfff0) throw new Error('FAT image: too many files for the root directory');
  const g = fatGeometry(
    files.map((f) => f.data.length),
    rootEntries,
  );
  const clusterBytes = g.sectorsPerCluster * SECTOR;
  const image = Buffer.alloc(g.totalSectors * SECTOR);
  const fat = Buffer.alloc(g.fatSectors * SECTOR);
  const rootStart = (RESERVED_SECTORS + FAT_COPIES * g.fatSectors) * SECTOR;
  const dataStart = rootStart + rootEntries * DIR_ENTRY;
  const when = dosDateTime(options.date);

  writeBootSector(image.subarray(0, SECTOR), g, options);
  const endOfChain = g.fatBits === 12 ? 0xfff : 0xffff;
  setFatEntry(fat, g.fatBits, 0, (g.fatBits === 12 ? 0xf00 : 0xff00) | MEDIA_FIXED_DISK);
  setFatEntry(fat, g.fatBits, 1, endOfChain); // FAT16: the clean-unmount and no-error bits set

  let slot = rootStart;
  writeShortEntry(image.subarray(slot, slot + DIR_ENTRY), options.label.padEnd(11), ATTR_VOLUME_ID, 0, 0, when);
  slot += DIR_ENTRY;
  const shorts = new Set<string>();
  let next = 2;
  for (const f of files) {
    const short = shortName(f.name, shorts);
    shorts.add(short);
    const count = ceilDiv(f.data.length, clusterBytes);
    const first = count === 0 ? 0 : next;
    for (let i = 0; i < count; i++) setFatEntry(fat, g.fatBits, next + i, i === count - 1 ? endOfChain : next + i + 1);
    image.set(f.data, dataStart + (next - 2) * clusterBytes);
    next += count;
    if (!PLAIN_83.test(f.name)) {
      const long = longNameEntries(f.name, shortNameChecksum(Buffer.from(short, 'latin1')));
      image.set(long, slot);
      slot += long.length;
    }
    writeShortEntry(image.subarray(slot, slot + DIR_ENTRY), short, ATTR_ARCHIVE, first, f.data.length, when);
    slot += DIR_ENTRY;
  }
  for (let copy = 0; copy < FAT_COPIES; copy++) image.set(fat, (RESERVED_SECTORS + copy * g.fatSectors) * SECTOR);
  return image;
}
