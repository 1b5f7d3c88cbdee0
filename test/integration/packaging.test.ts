// What an operator installs: the example config (from the one table of keys), --version and
// run --help, the systemd unit, and scripts/install.sh staged into a temporary DESTDIR (never the
// real /opt or /etc of this shared machine).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONFIG_KEY_SPECS, loadConfig } from '../../src/config/config.js';
import { defaultText, exampleConfig } from '../../src/config/example.js';
import { FL, FLINTLOCKD, makeTempDir, REPO_ROOT } from '../helpers/daemon.js';
import { describeWith, programs } from '../helpers/prerequisites.js';

const EXAMPLE = join(REPO_ROOT, 'packaging/config.example.yaml');
const UNIT = join(REPO_ROOT, 'packaging/flintlockd.service');
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const run = (bin: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('the example config', () => {
  it('is the text generated from the table of keys (regenerate: bin/flintlockd example-config > packaging/config.example.yaml)', () => {
    assert.equal(readFileSync(EXAMPLE, 'utf8'), exampleConfig());
    assert.equal(run(FLINTLOCKD, 'example-config').stdout, exampleConfig());
  });

  it("documents every key, and its commented defaults are the daemon's defaults", () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    for (const key of Object.keys(CONFIG_KEY_SPECS)) assert.match(text, new RegExp(`^# ${key}:`, 'm'), key);
    // Uncommented, every default line loads to exactly the config an empty file gives.
    const dir = makeTempDir('fl-example-');
    try {
      const uncommented = join(dir, 'uncommented.yaml');
      // Each key's block ends with its default: `# key: value` (and `#   ` continuation lines).
      const blocks = text.split('\n\n').slice(1);
      const defaults = blocks.map((block) => {
        const lines = block.trimEnd().split('\n');
        const start = lines.findIndex((l) => Object.keys(CONFIG_KEY_SPECS).some((key) => l.startsWith(`# ${key}:`)));
        assert.ok(start >= 0, block);
        return lines
          .slice(start)
          .map((l) => l.replace(/^# /, '').replace(/^#  {3}/, '  '))
          .join('\n');
      });
      assert.equal(defaults.length, Object.keys(CONFIG_KEY_SPECS).length);
      writeFileSync(uncommented, `${defaults.join('\n')}\n`);
      const empty = join(dir, 'empty.yaml');
      writeFileSync(empty, '');
      const flags = { 'bridge-name': 'br0', insecure: 'true' };
      assert.deepEqual(loadConfig({ file: uncommented, env: {}, flags }), loadConfig({ file: empty, env: {}, flags }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('command line', () => {
  it('flintlockd --version and fl --version print the version', () => {
    const daemon = run(FLINTLOCKD, '--version');
    assert.equal(daemon.status, 0, daemon.stderr);
    assert.equal(daemon.stdout, `flintlock ${VERSION}\n`);
    assert.equal(run(FLINTLOCKD, 'version').stdout, `flintlock ${VERSION}\n`);
    const fl = run(FL, '--version');
    assert.equal(fl.status, 0, fl.stderr);
    assert.equal(fl.stdout, `${VERSION}\n`);
  });

  it("run --help gives every key's meaning and default", () => {
    const help = run(FLINTLOCKD, 'run', '--help');
    assert.equal(help.status, 0, help.stderr);
    const flat = help.stdout.replace(/\s+/g, ' ');
    for (const [key, spec] of Object.entries(CONFIG_KEY_SPECS)) {
      assert.ok(flat.includes(`--${key} [value] ${spec.help}`), `--${key}: ${spec.help}`);
      const shown = defaultText(key as keyof typeof CONFIG_KEY_SPECS);
      if (shown !== undefined) assert.ok(flat.includes(`${spec.help} (default: ${shown})`), `default of ${key}`);
    }
    assert.doesNotMatch(help.stdout, /containerd-socket/, 'keys without effect stay hidden');
  });
});

describe('scripts/install.sh into a DESTDIR', () => {
  let destdir: string;
  let first: string;
  let second: string;
  const at = (path: string): string => join(destdir, path);

  before(() => {
    destdir = makeTempDir('fl-install-');
    const install = (): string =>
      execFileSync(join(REPO_ROOT, 'scripts/install.sh'), { env: { ...process.env, DESTDIR: destdir }, encoding: 'utf8', timeout: 300_000 });
    first = install();
    // The operator edits the config; an older release left a file the new one doesn't have.
    writeFileSync(at('etc/opt/flintlockd/config.yaml'), 'bridge-name: br0\ninsecure: true\n');
    writeFileSync(at('opt/flintlockd/dist/stale.js'), '');
    second = install();
  });
  after(() => rmSync(destdir, { recursive: true, force: true }));

  it('puts the daemon under /opt/flintlockd without development packages, and it runs from there', () => {
    for (const path of ['dist/cli/flintlockd/main.js', 'bin/flintlockd', 'bin/fl', 'package.json', 'host-dependencies.txt', 'node_modules/better-sqlite3']) {
      assert.ok(existsSync(at(`opt/flintlockd/${path}`)), path);
    }
    assert.equal(existsSync(at('opt/flintlockd/node_modules/typescript')), false, 'no compiler');
    assert.equal(existsSync(at('opt/flintlockd/dist/stale.js')), false, 'a reinstall leaves no file of the older release');
    assert.equal(run(at('opt/flintlockd/bin/flintlockd'), '--version').stdout, `flintlock ${VERSION}\n`);
    assert.equal(run(at('opt/flintlockd/bin/fl'), '--version').stdout, `${VERSION}\n`);
  });

  it('puts flintlockd and fl wrappers on the PATH that run the final paths with this Node.js', () => {
    for (const name of ['flintlockd', 'fl']) {
      const wrapper = at(`usr/local/bin/${name}`);
      assert.equal(statSync(wrapper).mode & 0o777, 0o755);
      assert.ok(readFileSync(wrapper, 'utf8').includes(`exec "${process.execPath}" "/opt/flintlockd/bin/${name}" "$@"`), name);
    }
  });

  it('installs the unit and the example config; writes config.yaml once and never overwrites it', () => {
    assert.equal(readFileSync(at('etc/systemd/system/flintlockd.service'), 'utf8'), readFileSync(UNIT, 'utf8'));
    assert.equal(readFileSync(at('etc/opt/flintlockd/config.example.yaml'), 'utf8'), exampleConfig());
    assert.match(first, /wrote .*config\.yaml/);
    assert.match(second, /kept the existing .*config\.yaml/);
    assert.equal(readFileSync(at('etc/opt/flintlockd/config.yaml'), 'utf8'), 'bridge-name: br0\ninsecure: true\n');
    assert.equal(statSync(at('etc/opt/flintlockd/config.yaml')).mode & 0o777, 0o600);
  });
});

describe('the systemd unit', () => {
  const unit = readFileSync(UNIT, 'utf8');
  const setting = (name: string): string[] => [...unit.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((m) => m[1] ?? '');

  it('keeps VMs running across restarts, restarts always, starts after the network is online', () => {
    assert.deepEqual(setting('KillMode'), ['process']);
    assert.deepEqual(setting('Restart'), ['always']);
    assert.deepEqual(setting('After'), ['network-online.target']);
    assert.deepEqual(setting('Wants'), ['network-online.target']);
    assert.deepEqual(setting('ExecStart'), ['/usr/local/bin/flintlockd run']);
    assert.deepEqual(setting('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  });
});

describeWith('the systemd unit, checked by systemd', programs('systemd-analyze'), {}, () => {
  it('passes systemd-analyze verify', () => {
    const dir = makeTempDir('fl-unit-');
    try {
      // verify checks that ExecStart names an executable: a stand-in for the installed wrapper.
      const wrapper = join(dir, 'flintlockd');
      writeFileSync(wrapper, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      mkdirSync(join(dir, 'units'));
      const copy = join(dir, 'units', 'flintlockd.service');
      writeFileSync(copy, readFileSync(UNIT, 'utf8').replace('/usr/local/bin/flintlockd', wrapper));
      const verify = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(verify.status, 0, verify.stderr);
      assert.equal(
        verify.stderr
          .split('\n')
          .filter((l) => l.includes('flintlockd.service'))
          .join('\n'),
        '',
        'no complaint about the unit',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
