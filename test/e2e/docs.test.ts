// The operator docs, run: every ```sh block of docs/*.md (the convention: test/helpers/doc-blocks.ts
// and docs/README.md), in document order, in a sandbox that looks like a fresh host to them:
//   - a test network namespace with a NIC eth0 (a veth whose far side, in a second namespace, is
//     "the LAN": 10.98.0.1/24 with a DHCP server) and loopback; the registry the docs pull from on
//     127.0.0.1:5000 (Debian's docker-registry, as scripts/demo.sh runs it);
//   - a private mount namespace where /opt, /usr/local/bin, /etc/opt, /etc/systemd/system and
//     /var/lib are overlays onto this file's temp dir (and /tmp a tmpfs), so `scripts/install.sh`, the config in
//     /etc/opt/flintlockd and the state in /var/lib/flintlock are real paths to the docs and
//     nothing of this shared machine's own files changes; FLINTLOCKD_VMM_CGROUP_ROOT reaches the
//     host's cgroup hierarchy (`ip netns exec` hides it) and FLINTLOCKD_VMM_CGROUP_PARENT gives
//     the VMMs a cgroup parent of this file's own: the only settings the docs don't make.
// The documents share the sandbox's files in order (getting-started installs what the others use).
// Each block's exit status is checked (0 unless the doc says otherwise) and the output patterns its
// docs-test comment names; a wrong documented command fails the test, naming the file and line.
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, REPO_ROOT } from '../helpers/daemon.js';
import { blockProblems, blockResults, docBlocks, docScript, resultProblem, runnableBlocks, type DocBlock } from '../helpers/doc-blocks.js';
import { ensureGuestImage, startDnsmasq, startRegistry } from '../helpers/guest-lab.js';
import { createTestNetns, type TestNetns } from '../helpers/netns.js';
import { describeWith, GUEST_LAB, programs } from '../helpers/prerequisites.js';
import { atExit, spawnTracked } from '../helpers/processes.js';
import { CGROUPS, HOST_CGROUP_ROOT, testCgroupParent } from '../helpers/sandbox.js';

/** The operator docs, in the order an operator reads them (and the test runs them). */
export const OPERATOR_DOCS = ['getting-started.md', 'configuration.md', 'security.md', 'capmvm.md', 'troubleshooting.md', 'architecture.md'];
/** Illustrative-only sh blocks must stay rare: each one is a command no test runs. */
const MAX_SKIPPED = 3;
/** A document's whole run; a block that hangs (a daemon that was meant to refuse) ends there. */
const DOC_TIMEOUT_MS = 120_000;
const OVERLAID = ['/opt', '/usr/local/bin', '/etc/opt', '/etc/systemd/system', '/var/lib'];

const docPath = (name: string): string => join(REPO_ROOT, 'docs', name);
const relative = (path: string): string => path.slice(REPO_ROOT.length + 1);

function blocksOf(name: string): DocBlock[] {
  return docBlocks(relative(docPath(name)), readFileSync(docPath(name), 'utf8'));
}

describe('the docs follow the block convention', () => {
  it('every fence is sh (run), or text/yaml/json (not run, YAML and JSON valid); skips are rare and say why', () => {
    const all = OPERATOR_DOCS.flatMap(blocksOf);
    assert.deepEqual(blockProblems(all), []);
    const skipped = all.filter((b) => b.options.skip !== undefined);
    assert.ok(skipped.length <= MAX_SKIPPED, `${skipped.length} skipped sh blocks: ${skipped.map((b) => `${b.file}:${b.line}`).join(', ')}`);
    assert.ok(runnableBlocks(all).length >= 20, 'the docs show commands');
  });

  it('the README links every operator doc', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    for (const name of OPERATOR_DOCS) assert.ok(readme.includes(`(docs/${name})`), name);
  });
});

/**
 * Where the daemon's messages an operator meets come from: the config, the start-up checks, the
 * TLS set-up, the state dir, cgroups, the network and image steps, the API's Create.
 */
const MESSAGE_SOURCES = [
  'src/config/config.ts',
  'src/config/paths.ts',
  'src/adapters/api/tls.ts',
  'src/daemon/prerequisites.ts',
  'src/daemon/compose.ts',
  'src/daemon/background.ts',
  'src/daemon/thread-bridge.ts',
  'src/adapters/store/state-dir-claim.ts',
  'src/adapters/store/open-database.ts',
  'src/adapters/cgroups/cgroups.ts',
  'src/core/steps/network.ts',
  'src/core/steps/images.ts',
  'src/adapters/api/grpc/server.ts',
  // Not fl's own messages (src/cli/fl): their wording is being reworked (hints on TLS and
  // connection errors), and section 6 of the doc follows it by hand.
];

/**
 * The fixed text of each message in a source file: the string or template literal thrown, returned
 * as an error, or logged as a warning, cut at its `${...}` parts; the longest piece (at least 12
 * characters) is what a doc that quotes the message must contain.
 */
export function messageFragments(source: string): string[] {
  const literal = /(?:new \w*Error\(|return |message: |error: |super\(|log\.warn\(\{[^}]*\}, )\s*(`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*')/g;
  const fragments: string[] = [];
  for (const match of source.matchAll(literal)) {
    const pieces = (match[1] ?? '')
      .slice(1, -1)
      .split(/\$\{[^}]*\}?/)
      // What is left of a nested template (`${x ? ` ...`) is code, not text.
      .filter((p) => !/[?!=]==?|\$\{/.test(p))
      // Quotes and punctuation around a value (`"${v}" is not ...`) belong to the value.
      .map((p) => p.replace(/^["':;,\s]+|["':;,\s]+$/g, ''))
      .filter((p) => p.length >= 12)
      .sort((a, b) => b.length - a.length);
    if (pieces[0] !== undefined) fragments.push(pieces[0]);
  }
  return fragments;
}

describe('docs/troubleshooting.md quotes the messages of the code', () => {
  it('has the fixed text of every message from the start-up checks, the steps and the clients', () => {
    const doc = readFileSync(docPath('troubleshooting.md'), 'utf8');
    const missing = MESSAGE_SOURCES.flatMap((file) =>
      messageFragments(readFileSync(join(REPO_ROOT, file), 'utf8'))
        .filter((fragment) => !doc.includes(fragment))
        .map((fragment) => `${file}: ${fragment}`),
    );
    assert.deepEqual(missing, [], 'messages that troubleshooting.md does not quote');
  });

  it('would notice a message it does not quote', () => {
    assert.deepEqual(messageFragments('throw new ConfigError(`the frobnicator ${x} is broken: set frob`);'), ['is broken: set frob']);
    assert.deepEqual(messageFragments('return `"${v}" is not a colour such as red`;'), ['is not a colour such as red']);
  });
});

/** Every process whose mount namespace is `mntns` (the sandbox's): killed, and waited for. */
function killNamespace(mntns: string): void {
  const members = (): number[] =>
    readdirSync('/proc')
      .map(Number)
      .filter((pid) => {
        if (!Number.isInteger(pid) || pid === process.pid) return false;
        try {
          return readlinkSync(`/proc/${pid}/ns/mnt`) === mntns;
        } catch {
          return false;
        }
      });
  for (let i = 0; i < 50; i++) {
    const left = members();
    if (left.length === 0) return;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}

describeWith('the operator docs run as written', [...GUEST_LAB, CGROUPS, ...programs('openssl', 'unshare')], { timeout: 600_000 }, () => {
  let host: TestNetns;
  let lan: TestNetns;
  let dir: string;
  /** The overlays' upper dirs, on tmpfs: install.sh copies 350 MB there, slow on this disk. */
  let shm: string;
  let cgroupParent: string;
  const stops: Array<() => void> = [];
  const mntnses = new Set<string>();
  /** The output dir of the document running now. */
  let running: string | undefined;
  const readMntns = (out: string): string | undefined => {
    try {
      return readFileSync(join(out, 'mntns'), 'utf8').trim();
    } catch {
      return undefined; // its preamble has not got that far
    }
  };

  before(async () => {
    ensureGuestImage();
    dir = makeTempDir('fl-docs-');
    shm = mkdtempSync('/dev/shm/fl-docs-');
    // Registered first, so they run before the cgroups below are removed (atExit keeps order);
    // the temp dirs (the shm one holds an installed daemon, in memory) also when interrupted.
    atExit(() => {
      // Also the namespace of a document still running (interrupted): its daemon and VMMs.
      const current = running !== undefined ? readMntns(running) : undefined;
      for (const ns of [...mntnses, ...(current !== undefined ? [current] : [])]) killNamespace(ns);
      rmSync(shm, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    });
    cgroupParent = testCgroupParent('docs');
    host = createTestNetns('fldocs', { bare: true });
    lan = createTestNetns('fldocslan', { bare: true });
    host.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan.name);
    host.ip('addr', 'add', '10.98.0.2/24', 'dev', 'eth0');
    host.ip('link', 'set', 'eth0', 'up');
    lan.ip('addr', 'add', '10.98.0.1/24', 'dev', 'lan0');
    lan.ip('link', 'set', 'lan0', 'up');
    stops.push(startDnsmasq(lan.name, 'lan0', '10.98.0.50,10.98.0.150', join(dir, 'dnsmasq')).stop);
    stops.push((await startRegistry(host.name, dir)).stop);
  });

  after(() => {
    for (const ns of mntnses) killNamespace(ns);
    for (const stop of stops) stop();
    host?.destroy();
    lan?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (shm !== undefined) rmSync(shm, { recursive: true, force: true });
  });

  // DOCS_TEST_ONLY=getting-started.md,security.md runs only those (while writing them; the others
  // may depend on what an earlier one did, as getting-started installs the daemon).
  const only = process.env.DOCS_TEST_ONLY?.split(',');
  for (const name of OPERATOR_DOCS) {
    it(`docs/${name}`, { skip: only !== undefined && !only.includes(name) }, async (t) => {
      const blocks = blocksOf(name);
      if (runnableBlocks(blocks).length === 0) return;
      // Outside /tmp, which the sandbox has a tmpfs of its own on (the docs write files there).
      const out = join(shm, 'run', name);
      mkdirSync(out, { recursive: true });
      running = out;
      const overlays = OVERLAID.map((d) => {
        const base = join(shm, d);
        return `mkdir -p '${base}/upper' '${base}/work' && mount -t overlay overlay -o 'lowerdir=${d},upperdir=${base}/upper,workdir=${base}/work' '${d}'`;
      });
      const preamble = [`readlink /proc/$$/ns/mnt >'${out}/mntns'`, ...overlays, `cd '${REPO_ROOT}'`].join(' &&\n');
      const { script, files } = docScript(blocks, out, `${preamble} || exit 96`);
      for (const [file, text] of Object.entries(files)) writeFileSync(join(out, file), text);
      writeFileSync(join(out, 'script.sh'), script);
      const env: NodeJS.ProcessEnv = {
        PATH: '/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: join(shm, 'home'),
        LANG: 'C.UTF-8',
        TERM: 'dumb',
        // `ip netns exec` mounts the namespace's own sysfs over /sys, hiding the cgroup hierarchies
        // (a bind mount of them from this namespace would not carry their submounts across).
        FLINTLOCKD_VMM_CGROUP_ROOT: `/proc/${process.pid}/root${HOST_CGROUP_ROOT}`,
        FLINTLOCKD_VMM_CGROUP_PARENT: cgroupParent,
      };
      mkdirSync(env.HOME ?? '', { recursive: true });
      const child: ChildProcess = spawnTracked(
        'ip',
        ['netns', 'exec', host.name, 'unshare', '--mount', '--propagation', 'private', 'bash', join(out, 'script.sh')],
        { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let shellOutput = '';
      child.stdout?.on('data', (d: Buffer) => (shellOutput += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (shellOutput += d.toString()));
      const status = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGTERM'), DOC_TIMEOUT_MS);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve(code);
        });
      });
      const mntns = readMntns(out);
      if (mntns !== undefined) {
        mntnses.add(mntns);
        killNamespace(mntns);
      }
      running = undefined;
      assert.notEqual(status, 96, `the sandbox could not be set up: ${shellOutput}`);
      const results = blockResults(blocks, out);
      // Where the time goes: each block's seconds (until the next one started).
      results.forEach((r, i) => {
        const next = results[i + 1]?.startedAt ?? Date.now() / 1000;
        if (r.startedAt !== undefined) t.diagnostic(`${r.block.file}:${r.block.line} ${(next - r.startedAt).toFixed(1)} s`);
      });
      for (const result of results) {
        const problem = resultProblem(result, status);
        assert.equal(problem, undefined, problem);
      }
      assert.equal(status, 0, `the document's shell ended with ${String(status)}: ${shellOutput}`);
    });
  }
});

// The runner itself must be able to fail: a wrong command, a wrong status, a missing output.
describe('the docs runner fails on a wrong documented command', () => {
  const run = (markdown: string): string[] => {
    const out = makeTempDir('fl-docs-self-');
    try {
      const blocks = docBlocks('self.md', markdown);
      const { script, files } = docScript(blocks, out, 'true');
      for (const [file, text] of Object.entries(files)) writeFileSync(join(out, file), text);
      writeFileSync(join(out, 'script.sh'), script);
      let status = 0;
      try {
        execFileSync('bash', [join(out, 'script.sh')], { stdio: 'ignore' });
      } catch (e) {
        status = (e as { status: number }).status;
      }
      return blockResults(blocks, out).flatMap((r) => resultProblem(r, status) ?? []);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  };

  it('passes a right one, with variables kept from block to block', () => {
    assert.deepEqual(run('```sh\nX=41\n```\n\n```sh\necho $((X + 1))\n```\n'), []);
    assert.deepEqual(run('<!-- docs-test: {"stdout": ["^42$"]} -->\n```sh\necho 42\n```\n'), []);
    assert.deepEqual(run('<!-- docs-test: {"exit": 2, "stderr": ["nope"]} -->\n```sh\necho nope >&2; exit 2\n```\n```sh\ntrue\n```\n'), []);
  });

  it('fails a command that fails, mid-block, and stops the document there', () => {
    const problems = run('```sh\ntrue\n(exit 7)\necho never\n```\n\n```sh\ntrue\n```\n');
    assert.match(problems[0] ?? '', /self\.md:1: the block failed \(shell status 7\)/);
    assert.doesNotMatch(problems[0] ?? '', /--- stdout:\nnever/, 'the rest of the block did not run');
  });

  it('fails a wrong exit status and a missing output', () => {
    assert.match(run('<!-- docs-test: {"exit": 2} -->\n```sh\nexit 3\n```\n')[0] ?? '', /exit status 3, the doc says 2/);
    assert.match(run('<!-- docs-test: {"stdout": ["CREATED"]} -->\n```sh\necho PENDING\n```\n')[0] ?? '', /stdout does not match \/CREATED\//);
  });

  it('fails a background block that dies before it is ready', () => {
    const problems = run('<!-- docs-test: {"background": true, "ready": "false"} -->\n```sh\nexit 4\n```\n');
    assert.match(problems[0] ?? '', /exited with status 4 before it was ready/);
  });

  it('refuses fences that are neither run nor data', () => {
    assert.equal(blockProblems(docBlocks('self.md', '```bash\nls\n```\n')).length, 1);
    assert.equal(blockProblems(docBlocks('self.md', '```\nls\n```\n')).length, 1);
    assert.equal(blockProblems(docBlocks('self.md', '```yaml\na: [\n```\n')).length, 1);
    assert.throws(() => docBlocks('self.md', '<!-- docs-test: {"skip": "no"} -->\n```sh\nls\n```\n'), /must say why/);
  });
});
