import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DOCKER_HUB, isImageRefError, parseImageRef, type ImageRef } from '../../src/core/image-ref.js';

const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;

function parse(ref: string): ImageRef {
  const r = parseImageRef(ref);
  if (isImageRefError(r)) throw new assert.AssertionError({ message: `${ref} rejected: it ${r.error}` });
  return r;
}

function reject(ref: string): string {
  const r = parseImageRef(ref);
  if (!isImageRefError(r)) throw new assert.AssertionError({ message: `${ref} accepted as ${JSON.stringify(r)}` });
  return r.error;
}

describe('parseImageRef: Docker Hub defaults', () => {
  it('ubuntu is docker.io/library/ubuntu:latest', () => {
    assert.deepEqual(parse('ubuntu'), { registry: DOCKER_HUB, repository: 'library/ubuntu', tag: 'latest' });
    assert.equal(DOCKER_HUB, 'docker.io');
  });
  it('keeps an explicit tag', () => {
    assert.deepEqual(parse('ubuntu:22.04'), { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' });
  });
  it('user repositories on Docker Hub get no library/ prefix', () => {
    assert.deepEqual(parse('weaveworks/kernel:5.10'), { registry: 'docker.io', repository: 'weaveworks/kernel', tag: '5.10' });
  });
  it('docker.io/ubuntu is the official image', () => {
    assert.deepEqual(parse('docker.io/ubuntu'), { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' });
    assert.deepEqual(parse('docker.io/library/alpine:3.14'), { registry: 'docker.io', repository: 'library/alpine', tag: '3.14' });
  });
  it('a first component without dot, port or localhost is a path, not a host', () => {
    assert.deepEqual(parse('registry/foo'), { registry: 'docker.io', repository: 'registry/foo', tag: 'latest' });
  });
});

describe('parseImageRef: registries', () => {
  it('a host with a dot', () => {
    assert.deepEqual(parse('ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77'), {
      registry: 'ghcr.io',
      repository: 'liquidmetal-dev/flintlock-kernel',
      tag: '5.10.77',
    });
  });
  it('a host with a port', () => {
    assert.deepEqual(parse('registry.local:5000/team/app:v1'), { registry: 'registry.local:5000', repository: 'team/app', tag: 'v1' });
    assert.deepEqual(parse('myhost:5000/app'), { registry: 'myhost:5000', repository: 'app', tag: 'latest' });
  });
  it('localhost, with and without port', () => {
    assert.deepEqual(parse('localhost/app'), { registry: 'localhost', repository: 'app', tag: 'latest' });
    assert.deepEqual(parse('localhost:5000/app:1'), { registry: 'localhost:5000', repository: 'app', tag: '1' });
  });
  it('an IPv6 host, with and without port', () => {
    assert.deepEqual(parse('[::1]:5000/app:1'), { registry: '[::1]:5000', repository: 'app', tag: '1' });
    assert.deepEqual(parse('[fd00::1]/team/app'), { registry: '[fd00::1]', repository: 'team/app', tag: 'latest' });
  });
  it('an IPv4 host', () => {
    assert.deepEqual(parse('10.0.0.1:5000/app'), { registry: '10.0.0.1:5000', repository: 'app', tag: 'latest' });
  });
});

describe('parseImageRef: tags and digests', () => {
  it('digest only: no tag is implied', () => {
    assert.deepEqual(parse(`alpine@${DIGEST}`), { registry: 'docker.io', repository: 'library/alpine', digest: DIGEST });
    assert.deepEqual(parse(`localhost:5000/k@${DIGEST}`), { registry: 'localhost:5000', repository: 'k', digest: DIGEST });
  });
  it('tag and digest', () => {
    assert.deepEqual(parse(`ghcr.io/org/app:1.2@${DIGEST}`), { registry: 'ghcr.io', repository: 'org/app', tag: '1.2', digest: DIGEST });
  });
  it('tags may hold upper case, dots, dashes and underscores', () => {
    assert.equal(parse('app:V1.2-rc_3').tag, 'V1.2-rc_3');
  });
  it('repository components may use . _ __ and - separators', () => {
    assert.equal(parse('ghcr.io/a.b/c_d/e__f/g--h').repository, 'a.b/c_d/e__f/g--h');
  });
});

describe('parseImageRef: invalid references', () => {
  it('empty', () => {
    assert.equal(reject(''), 'is empty');
  });
  it('too long', () => {
    assert.equal(reject(`a${'/b'.repeat(2048)}`), 'is longer than 4096 characters');
  });
  it('whitespace anywhere', () => {
    assert.equal(reject('a b'), 'contains whitespace');
    assert.equal(reject('ubuntu\n'), 'contains whitespace');
    assert.equal(reject(' ubuntu'), 'contains whitespace');
  });
  it('upper case in the repository', () => {
    assert.equal(reject('UPPER/case'), 'has an invalid repository name "UPPER/case" (lowercase letters, digits and . _ - separators)');
    assert.match(reject('ghcr.io/Org/app'), /invalid repository name "Org\/app"/);
  });
  it('bad separators or empty components in the repository', () => {
    assert.match(reject('a..b'), /invalid repository name "a\.\.b"/);
    assert.match(reject('-app'), /invalid repository name/);
    assert.match(reject('app-'), /invalid repository name/);
    assert.match(reject('a//b'), /invalid repository name/);
    assert.match(reject('ghcr.io/'), /invalid repository name ""/);
    assert.match(reject('ghcr.io/app/'), /invalid repository name/);
  });
  it('an invalid or empty digest', () => {
    assert.equal(reject('://x@'), 'has an invalid digest ""');
    assert.equal(reject('app@sha256:short'), 'has an invalid digest "sha256:short"');
    assert.match(reject('app@md5'), /invalid digest "md5"/);
  });
  // Found by the API fuzzer: a 1000-character repository name was repeated whole in the error message.
  it('echoes at most 64 characters of the invalid part', () => {
    assert.equal(
      reject('Z'.repeat(1000)),
      `has an invalid repository name "${'Z'.repeat(64)}"... (1000 bytes) (lowercase letters, digits and . _ - separators)`,
    );
    assert.equal(reject(`app:${'-'.repeat(200)}`), `has an invalid tag "${'-'.repeat(64)}"... (200 bytes)`);
  });
  it('an invalid tag', () => {
    assert.equal(reject('app:-bad'), 'has an invalid tag "-bad"');
    assert.equal(reject('app:'), 'has an invalid tag ""');
    assert.match(reject(`app:${'t'.repeat(129)}`), /invalid tag/);
  });
  it('an invalid registry host', () => {
    assert.equal(reject('bad_host.io/app'), 'has an invalid registry host "bad_host.io"');
    assert.match(reject('host.io:port/app'), /invalid registry host "host\.io:port"/);
    assert.match(reject('[zz::1]/app'), /invalid registry host "\[zz::1\]"/);
  });
  it('a scheme is not part of a reference', () => {
    assert.ok(isImageRefError(parseImageRef('https://ghcr.io/app')));
  });
});
