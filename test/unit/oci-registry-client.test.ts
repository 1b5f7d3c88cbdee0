// Registry client pieces that need no server: URLs, challenges, platform choice, digests.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  hostArchitecture,
  isLoopbackHost,
  parseChallenge,
  pickPlatform,
  registryBaseUrl,
  splitDigest,
  type Descriptor,
} from '../../src/adapters/images/registry-client.js';

const D = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('registryBaseUrl', () => {
  it('Docker Hub is registry-1.docker.io over HTTPS', () => {
    assert.equal(registryBaseUrl('docker.io'), 'https://registry-1.docker.io');
  });
  it('HTTPS by default, plain HTTP for loopback and listed insecure hosts', () => {
    assert.equal(registryBaseUrl('ghcr.io'), 'https://ghcr.io');
    assert.equal(registryBaseUrl('registry.local:5000'), 'https://registry.local:5000');
    assert.equal(registryBaseUrl('registry.local:5000', ['registry.local:5000']), 'http://registry.local:5000');
    assert.equal(registryBaseUrl('registry.local:5000', ['registry.local']), 'http://registry.local:5000', 'a host entry covers every port');
    assert.equal(registryBaseUrl('registry.local:5000', ['http://registry.local:5000/']), 'http://registry.local:5000');
    assert.equal(registryBaseUrl('other.local:5000', ['registry.local']), 'https://other.local:5000');
    assert.equal(registryBaseUrl('127.0.0.1:5000'), 'http://127.0.0.1:5000');
    assert.equal(registryBaseUrl('127.8.9.10:5000'), 'http://127.8.9.10:5000');
    assert.equal(registryBaseUrl('localhost:5000'), 'http://localhost:5000');
    assert.equal(registryBaseUrl('[::1]:5000'), 'http://[::1]:5000');
  });
  it('isLoopbackHost only accepts loopback', () => {
    assert.equal(isLoopbackHost('128.0.0.1'), false);
    assert.equal(isLoopbackHost('localhost.example.com'), false);
    assert.equal(isLoopbackHost('[::2]:80'), false);
  });
});

describe('parseChallenge', () => {
  it('reads a Docker Hub style bearer challenge with a comma in the scope', () => {
    const c = parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push"');
    assert.equal(c.scheme, 'bearer');
    assert.deepEqual(c.params, { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/ubuntu:pull,push' });
  });
  it('reads a Basic challenge', () => {
    assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
  });
});

describe('pickPlatform', () => {
  const entries: Descriptor[] = [
    { mediaType: 'x', digest: D(1), size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    { mediaType: 'x', digest: D(2), size: 1, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    { mediaType: 'x', digest: D(3), size: 1, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: 'x', digest: D(4), size: 1, platform: { os: 'unknown', architecture: 'unknown' } },
  ];
  it('picks os/architecture, preferring the usual variant', () => {
    assert.equal(pickPlatform(entries, { os: 'linux', architecture: 'amd64' }).digest, D(3));
    assert.equal(pickPlatform(entries, { os: 'linux', architecture: 'arm64' }).digest, D(2));
    assert.equal(pickPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest, D(1));
  });
  it('names what the index has when nothing fits (attestations left out)', () => {
    assert.throws(
      () => pickPlatform(entries, { os: 'linux', architecture: 's390x' }),
      /no manifest for linux\/s390x \(it has: linux\/arm\/v7, linux\/arm64\/v8, linux\/amd64\)/,
    );
  });
  it('maps Node architectures to OCI ones', () => {
    assert.equal(hostArchitecture('x64'), 'amd64');
    assert.equal(hostArchitecture('arm64'), 'arm64');
    assert.equal(hostArchitecture('ia32'), '386');
  });
});

describe('splitDigest', () => {
  it('accepts sha256 and sha512, refuses the rest', () => {
    assert.deepEqual(splitDigest(D(1)), { algorithm: 'sha256', hex: D(1).slice(7) });
    assert.throws(() => splitDigest('md5:abcd'), /unsupported or malformed digest/);
    assert.throws(() => splitDigest('sha256:abcd'), /unsupported or malformed digest/);
    assert.throws(() => splitDigest(`sha256:../../${'a'.repeat(58)}`), /unsupported or malformed digest/);
  });
});
