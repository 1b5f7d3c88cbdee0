import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigError, DEFAULT_CONFIG_FILE, loadConfig, type Config, type ConfigSources } from '../../src/config/config.js';
import { parseDuration } from '../../src/config/duration.js';
import { formatSize, parseSize } from '../../src/config/size.js';

let dir: string;
let counter = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'flintlock-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a YAML config file and returns its path. */
function yamlFile(content: string): string {
  const path = join(dir, `config-${++counter}.yaml`);
  writeFileSync(path, content);
  return path;
}

/** An existing (empty) file, for the TLS path checks. */
function touch(name: string): string {
  const path = join(dir, name);
  writeFileSync(path, '');
  return path;
}

/** The minimal valid insecure setup plus whatever the test adds. */
function load(sources: Partial<ConfigSources> & { yaml?: string }): Config {
  const file = sources.yaml !== undefined ? yamlFile(sources.yaml) : sources.file;
  return loadConfig({ ...(file !== undefined ? { file } : { file: yamlFile('') }), env: sources.env ?? {}, flags: sources.flags ?? {} });
}

function loadError(sources: Partial<ConfigSources> & { yaml?: string }): string {
  try {
    load(sources);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected loadConfig to fail');
}

const BASE_YAML = 'parent-iface: eth0\ninsecure: true\n';

describe('loadConfig: defaults', () => {
  it('has the documented defaults', () => {
    const c = load({ yaml: BASE_YAML });
    assert.equal(c.grpcEndpoint, 'localhost:9090');
    assert.equal(c.enableHttp, false);
    assert.equal(c.httpEndpoint, 'localhost:8090');
    assert.equal(c.stateDir, '/var/lib/flintlock');
    assert.equal(c.maximumRetry, 10);
    assert.equal(c.resyncPeriodMs, 600_000);
    assert.equal(c.defaultProvider, 'auto');
    assert.equal(c.logFormat, 'text');
    assert.equal(c.parentIface, 'eth0');
    assert.equal(c.bridgeName, '');
    assert.equal(c.insecure, true);
    assert.equal(c.basicAuthToken, '');
    assert.equal(c.tlsClientValidate, false);
    assert.equal(c.verbosity, 0);
    assert.equal(c.debugEndpoint, '');
    assert.equal(c.minimumMemoryMb, 128);
    assert.equal(c.maximumMemoryMb, 32768);
    assert.equal(c.imageMaxUnpackedBytes, 8 * 1024 ** 3);
    assert.deepEqual(c.ignored, []);
  });

  it('reads every value from the file', () => {
    const c = load({
      yaml: [
        'grpc-endpoint: 0.0.0.0:9091',
        'enable-http: true',
        'http-endpoint: 0.0.0.0:8091',
        'bridge-name: br0',
        'state-dir: /tmp/fl',
        'default-provider: qemu',
        'insecure: true',
        'basic-auth-token: s3cret',
        'maximum-retry: 3',
        'resync-period: 1h30m',
        'verbosity: 5',
        'log-format: json',
        'debug-endpoint: localhost:8095',
      ].join('\n'),
    });
    assert.equal(c.grpcEndpoint, '0.0.0.0:9091');
    assert.equal(c.enableHttp, true);
    assert.equal(c.httpEndpoint, '0.0.0.0:8091');
    assert.equal(c.bridgeName, 'br0');
    assert.equal(c.parentIface, '');
    assert.equal(c.stateDir, '/tmp/fl');
    assert.equal(c.defaultProvider, 'qemu');
    assert.equal(c.basicAuthToken, 's3cret');
    assert.equal(c.maximumRetry, 3);
    assert.equal(c.resyncPeriodMs, 5_400_000);
    assert.equal(c.verbosity, 5);
    assert.equal(c.logFormat, 'json');
    assert.equal(c.debugEndpoint, 'localhost:8095');
  });
});

describe('loadConfig: sources and precedence', () => {
  it('flag > env > file > default for one key', () => {
    const file = yamlFile(`${BASE_YAML}grpc-endpoint: file:1\n`);
    assert.equal(loadConfig({ file: yamlFile(BASE_YAML), env: {}, flags: {} }).grpcEndpoint, 'localhost:9090');
    assert.equal(loadConfig({ file, env: {}, flags: {} }).grpcEndpoint, 'file:1');
    assert.equal(loadConfig({ file, env: { FLINTLOCKD_GRPC_ENDPOINT: 'env:2' }, flags: {} }).grpcEndpoint, 'env:2');
    assert.equal(loadConfig({ file, env: { FLINTLOCKD_GRPC_ENDPOINT: 'env:2' }, flags: { 'grpc-endpoint': 'flag:3' } }).grpcEndpoint, 'flag:3');
  });

  it('a flag given as undefined does not override', () => {
    const file = yamlFile(`${BASE_YAML}grpc-endpoint: file:1\n`);
    assert.equal(loadConfig({ file, env: {}, flags: { 'grpc-endpoint': undefined } }).grpcEndpoint, 'file:1');
  });

  it('env FLINTLOCKD_PARENT_IFACE', () => {
    const c = load({ yaml: 'insecure: true\n', env: { FLINTLOCKD_PARENT_IFACE: 'eth9' } });
    assert.equal(c.parentIface, 'eth9');
  });

  it("env with the original's spelling FLINTLOCKD_PARENT-IFACE", () => {
    const c = load({ yaml: 'insecure: true\n', env: { 'FLINTLOCKD_PARENT-IFACE': 'eth8' } });
    assert.equal(c.parentIface, 'eth8');
  });

  it('env values are parsed like file values (booleans, numbers, durations)', () => {
    const c = load({
      yaml: 'parent-iface: eth0\n',
      env: { FLINTLOCKD_INSECURE: 'true', FLINTLOCKD_MAXIMUM_RETRY: '4', FLINTLOCKD_RESYNC_PERIOD: '30s', FLINTLOCKD_ENABLE_HTTP: '1' },
    });
    assert.equal(c.insecure, true);
    assert.equal(c.maximumRetry, 4);
    assert.equal(c.resyncPeriodMs, 30_000);
    assert.equal(c.enableHttp, true);
  });

  it('a FLINTLOCKD_ variable that names no key is an error naming it, like a misspelt file key', () => {
    assert.equal(
      loadError({ yaml: BASE_YAML, env: { FLINTLOCKD_PARENT_IFAC: 'eth1' } }),
      'unknown environment variable FLINTLOCKD_PARENT_IFAC: FLINTLOCKD_* variables set config keys (FLINTLOCKD_STATE_DIR sets state-dir); did you mean FLINTLOCKD_PARENT_IFACE?',
    );
    assert.match(loadError({ yaml: BASE_YAML, env: { FLINTLOCKD_NO_SUCH_KEY: 'x' } }), /^unknown environment variable FLINTLOCKD_NO_SUCH_KEY: [^;]*$/);
    assert.match(loadError({ yaml: BASE_YAML, env: { FLINTLOCKD_: 'y' } }), /unknown environment variable FLINTLOCKD_:/);
    // Other variables are not the daemon's business.
    assert.equal(load({ yaml: BASE_YAML, env: { OTHER: 'z', FLINTLOCK_X: 'w' } }).parentIface, 'eth0');
  });

  it('a misspelt file key is refused with the likely key', () => {
    assert.match(loadError({ yaml: `${BASE_YAML}bridge-nam: br0\n` }), /unknown config key "bridge-nam" in config file .*; did you mean "bridge-name"\?$/);
  });

  it("booleans in YAML 1.1's words (yes/no, on/off) as well as true/false", () => {
    assert.equal(load({ yaml: 'parent-iface: eth0\ninsecure: yes\n' }).insecure, true);
    assert.equal(load({ yaml: 'parent-iface: eth0\ninsecure: On\nenable-http: NO\n' }).enableHttp, false);
    assert.equal(load({ yaml: 'parent-iface: eth0', env: { FLINTLOCKD_INSECURE: 'yes' } }).insecure, true);
    assert.equal(
      loadError({ yaml: 'parent-iface: eth0\ninsecure: maybe\n' }),
      'invalid config value for "insecure": "maybe" is not a boolean: use true or false (yes/no, on/off and 1/0 are accepted too)',
    );
  });

  it('a number out of range or not a number says the range', () => {
    assert.equal(
      loadError({ yaml: `${BASE_YAML}maximum-retry: lots\n` }),
      'invalid config value for "maximum-retry": "lots" is not a whole number from 0 to 1000',
    );
    assert.equal(
      loadError({ yaml: `${BASE_YAML}maximum-retry: 5000\n` }),
      'invalid config value for "maximum-retry": 5000 is not a whole number from 0 to 1000',
    );
  });

  it('unknown key in the file is an error naming the key and the file', () => {
    const file = yamlFile(`${BASE_YAML}no-such-key: 1\n`);
    const message = loadError({ file });
    assert.ok(message.includes('"no-such-key"'), message);
    assert.ok(message.includes(file), message);
  });

  it('unknown key in the flags is an error', () => {
    assert.match(loadError({ yaml: BASE_YAML, flags: { 'no-such-flag': 'x' } }), /unknown config key "no-such-flag" in the flags/);
  });

  it('ignored Go keys are accepted and listed', () => {
    const c = load({ yaml: `${BASE_YAML}containerd-socket: /run/containerd/containerd.sock\nfirecracker-detach: true\n` });
    assert.deepEqual(
      c.ignored.map((i) => i.key),
      ['containerd-socket', 'firecracker-detach'],
    );
    for (const i of c.ignored) assert.ok(i.why.length > 0);
  });

  it('ignored Go keys from the environment are listed too', () => {
    const c = load({ yaml: BASE_YAML, env: { FLINTLOCKD_CONTAINERD_NS: 'flintlock' } });
    assert.deepEqual(
      c.ignored.map((i) => i.key),
      ['containerd-ns'],
    );
  });

  it('deleteMicroVM-timeout is an alias of delete-vm-timeout', () => {
    assert.equal(load({ yaml: BASE_YAML }).deleteVmTimeoutMs, 10_000);
    assert.equal(load({ yaml: `${BASE_YAML}deleteMicroVM-timeout: 45s\n` }).deleteVmTimeoutMs, 45_000);
    assert.equal(load({ yaml: `${BASE_YAML}delete-vm-timeout: 1m\n` }).deleteVmTimeoutMs, 60_000);
    assert.equal(load({ yaml: BASE_YAML, flags: { 'deleteMicroVM-timeout': '2m' } }).deleteVmTimeoutMs, 120_000);
  });

  it('--config to a missing file is an error', () => {
    const missing = join(dir, 'does-not-exist.yaml');
    assert.throws(
      () => loadConfig({ file: missing, env: {}, flags: { 'parent-iface': 'eth0', insecure: true } }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(missing),
    );
  });

  it('the default path missing is fine, and read when it exists', () => {
    // The default path is injected: whatever /etc/opt/flintlockd holds on this host can't matter.
    const defaultFile = join(dir, 'default-config.yaml');
    const c = loadConfig({ defaultFile, env: {}, flags: { 'parent-iface': 'eth0', insecure: true } });
    assert.equal(c.grpcEndpoint, 'localhost:9090');
    writeFileSync(defaultFile, 'grpc-endpoint: 127.0.0.1:9999\n');
    assert.equal(loadConfig({ defaultFile, env: {}, flags: { 'parent-iface': 'eth0', insecure: true } }).grpcEndpoint, '127.0.0.1:9999');
    assert.equal(DEFAULT_CONFIG_FILE, '/etc/opt/flintlockd/config.yaml');
  });

  it('an empty file is fine', () => {
    assert.equal(loadConfig({ file: yamlFile(''), env: {}, flags: { 'parent-iface': 'eth0', insecure: true } }).parentIface, 'eth0');
  });

  it('a file that is not a mapping is an error', () => {
    const file = yamlFile('- parent-iface\n- eth0\n');
    assert.match(loadError({ file }), /must be a YAML mapping/);
  });

  it('a file that is not YAML is an error naming the file', () => {
    const file = yamlFile('parent-iface: [eth0\n');
    const message = loadError({ file });
    assert.ok(message.includes(file), message);
    assert.match(message, /not valid YAML/);
  });
});

describe('loadConfig: bad values name the key', () => {
  for (const [line, key] of [
    ['maximum-retry: abc', 'maximum-retry'],
    ['maximum-retry: -1', 'maximum-retry'],
    ['maximum-retry: 1.5', 'maximum-retry'],
    ['resync-period: 10x', 'resync-period'],
    ['resync-period: ""', 'resync-period'],
    ['default-provider: vmware', 'default-provider'],
    ['log-format: xml', 'log-format'],
    ['insecure: maybe', 'insecure'],
    ['verbosity: 11', 'verbosity'],
    ['image-max-unpacked-size: 8 parsecs', 'image-max-unpacked-size'],
    ['image-max-unpacked-size: 0', 'image-max-unpacked-size'],
    ['image-max-unpacked-size: -1GiB', 'image-max-unpacked-size'],
  ] as const) {
    it(line, () => {
      const insecure = line.startsWith('insecure:') ? '' : 'insecure: true\n';
      const message = loadError({ yaml: `parent-iface: eth0\n${insecure}${line}\n` });
      assert.ok(message.includes(`"${key}"`), message);
    });
  }

  it('resync-period 0 is rejected', () => {
    assert.match(loadError({ yaml: `${BASE_YAML}resync-period: "0"\n` }), /resync-period/);
  });

  it('the same bad value from the environment names the key too', () => {
    assert.match(loadError({ yaml: BASE_YAML, env: { FLINTLOCKD_MAXIMUM_RETRY: 'abc' } }), /"maximum-retry"/);
  });
});

describe('loadConfig: cross-key rules', () => {
  it('neither parent nor bridge', () => {
    const message = loadError({ yaml: 'insecure: true\n' });
    assert.ok(message.startsWith('you must supply at least one of parent interface, bridge name: '), message);
    for (const name of ['parent-iface', 'bridge-name', '--parent-iface', '--bridge-name', 'FLINTLOCKD_PARENT_IFACE', 'FLINTLOCKD_BRIDGE_NAME'])
      assert.ok(message.includes(name), name);
  });

  it('bridge alone is enough', () => {
    assert.equal(load({ yaml: 'bridge-name: br0\ninsecure: true\n' }).bridgeName, 'br0');
  });

  it('insecure with a tls certificate', () => {
    assert.match(
      loadError({ yaml: `${BASE_YAML}tls-cert: /etc/cert.pem\n` }),
      /^cannot specify tls certificate details when running insecurely: unset tls-cert and tls-key/,
    );
    assert.match(loadError({ yaml: `${BASE_YAML}tls-key: /etc/key.pem\n` }), /^cannot specify tls certificate details when running insecurely/);
  });

  it('secure without a certificate', () => {
    assert.match(
      loadError({ yaml: 'parent-iface: eth0\n' }),
      /^certificate file path is required when running securely: set tls-cert and tls-key .* insecure: true/,
    );
  });

  it('secure without a key', () => {
    assert.match(
      loadError({ yaml: `parent-iface: eth0\ntls-cert: ${touch('only-cert.pem')}\n` }),
      /^certificate key file path is required when running securely: set tls-cert and tls-key/,
    );
  });

  it('mTLS without a CA names tls-client-ca (not a client key)', () => {
    const cert = touch('cert.pem');
    const key = touch('key.pem');
    assert.equal(
      loadError({ yaml: `parent-iface: eth0\ntls-cert: ${cert}\ntls-key: ${key}\ntls-client-validate: true\n` }),
      "tls-client-validate (mTLS) needs tls-client-ca: set tls-client-ca to the PEM file of the CA that signs the clients' certificates, or unset tls-client-validate",
    );
  });

  it('a missing certificate file on disk', () => {
    const cert = join(dir, 'missing-cert.pem');
    const key = touch('key2.pem');
    assert.equal(
      loadError({ yaml: `parent-iface: eth0\ntls-cert: ${cert}\ntls-key: ${key}\n` }),
      `tls-cert ${cert} does not exist: set tls-cert to the server certificate's PEM file`,
    );
  });

  it('a tls-key that is a directory says so and what to set', () => {
    const cert = touch('cert-d.pem');
    assert.equal(
      loadError({ yaml: `parent-iface: eth0\ntls-cert: ${cert}\ntls-key: ${dir}\n` }),
      `tls-key ${dir} is a directory: set tls-key to the PEM file of the server certificate's private key`,
    );
  });

  it('a missing key file or client CA on disk', () => {
    const cert = touch('cert3.pem');
    const key = join(dir, 'missing-key.pem');
    assert.match(loadError({ yaml: `parent-iface: eth0\ntls-cert: ${cert}\ntls-key: ${key}\n` }), new RegExp(`${key.replaceAll('.', '\\.')} does not exist`));
    const ca = join(dir, 'missing-ca.pem');
    const key2 = touch('key3.pem');
    assert.match(
      loadError({ yaml: `parent-iface: eth0\ntls-cert: ${cert}\ntls-key: ${key2}\ntls-client-ca: ${ca}\ntls-client-validate: true\n` }),
      new RegExp(`${ca.replaceAll('.', '\\.')} does not exist`),
    );
  });

  it('a complete secure mTLS setup loads', () => {
    const c = load({
      yaml: `parent-iface: eth0\ntls-cert: ${touch('c.pem')}\ntls-key: ${touch('k.pem')}\ntls-client-ca: ${touch('ca.pem')}\ntls-client-validate: true\n`,
    });
    assert.equal(c.insecure, false);
    assert.equal(c.tlsClientValidate, true);
    assert.ok(c.tlsClientCa.endsWith('ca.pem'));
  });

  it('memory limits must be ordered', () => {
    assert.match(loadError({ yaml: `${BASE_YAML}minimum-memory-mb: 4096\nmaximum-memory-mb: 1024\n` }), /minimum-memory-mb/);
  });
});

describe('loadConfig: the VMM sandbox (ADR 0009)', () => {
  it('defaults: a uid per VM from 0x70000000, cgroups under flintlock, 256 MiB overhead, 1024 pids, no jailer', () => {
    const c = load({ yaml: BASE_YAML });
    assert.deepEqual(c.vmmIdRange, { start: 0x7000_0000, count: 65_536 });
    assert.equal(c.vmmCgroupRoot, '/sys/fs/cgroup');
    assert.equal(c.vmmCgroupParent, 'flintlock');
    assert.equal(c.vmmMemoryOverheadMb, 256);
    assert.equal(c.vmmPidsMax, 1024);
    assert.equal(c.firecrackerJailerBin, '');
  });

  it('reads them from the file, the environment and flags; empty turns uids and cgroups off', () => {
    const c = load({
      yaml: `${BASE_YAML}vmm-uid-range: "100000:500"\nvmm-cgroup-parent: system.slice/flintlock-vmms\nvmm-memory-overhead-mb: 64\n`,
      env: { FLINTLOCKD_VMM_PIDS_MAX: '256' },
      flags: { 'firecracker-jailer-bin': '/usr/local/bin/jailer' },
    });
    assert.deepEqual(c.vmmIdRange, { start: 100_000, count: 500 });
    assert.equal(c.vmmCgroupParent, 'system.slice/flintlock-vmms');
    assert.equal(c.vmmMemoryOverheadMb, 64);
    assert.equal(c.vmmPidsMax, 256);
    assert.equal(c.firecrackerJailerBin, '/usr/local/bin/jailer');
    const off = load({ yaml: `${BASE_YAML}vmm-uid-range: ""\nvmm-cgroup-parent: ""\n` });
    assert.equal(off.vmmIdRange, undefined);
    assert.equal(off.vmmCgroupParent, '');
  });

  it('refuses a range with uid 0 or not START:COUNT, a parent that is not a relative path, a jailer without uids', () => {
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-uid-range: "0:100"\n` }), /"vmm-uid-range": the range must not include uid 0/);
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-uid-range: nobody\n` }), /"vmm-uid-range": "nobody" is not START:COUNT/);
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-cgroup-parent: /sys/fs/cgroup/x\n` }), /"vmm-cgroup-parent": a relative cgroup path/);
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-cgroup-parent: ../up\n` }), /"vmm-cgroup-parent"/);
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-uid-range: ""\nfirecracker-jailer-bin: jailer\n` }), /firecracker-jailer-bin needs vmm-uid-range/);
    assert.match(loadError({ yaml: `${BASE_YAML}vmm-pids-max: 1\n` }), /"vmm-pids-max"/);
  });
});

describe('parseDuration', () => {
  for (const [text, ms] of [
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1.5s', 1500],
    ['0', 0],
    ['0s', 0],
    ['2h', 7_200_000],
    ['1m30s', 90_000],
    ['1000us', 1],
    ['1000000ns', 1],
  ] as const) {
    it(`${JSON.stringify(text)} is ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }
  for (const bad of ['', '10', 'm', '10mm', '1.5', 's10', '10 m', '1h 30m', '-1s', '10d', '.5s']) {
    it(`${JSON.stringify(bad)} is not a duration`, () => {
      assert.equal(parseDuration(bad), undefined);
    });
  }
  it('is reusable (no state kept between calls)', () => {
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('x'), undefined);
    assert.equal(parseDuration('5s'), 5000);
  });
});

describe('image-max-unpacked-size and parseSize', () => {
  it('takes a size with a binary unit, or a bare number of MiB, from any source', () => {
    assert.equal(load({ yaml: `${BASE_YAML}image-max-unpacked-size: 16GiB\n` }).imageMaxUnpackedBytes, 16 * 1024 ** 3);
    assert.equal(load({ yaml: `${BASE_YAML}image-max-unpacked-size: 2048\n` }).imageMaxUnpackedBytes, 2048 * 1024 ** 2);
    assert.equal(load({ yaml: BASE_YAML, env: { FLINTLOCKD_IMAGE_MAX_UNPACKED_SIZE: '512M' } }).imageMaxUnpackedBytes, 512 * 1024 ** 2);
    assert.equal(load({ yaml: BASE_YAML, flags: { 'image-max-unpacked-size': '1T' } }).imageMaxUnpackedBytes, 1024 ** 4);
    assert.match(loadError({ yaml: `${BASE_YAML}image-max-unpacked-size: lots\n` }), /"lots" is not a size such as 8GiB, 512MiB or 2048 \(MiB\)/);
  });

  for (const [text, bytes] of [
    ['8GiB', 8 * 1024 ** 3],
    ['8G', 8 * 1024 ** 3],
    ['8gb', 8 * 1024 ** 3],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['512 MiB', 512 * 1024 ** 2],
    ['64k', 64 * 1024],
    ['100B', 100],
    ['10', 10 * 1024 ** 2],
  ] as const) {
    it(`${JSON.stringify(text)} is ${bytes} bytes`, () => assert.equal(parseSize(text), bytes));
  }
  for (const bad of ['', 'GiB', '-1G', '1 G B', '1PiB', '1e3', '0x10']) {
    it(`${JSON.stringify(bad)} is not a size`, () => assert.equal(parseSize(bad), undefined));
  }
  it('formats sizes in the largest exact unit', () => {
    assert.deepEqual([8 * 1024 ** 3, 1536 * 1024 ** 2, 300, 0, 1025].map(formatSize), ['8 GiB', '1536 MiB', '300 bytes', '0 bytes', '1025 bytes']);
  });
});

describe('config durations given as bare numbers', () => {
  it('refuses a duration without a unit, naming the key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fl-config-bare-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'bridge-name: br0\ninsecure: true\nresync-period: 10\n');
    try {
      assert.throws(() => loadConfig({ file, env: {}, flags: {} }), /invalid config value for "resync-period": "10" is not a duration with a unit/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('loadConfig: the watch buffer (ADR 0011)', () => {
  it('defaults to 4096 events or 8 MiB, and reads both (a size takes a unit; a bare number is MiB)', () => {
    const c = load({ yaml: BASE_YAML });
    assert.equal(c.watchBufferEvents, 4096);
    assert.equal(c.watchBufferBytes, 8 * 1024 * 1024);
    const set = load({ yaml: `${BASE_YAML}watch-buffer-events: 100\nwatch-buffer-size: 512KiB\n` });
    assert.equal(set.watchBufferEvents, 100);
    assert.equal(set.watchBufferBytes, 512 * 1024);
    assert.equal(load({ yaml: BASE_YAML, env: { FLINTLOCKD_WATCH_BUFFER_SIZE: '2' } }).watchBufferBytes, 2 * 1024 * 1024);
    assert.throws(() => load({ yaml: `${BASE_YAML}watch-buffer-events: 0\n` }), /watch-buffer-events/);
  });
});

describe('loadConfig: network-config-dhcp6 (ADR 0012)', () => {
  it("defaults to the original's dhcp6: true; false from the file, the environment or a flag", () => {
    assert.equal(load({ yaml: BASE_YAML }).networkConfigDhcp6, true);
    assert.equal(load({ yaml: `${BASE_YAML}network-config-dhcp6: false\n` }).networkConfigDhcp6, false);
    assert.equal(load({ yaml: BASE_YAML, env: { FLINTLOCKD_NETWORK_CONFIG_DHCP6: 'false' } }).networkConfigDhcp6, false);
    assert.equal(load({ yaml: BASE_YAML, flags: { 'network-config-dhcp6': false } }).networkConfigDhcp6, false);
    assert.throws(() => load({ yaml: `${BASE_YAML}network-config-dhcp6: maybe\n` }), /network-config-dhcp6/);
  });
});
