// Sizes in config values ("8GiB", "512M", "2048"): binary units whichever way they are written
// (K, KB and KiB are all 1024), as GNU tools read them; a bare number is MiB, the unit of the
// other *-mb keys, so `4096` can't be taken for 4096 bytes.
const UNIT_BYTES: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([bkmgt])(?:i?b)?)?$/i;

/** Bytes, or undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  if (match === null) return undefined;
  const unit = match[2]?.toLowerCase() ?? 'm';
  const bytes = Math.floor(Number(match[1]) * (UNIT_BYTES[unit] ?? Number.NaN));
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** "8 GiB", "1536 MiB", "300 bytes": the largest unit that shows the size exactly. */
export function formatSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && value % 1024 === 0 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value} ${units[unit] ?? 'bytes'}`;
}
