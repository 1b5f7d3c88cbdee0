// Packages files as a one-layer OCI image and pushes it to a registry over the distribution API
// (plain HTTP: for the local registries of the demo and the e2e tests).
//
//   node --import tsx scripts/oci-push.ts 127.0.0.1:5000/flintlock/guest:latest boot/vmlinuz=/path/vmlinuz boot/initrd=/path/initramfs.cpio.gz
//   node --import tsx scripts/oci-push.ts 127.0.0.1:5000/flintlock/debian12-root:latest --layer /path/rootfs.tar
//
// `--layer TAR`: the layer is that (uncompressed) tar as it is, e.g. a whole root filesystem with
// its owners and modes (scripts/build-debian-image.sh), gzipped here. Prints the manifest digest.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { constants as zlib, gzipSync } from 'node:zlib';
import { create as createTar } from 'tar';

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function layerOf(files: Array<[string, string]>): Promise<Buffer> {
  const stage = mkdtempSync(join(tmpdir(), 'oci-push-'));
  try {
    for (const [inImage, local] of files) {
      mkdirSync(dirname(join(stage, inImage)), { recursive: true });
      copyFileSync(local, join(stage, inImage));
    }
    const chunks: Buffer[] = [];
    // Fixed mtime and owner: the same files give the same layer digest.
    const stream = createTar(
      { cwd: stage, portable: true, mtime: new Date(0), noDirRecurse: false },
      files.map(([p]) => p),
    );
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
    return Buffer.concat(chunks);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

async function pushBlob(base: string, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  if ((await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).ok) return digest;
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`starting the upload of ${digest}: HTTP ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location') ?? '', base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`uploading ${digest}: HTTP ${put.status} ${await put.text()}`);
  return digest;
}

async function main(): Promise<void> {
  const [target, ...specs] = process.argv.slice(2);
  const match = /^([^/]+)\/(.+):([\w][\w.-]*)$/.exec(target ?? '');
  const usage = 'usage: oci-push.ts host:port/repo:tag (path/in/image=local/file ... | --layer file.tar)';
  if (match === null || specs.length === 0) throw new Error(usage);
  const layerFile = specs[0] === '--layer' ? specs[1] : undefined;
  if (specs[0] === '--layer' && (layerFile === undefined || specs.length !== 2)) throw new Error(usage);
  const [, host, repo, tag] = match as unknown as [string, string, string, string];
  const files = (layerFile !== undefined ? [] : specs).map((s): [string, string] => {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new Error(`"${s}" must be path/in/image=local/file`);
    return [s.slice(0, eq), s.slice(eq + 1)];
  });
  const base = `http://${host}`;
  const tar = layerFile !== undefined ? readFileSync(layerFile) : await layerOf(files);
  // A root filesystem is hundreds of MiB: the fastest level keeps the push to seconds.
  const layer = gzipSync(tar, { level: layerFile !== undefined ? zlib.Z_BEST_SPEED : zlib.Z_DEFAULT_COMPRESSION });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(tar)] }, config: {} }));
  const [configDigest, layerDigest] = [await pushBlob(base, repo, config), await pushBlob(base, repo, layer)];
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
    }),
  );
  const put = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (put.status !== 201) throw new Error(`pushing the manifest: HTTP ${put.status} ${await put.text()}`);
  process.stdout.write(`${sha256(manifest)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`oci-push: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
