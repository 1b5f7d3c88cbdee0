// Paths inside an image root (src/adapters/fs/root-path.ts): symlinks are followed as the guest
// would see them, never out of the root, and only regular files are handed out. Each case builds
// its own small tree; the host paths the links name (/etc/hostname, /etc) exist on every host,
// so a lookup that followed them out of the root would find something.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { listDirInRoot, lookupInRoot, MAX_SYMLINKS, regularFileInRoot } from '../../src/adapters/fs/root-path.js';
import type { FileInRoot } from '../../src/core/ports.js';
import { makeTempDir } from '../helpers/daemon.js';

let dir: string;
let counter = 0;

/** A fresh root holding `files` (content strings) and `links` (path -> target, made verbatim). */
function root(files: Record<string, string>, links: Record<string, string> = {}, dirs: string[] = []): string {
  const r = join(dir, `root-${++counter}`);
  mkdirSync(r);
  for (const d of dirs) mkdirSync(join(r, d), { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(r, path, '..'), { recursive: true });
    writeFileSync(join(r, path), content);
  }
  for (const [path, target] of Object.entries(links)) {
    mkdirSync(join(r, path, '..'), { recursive: true });
    symlinkSync(target, join(r, path));
  }
  return r;
}

function refused(result: FileInRoot): { problem: string; reason: string } {
  assert.equal(result.ok, false, `expected a refusal, got ${result.ok ? result.hostPath : ''}`);
  return result.ok ? { problem: '', reason: '' } : { problem: result.problem, reason: result.reason };
}

function found(result: FileInRoot): string {
  assert.ok(result.ok, result.ok ? '' : result.reason);
  return result.ok ? result.hostPath : '';
}

before(() => {
  dir = makeTempDir('fl-root-path-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('regularFileInRoot', () => {
  it('finds a plain file, by relative or absolute in-image path', () => {
    const r = root({ 'boot/vmlinux': 'kernel' });
    assert.equal(found(regularFileInRoot(r, 'boot/vmlinux')), join(r, 'boot/vmlinux'));
    assert.equal(found(regularFileInRoot(r, '/boot/vmlinux')), join(r, 'boot/vmlinux'));
    assert.equal(found(regularFileInRoot(r, './boot//vmlinux')), join(r, 'boot/vmlinux'));
  });

  it('follows a link that stays inside the root, and returns the real file', () => {
    const r = root({ 'boot/vmlinuz-6.1': 'kernel 6.1' }, { 'boot/vmlinuz': 'vmlinuz-6.1', vmlinuz: 'boot/vmlinuz' });
    assert.equal(found(regularFileInRoot(r, 'boot/vmlinuz')), join(r, 'boot/vmlinuz-6.1'));
    assert.equal(found(regularFileInRoot(r, 'vmlinuz')), join(r, 'boot/vmlinuz-6.1'));
  });

  it('takes an absolute link target from the root, never from the host', () => {
    const dangling = root({}, { 'boot/initrd': '/etc/hostname' }, ['boot']);
    assert.deepEqual(refused(regularFileInRoot(dangling, 'boot/initrd')), {
      problem: 'dangling-symlink',
      reason: 'boot/initrd resolves through symbolic links inside the image to /etc/hostname, which does not exist',
    });
    // With the file in the image, the link means the image's file.
    const inImage = root({ 'etc/hostname': 'image hostname' }, { 'boot/initrd': '/etc/hostname' });
    const path = found(regularFileInRoot(inImage, 'boot/initrd'));
    assert.equal(path, join(inImage, 'etc/hostname'));
    assert.equal(readFileSync(path, 'utf8'), 'image hostname');
  });

  it('stops a relative link climbing with .. at the root', () => {
    const dangling = root({}, { 'boot/initrd': '../../../../etc/hostname' }, ['boot']);
    assert.deepEqual(refused(regularFileInRoot(dangling, 'boot/initrd')), {
      problem: 'dangling-symlink',
      reason: 'boot/initrd resolves through symbolic links inside the image to /etc/hostname, which does not exist',
    });
    const inImage = root({ 'etc/hostname': 'image hostname' }, { 'boot/initrd': '../../../../etc/hostname' });
    assert.equal(found(regularFileInRoot(inImage, 'boot/initrd')), join(inImage, 'etc/hostname'));
  });

  it('follows chains of links, through directories too', () => {
    const r = root(
      { 'usr/lib/modules/6.1/vmlinuz': 'k' },
      { 'boot/a': 'b', 'boot/b': '/boot/c', 'boot/c': '../kernel', kernel: 'lib/modules/6.1/vmlinuz', lib: 'usr/lib' },
    );
    assert.equal(found(regularFileInRoot(r, 'boot/a')), join(r, 'usr/lib/modules/6.1/vmlinuz'));
  });

  it('a directory link pointing at the host /etc stays in the image', () => {
    const r = root({ 'etc/vmlinux': 'image kernel' }, { boot: '/etc' });
    assert.equal(found(regularFileInRoot(r, 'boot/vmlinux')), join(r, 'etc/vmlinux'));
    assert.equal(refused(regularFileInRoot(r, 'boot/hostname')).problem, 'dangling-symlink');
  });

  it('refuses link loops, and chains longer than the limit', () => {
    const loop = root({}, { 'boot/a': 'b', 'boot/b': 'a', 'boot/self': 'self' });
    assert.deepEqual(refused(regularFileInRoot(loop, 'boot/a')), {
      problem: 'symlink-loop',
      reason: `boot/a: too many levels of symbolic links (more than ${MAX_SYMLINKS})`,
    });
    assert.equal(refused(regularFileInRoot(loop, 'boot/self')).problem, 'symlink-loop');

    // l0 -> l1 -> ... -> l<n> -> file: n + 1 links.
    const chain = (n: number): string => {
      const links: Record<string, string> = {};
      for (let i = 0; i < n; i++) links[`l${i}`] = `l${i + 1}`;
      links[`l${n}`] = 'file';
      return root({ file: 'f' }, links);
    };
    assert.equal(found(regularFileInRoot(chain(MAX_SYMLINKS - 1), 'l0')).endsWith('/file'), true);
    assert.equal(refused(regularFileInRoot(chain(MAX_SYMLINKS), 'l0')).problem, 'symlink-loop');
  });

  it('refuses a link to a directory, and a directory', () => {
    const r = root({}, { 'boot/vmlinux': '/boot/dir' }, ['boot/dir']);
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/vmlinux')), {
      problem: 'not-a-regular-file',
      reason: 'boot/vmlinux resolves through symbolic links inside the image to /boot/dir, which is a directory',
    });
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/dir')), { problem: 'not-a-regular-file', reason: 'boot/dir is a directory' });
    assert.deepEqual(refused(regularFileInRoot(r, '')), { problem: 'not-a-regular-file', reason: '/ is a directory' });
  });

  it('refuses dangling links and missing files', () => {
    const r = root({ 'boot/vmlinux': 'k' }, { 'boot/gone': 'nowhere' });
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/gone')), {
      problem: 'dangling-symlink',
      reason: 'boot/gone resolves through symbolic links inside the image to /boot/nowhere, which does not exist',
    });
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/initrd')), { problem: 'missing', reason: 'boot/initrd does not exist' });
    assert.deepEqual(refused(regularFileInRoot(r, 'nope/initrd')), { problem: 'missing', reason: 'nope/initrd does not exist' });
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/vmlinux/initrd')), {
      problem: 'missing',
      reason: 'boot/vmlinux/initrd does not exist: /boot/vmlinux in the image is not a directory',
    });
  });

  it('takes .. in the path as the guest would: it never climbs above the root', () => {
    const r = root({ 'etc/hostname': 'image', 'boot/vmlinux': 'k' });
    assert.equal(found(regularFileInRoot(r, '../../../../etc/hostname')), join(r, 'etc/hostname'));
    assert.equal(found(regularFileInRoot(r, 'boot/../boot/./vmlinux')), join(r, 'boot/vmlinux'));
    assert.equal(found(regularFileInRoot(r, 'boot/../../etc/hostname')), join(r, 'etc/hostname'));
    // /etc/passwd exists on the host, not in this image.
    assert.equal(refused(regularFileInRoot(r, '../../etc/passwd')).problem, 'missing');
    // `..` after a directory link is the link target's parent, as in the kernel.
    const linked = root({ 'usr/lib/k': 'k', 'usr/k2': 'k2' }, { lib: 'usr/lib' });
    assert.equal(found(regularFileInRoot(linked, 'lib/../k2')), join(linked, 'usr/k2'));
  });

  it('refuses device nodes, fifos and sockets', async () => {
    const r = root({}, { 'boot/link-to-fifo': 'fifo' }, ['boot']);
    execFileSync('mkfifo', [join(r, 'boot/fifo')]);
    assert.deepEqual(refused(regularFileInRoot(r, 'boot/fifo')), { problem: 'not-a-regular-file', reason: 'boot/fifo is a fifo' });
    assert.equal(
      refused(regularFileInRoot(r, 'boot/link-to-fifo')).reason,
      'boot/link-to-fifo resolves through symbolic links inside the image to /boot/fifo, which is a fifo',
    );

    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(join(r, 'boot/sock'), resolve));
    try {
      assert.deepEqual(refused(regularFileInRoot(r, 'boot/sock')), { problem: 'not-a-regular-file', reason: 'boot/sock is a socket' });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }

    if (process.getuid?.() === 0) {
      execFileSync('mknod', [join(r, 'boot/null'), 'c', '1', '3']);
      execFileSync('mknod', [join(r, 'boot/sda'), 'b', '8', '0']);
      assert.deepEqual(refused(regularFileInRoot(r, 'boot/null')), { problem: 'not-a-regular-file', reason: 'boot/null is a character device' });
      assert.deepEqual(refused(regularFileInRoot(r, 'boot/sda')), { problem: 'not-a-regular-file', reason: 'boot/sda is a block device' });
    }
  });

  it('never returns a path outside the root, whatever the links say', () => {
    const r = root(
      { 'etc/hostname': 'h' },
      { a: '/', b: '..', c: '../../..', 'd/e': '../../../../../../etc/hostname', f: `/${'../'.repeat(20)}etc/hostname` },
      ['d'],
    );
    for (const path of ['a/etc/hostname', 'b/etc/hostname', 'c/etc/hostname', 'd/e', 'f', 'a/b/c/a/etc/hostname']) {
      assert.equal(found(regularFileInRoot(r, path)), join(r, 'etc/hostname'), path);
    }
  });
});

describe('listDirInRoot', () => {
  it('lists a directory inside the root, following links inside it', () => {
    const r = root({ 'etc/vmlinux': 'k', 'etc/initrd': 'i' }, { boot: '/etc' });
    assert.deepEqual(listDirInRoot(r, 'boot'), ['initrd', 'vmlinux']);
  });
  it('is empty for a link out of the root, a file, or nothing', () => {
    const r = root({ 'boot/vmlinux': 'k' }, { etcdir: '/etc', up: '../../../../etc' });
    // The host's /etc is not empty: an empty answer means the link stayed in the root.
    assert.deepEqual(listDirInRoot(r, 'etcdir'), []);
    assert.deepEqual(listDirInRoot(r, 'up'), []);
    assert.deepEqual(listDirInRoot(r, 'boot/vmlinux'), []);
    assert.deepEqual(listDirInRoot(r, 'missing'), []);
  });
});

describe('lookupInRoot (the unpacker: parents made inside the root)', () => {
  it('clamps .. and absolute targets at the root', () => {
    const r = root({}, {}, ['a/b']);
    assert.deepEqual((({ kind, rel }) => ({ kind, rel }))(lookupInRoot(r, 'a/b/../../../..') as { kind: string; rel: string }), { kind: 'found', rel: '' });
    assert.deepEqual(lookupInRoot(r, 'a/missing'), { kind: 'missing', rel: 'a/missing', rest: '', links: 0 });
  });

  it('with create, makes the missing directories inside the root, through links', () => {
    const r = root({ 'etc/file': 'f' }, { lib: '/usr/lib', up: '../../../../..' });
    const made = lookupInRoot(r, 'lib/x86_64/deep', true);
    assert.equal(made.kind, 'found');
    assert.equal(made.kind === 'found' ? made.rel : '', 'usr/lib/x86_64/deep');
    const climbed = lookupInRoot(r, 'up/var/cache', true);
    assert.equal(climbed.kind === 'found' ? climbed.rel : '', 'var/cache');
    assert.equal(lookupInRoot(r, 'etc/file/sub', true).kind, 'not-a-directory');
  });
});
