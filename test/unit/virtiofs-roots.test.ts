import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { virtiofsHostChecks } from '../../src/adapters/fs/virtiofs-roots.js';
import { DEFAULT_LIMITS, validateCreate, type CreateInput } from '../../src/core/validation.js';
import { MemoryProvider } from '../helpers/doubles.js';

describe('virtiofs shares', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fl-virtiofs-'));
  const root = join(dir, 'shares');
  mkdirSync(join(root, 'data'), { recursive: true });
  mkdirSync(join(dir, 'elsewhere'));
  writeFileSync(join(root, 'file.txt'), 'x');
  symlinkSync('/etc', join(root, 'escape'));
  const checks = virtiofsHostChecks([root]);
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts an existing directory under an allowed root', () => {
    assert.equal(checks.virtiofsSource(join(root, 'data')), undefined);
    assert.equal(checks.virtiofsSource(root), undefined);
  });

  it('refuses what is missing, not a directory, outside the roots, or escapes by symlink', () => {
    assert.match(checks.virtiofsSource(join(root, 'nope')) ?? '', /does not exist/);
    assert.match(checks.virtiofsSource(join(root, 'file.txt')) ?? '', /is not a directory/);
    assert.match(checks.virtiofsSource(join(dir, 'elsewhere')) ?? '', /is not under an allowed root/);
    assert.match(checks.virtiofsSource(join(root, 'escape')) ?? '', /is not under an allowed root/);
    assert.match(checks.virtiofsSource(`${root}-sibling`) ?? '', /does not exist|not under an allowed root/);
  });

  // Found by the API fuzzer: a 4 kB missing path was repeated whole in the error message.
  it('echoes at most 64 characters of the path', () => {
    const problem = checks.virtiofsSource(join(root, 'x'.repeat(4000))) ?? '';
    assert.match(problem, /^".{64}"\.\.\. \(\d+ bytes\) does not exist$/);
  });

  it('never shares / and is off without configured roots', () => {
    assert.match(virtiofsHostChecks(['/']).virtiofsSource('/') ?? '', /disabled|cannot be shared/);
    assert.match(virtiofsHostChecks([]).virtiofsSource(join(root, 'data')) ?? '', /no virtiofs-allowed-roots are configured/);
  });

  it('reports through validation, naming the field', () => {
    const ch = new MemoryProvider(undefined, 'cloudhypervisor', ['macvtap', 'tap', 'virtiofs']);
    const input: CreateInput = {
      name: 'vm1',
      namespace: 'ns1',
      labels: {},
      vcpu: 1,
      memoryMb: 256,
      kernel: { image: 'registry.local/k:1', cmdline: {}, addNetworkConfig: false },
      rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'registry.local/r:1' } },
      additionalVolumes: [{ id: 'share', readOnly: false, source: { virtiofsPath: join(dir, 'elsewhere') } }],
      interfaces: [{ deviceId: 'eth0', type: 'tap' }],
      metadata: {},
      provider: 'cloudhypervisor',
      allowGuestAgent: false,
    };
    const result = validateCreate(input, DEFAULT_LIMITS, { names: () => ['cloudhypervisor'], get: () => ch, defaultName: () => 'cloudhypervisor' }, checks);
    assert.ok(!result.ok);
    assert.match(result.error.message, /additional_volumes\[0\]\.source\.virtiofs_source: ".*elsewhere" is not under an allowed root/);
  });
});
