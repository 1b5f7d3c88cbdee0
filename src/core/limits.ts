// Bounds on a create request, so that no request can make the daemon create without end (1000 taps
// on one bridge), store what no client can read back (a stored VM always fits a default 4 MiB gRPC
// message, with room to spare), or hand the guest kernel more than it takes. Only the metadata
// size is configurable (`maximum-metadata-kb`): a kubeadm user-data is tens of kB, some are more.

export const REQUEST_LIMITS = {
  /** Guest NICs per VM (each is a host device and a VMM argument). */
  interfaces: 16,
  /** Additional volumes per VM (each is a disk file and a VMM argument). */
  additionalVolumes: 16,
  labels: 64,
  labelValueBytes: 256,
  metadataKeys: 16,
  /** Linux on x86 takes 2048 bytes of command line; the daemon's own entries get the rest. */
  cmdlineBytes: 1536,
  cmdlineEntries: 64,
  cmdlineKeyBytes: 64,
  /** 1 TiB: volumes are sparse files, but mkfs.ext4 still lays out metadata for the whole size. */
  volumeSizeMb: 1024 * 1024,
  imageRefBytes: 1024,
  guestPathBytes: 1024,
  hostPathBytes: 4096,
  nameservers: 8,
} as const;

/** Default and ceiling of `maximum-metadata-kb`: keys plus values, base64 as sent. */
export const DEFAULT_METADATA_KB = 1024;
export const MAX_METADATA_KB = 3072;

/**
 * Default `watch-buffer-events` and `watch-buffer-size`: what may wait for one watch client before
 * it is cut off (docs/adr/0011): about 4000 typical events, or 8 MiB (twice the largest message a
 * stored VM makes).
 */
export const DEFAULT_WATCH_BUFFER = { events: 4096, bytes: 8 * 1024 * 1024 } as const;
