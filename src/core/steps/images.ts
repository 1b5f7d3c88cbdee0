// Kernel, initrd and volumes from OCI images (COMPAT §5). The image service pulls and unpacks
// into a shared cache; these steps pick the files out and give each VM its own writable volume.
import { join, relative } from 'node:path';
import type { MicroVMStatus, Mount, VolumeSpec } from '../model.js';
import type { ImageService, LocalImage, PullOptions } from '../ports.js';
import type { Step, StepContext } from './step.js';

/** Where the usual VMM kernels live in an image, in the order tried (COMPAT §2.3). */
export const KERNEL_CANDIDATES = ['boot/vmlinux', 'vmlinux', 'boot/vmlinuz'];
export const INITRD_CANDIDATES = ['boot/initrd', 'initrd', 'boot/initrd.img', 'initrd.img'];

/** Where a VM's writable copy of a volume lives: a raw copy, or a qcow2 overlay on the shared base. */
export function volumePath(vmDir: string, volumeId: string, format: 'raw' | 'qcow2' = 'raw'): string {
  return join(vmDir, 'volumes', `${volumeId}.${format === 'qcow2' ? 'qcow2' : 'img'}`);
}

/**
 * The first candidate that is a regular file in the image, as a copy VMMs can read (ADR 0009), or
 * an error saying why each candidate that is there was refused and what `boot/` holds. Looked up
 * through the filesystem port, which keeps symlinks inside the image: `boot/initrd -> /etc/hostname`
 * is the image's /etc/hostname or nothing, never the host's. The image service copies the file
 * the lookup resolved to (its real path inside the image), never the path as the client wrote it.
 */
async function findInImage(ctx: StepContext, images: ImageService, image: LocalImage, what: string, candidates: readonly string[]): Promise<string> {
  const refused: string[] = [];
  for (const candidate of candidates) {
    const found = await ctx.ports.fs.fileInRoot(image.rootfs, candidate);
    if (found.ok) return images.vmmFile(image, relative(image.rootfs, found.hostPath));
    // A plain absence is the normal case for all but one candidate; anything else is worth saying.
    if (found.problem !== 'missing') refused.push(found.reason);
  }
  const boot = await ctx.ports.fs.listDirInRoot(image.rootfs, 'boot');
  throw new Error(
    `${what} ${candidates.join(' or ')} not found in image ${image.ref}${refused.length > 0 ? ` (${refused.join('; ')})` : ''}; its boot/ directory ${boot.length > 0 ? `holds: ${boot.join(', ')}` : 'is empty or missing'}`,
  );
}

/** The pull stops waiting when the reconcile is aborted, and reports its progress to the reconcile. */
function pullOptions(ctx: StepContext): PullOptions {
  return { signal: ctx.signal, onProgress: (p) => ctx.progress.pulled(p) };
}

function withImage(status: MicroVMStatus, use: string, digest: string): Readonly<Record<string, string>> {
  return { ...status.images, [use]: digest };
}

/** No usable file at the recorded path; a symlink there (recorded by an older daemon) counts as none. */
async function mountMissing(ctx: StepContext, mount: Mount | undefined): Promise<boolean> {
  return mount === undefined || !(await ctx.ports.fs.fileExists(mount.source));
}

export function kernelStep(ctx: StepContext, images: ImageService): Step {
  const kernel = ctx.vm.spec.kernel;
  return {
    name: 'kernel_image',
    shouldDo: () => mountMissing(ctx, ctx.status.kernelMount),
    do: async () => {
      const image = await images.pull(kernel.image, pullOptions(ctx));
      const source = await findInImage(ctx, images, image, 'kernel', kernel.filename !== undefined ? [kernel.filename] : KERNEL_CANDIDATES);
      ctx.saveStatus({ ...ctx.status, kernelMount: { type: 'hostpath', source }, images: withImage(ctx.status, 'kernel', image.digest) });
    },
  };
}

export function initrdStep(ctx: StepContext, images: ImageService): Step | undefined {
  const initrd = ctx.vm.spec.initrd;
  if (initrd === undefined) return undefined;
  return {
    name: 'initrd_image',
    shouldDo: () => mountMissing(ctx, ctx.status.initrdMount),
    do: async () => {
      const image = await images.pull(initrd.image, pullOptions(ctx));
      const source = await findInImage(ctx, images, image, 'initrd', initrd.filename !== undefined ? [initrd.filename] : INITRD_CANDIDATES);
      ctx.saveStatus({ ...ctx.status, initrdMount: { type: 'hostpath', source }, images: withImage(ctx.status, 'initrd', image.digest) });
    },
  };
}

/** A container-sourced volume: an ext4 image per (image, size), then a private copy unless read-only. */
export function volumeStep(ctx: StepContext, images: ImageService, volume: VolumeSpec): Step | undefined {
  const ref = volume.source.containerImage;
  if (ref === undefined) return undefined;
  return {
    name: `volume_image[${volume.id}]`,
    shouldDo: () => mountMissing(ctx, ctx.status.volumes[volume.id]),
    do: async () => {
      const image = await images.pull(ref, pullOptions(ctx));
      const base = await images.ext4(image, volume.sizeMb);
      let source = base;
      if (!volume.readOnly) {
        // A VMM that opens qcow2 overlays shares the base's blocks across VMs; others get a copy
        // (which shares blocks only on a reflink filesystem).
        const overlay = ctx.ports.providers.get(ctx.vm.spec.provider)?.capabilities.has('qcow2-overlay') === true;
        source = volumePath(ctx.vmDir, volume.id, overlay ? 'qcow2' : 'raw');
        if (overlay) await ctx.ports.fs.overlayFile(base, source);
        else await ctx.ports.fs.cloneFile(base, source);
      }
      ctx.saveStatus({
        ...ctx.status,
        volumes: { ...ctx.status.volumes, [volume.id]: { type: 'hostpath', source } },
        images: withImage(ctx.status, `volume:${volume.id}`, image.digest),
      });
    },
  };
}
