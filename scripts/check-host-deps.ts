// CI's check that host-dependencies.txt is complete and true.
//
//   node --import tsx scripts/check-host-deps.ts [TRACE...]
//
// 1. Every program the list names is found, and comes from the package the list says (dpkg -S),
//    or, for an `extract` row, from the package's unpacked tree in .cache/.
// 2. Every program that was executed in the traced runs (strace -f -e trace=execve output files,
//    successful execs only) comes from a listed package, a package those depend on, or a package
//    every Debian system has (priority "required"); programs of this repository, its
//    node_modules and Node.js itself are ours. Anything else fails CI, naming the program, its
//    package and a command line that ran it: the next forgotten dependency fails here, not on a
//    user's host.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseHostDependencies, type HostDependency } from '../src/adapters/host/dependencies.js';

const REPO = resolve(import.meta.dirname, '..');
const deps = parseHostDependencies(readFileSync(join(REPO, 'host-dependencies.txt'), 'utf8'));
const problems: string[] = [];

/** dpkg -S for many paths at once: path -> package. Tries the /usr-merged and unmerged spellings. */
function owners(paths: readonly string[]): Map<string, string> {
  const spellings = (p: string): string[] => {
    const out = new Set([p]);
    for (const [merged, plain] of [
      ['/usr/bin/', '/bin/'],
      ['/usr/sbin/', '/sbin/'],
      ['/usr/lib/', '/lib/'],
      ['/usr/lib64/', '/lib64/'],
    ] as const) {
      if (p.startsWith(merged)) out.add(plain + p.slice(merged.length));
      if (p.startsWith(plain)) out.add(merged + p.slice(plain.length));
    }
    return [...out];
  };
  const all = [...new Set(paths.flatMap(spellings))];
  const byPath = new Map<string, string>();
  if (all.length === 0) return byPath;
  const res = spawnSync('dpkg-query', ['-S', ...all], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  for (const line of res.stdout.split('\n')) {
    const m = /^([^:]+(?::[a-z0-9]+)?(?:, [^:]+)*): (\/.*)$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) continue;
    byPath.set(m[2], m[1].split(', ')[0]?.replace(/:[a-z0-9]+$/, '') ?? '');
  }
  const result = new Map<string, string>();
  for (const p of paths) {
    const found = spellings(p)
      .map((s) => byPath.get(s))
      .find((x) => x !== undefined);
    if (found !== undefined) result.set(p, found);
  }
  return result;
}

function installed(pkg: string): boolean {
  const res = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return res.stdout.includes('install ok installed');
}

// ---- 1. the list is true ----------------------------------------------------------------------
function extractedProgram(dep: HostDependency, name: string): string | undefined {
  for (const dir of ['usr/bin', 'usr/sbin', 'bin', 'sbin']) {
    const candidate = join(REPO, '.cache', dep.package, dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

for (const dep of deps) {
  if (dep.how === 'extract') {
    for (const name of dep.programs)
      if (extractedProgram(dep, name) === undefined) problems.push(`${name}: not in .cache/${dep.package}/ (scripts/extract-package.sh ${dep.package})`);
    continue;
  }
  if (!installed(dep.package)) {
    problems.push(`${dep.package}: listed but not installed (scripts/setup.sh installs it)`);
    continue;
  }
  // What the package ships (itself or through a package it depends on: python3 is
  // python3-minimal's), whatever PATH finds first (a pyenv shim, /usr/local).
  const depends = execFileSync('dpkg-query', ['-W', '-f=${Pre-Depends},${Depends}', dep.package], { encoding: 'utf8' })
    .split(/[,|]/)
    .map((d) => d.trim().split(/[\s:(]/)[0] ?? '')
    .filter((d) => d !== '' && installed(d));
  const files = execFileSync('dpkg-query', ['-L', dep.package, ...depends], { encoding: 'utf8' }).split('\n');
  for (const name of dep.programs) {
    if (!files.some((f) => f.endsWith(`/bin/${name}`) || f.endsWith(`/sbin/${name}`)))
      problems.push(`${name}: not a program of ${dep.package} (dpkg -L ${dep.package})`);
  }
}

// ---- 2. everything executed is covered ----------------------------------------------------------
/** The listed packages, everything they depend on, and priority-required packages. */
function coveredPackages(): Set<string> {
  const listed = deps.filter((d) => d.how === 'install').map((d) => d.package);
  const out = execFileSync(
    'apt-cache',
    ['depends', '--recurse', '--installed', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...listed],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  const covered = new Set(listed);
  for (const line of out.split('\n')) {
    const m = /^\s*(?:\|?(?:Pre)?Depends: )?<?([a-z0-9][a-z0-9+.-]+)>?(?::[a-z0-9]+)?$/.exec(line);
    if (m?.[1] !== undefined) covered.add(m[1]);
  }
  const required = execFileSync('dpkg-query', ['-W', '-f=${Package} ${Priority}\n'], { encoding: 'utf8' });
  for (const line of required.split('\n')) {
    const [pkg, priority] = line.split(' ');
    if (pkg !== undefined && priority === 'required') covered.add(pkg);
  }
  // Node.js is the one prerequisite the list doesn't carry (npm comes with it).
  const nodePackage = owners([nodeBin]).get(nodeBin);
  if (nodePackage !== undefined) covered.add(nodePackage);
  return covered;
}

const traces = process.argv.slice(2);
const executed = new Map<string, string>(); // path -> one command line that ran it
for (const trace of traces) {
  for (const line of readFileSync(trace, 'utf8').split('\n')) {
    // 1234  execve("/usr/sbin/ip", ["ip", "link", ...], 0x... /* 35 vars */) = 0
    const m = /execve\("([^"]+)", \[(.*?)\](?:\.\.\.)?, .*\) = 0$/.exec(line);
    if (m?.[1] === undefined) continue;
    if (!executed.has(m[1])) executed.set(m[1], (m[2] ?? '').slice(0, 160));
  }
}

const nodeBin = realpathSync(process.execPath);
const INSTALLED = new Set(['/usr/local/bin/flintlockd', '/usr/local/bin/fl']);
const extractDirs = deps.filter((d) => d.how === 'extract').map((d) => join(REPO, '.cache', d.package) + '/');
const toCheck: string[] = [];
for (const path of executed.keys()) {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    real = path; // gone since (a temporary script): judged by its path
  }
  if (real === nodeBin) continue;
  if (extractDirs.some((d) => real.startsWith(d))) continue; // an `extract` row: listed
  if (real.startsWith(REPO + '/')) continue; // ours: bin/, scripts/, node_modules/
  if (real.startsWith('/tmp/') || real.startsWith('/var/tmp/')) continue; // test fixtures (fake VMMs)
  // Ours as scripts/install.sh installs them (the docs test does, in its sandbox's overlays).
  if (INSTALLED.has(path) || path.startsWith('/opt/flintlockd/')) continue;
  toCheck.push(path);
}

if (traces.length > 0) {
  const covered = coveredPackages();
  const owner = owners(toCheck.flatMap((p) => [p, existsSync(p) ? realpathSync(p) : p]));
  const uncovered = new Map<string, string[]>();
  for (const path of toCheck) {
    const pkg = owner.get(path) ?? (existsSync(path) ? owner.get(realpathSync(path)) : undefined);
    if (pkg !== undefined && covered.has(pkg)) continue;
    const key = pkg ?? 'no Debian package';
    uncovered.set(key, [...(uncovered.get(key) ?? []), `${path} (ran as: ${executed.get(path) ?? ''})`]);
  }
  for (const [pkg, paths] of uncovered) problems.push(`executed, but ${pkg} is not in host-dependencies.txt:\n    ${paths.join('\n    ')}`);
  console.log(`host dependencies: ${executed.size} distinct programs executed in ${traces.length} traced run(s), ${toCheck.length} from Debian packages`);
}

if (problems.length > 0) {
  console.error(`host-dependencies.txt is incomplete or wrong:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`host dependencies: ${deps.length} packages listed, every listed program found in its package`);
