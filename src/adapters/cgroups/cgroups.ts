// One cgroup per VMM (ADR 0009) on whichever hierarchy the host has:
//   v2 (unified, `<root>/cgroup.controllers` lists memory and pids):
//      <root>/<parent>/<name>/{memory.max, pids.max, cgroup.procs}, after `+memory +pids` in the
//      cgroup.subtree_control of the root and of every parent level;
//   v1 (a hierarchy per controller, `<root>/memory` and `<root>/pids`):
//      <root>/memory/<parent>/<name>/memory.limit_in_bytes and <root>/pids/<parent>/<name>/pids.max.
// A hybrid host (v1 controllers, an empty v2 at `<root>/unified`) is v1: what counts is where the
// memory and pids controllers are. The VMM joins by writing its own pid into the cgroup.procs
// files before it execs (see providers/sandbox.ts), so it never runs outside its limits.
import { constants } from 'node:fs';
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { VmmCgroupLimits, VmmCgroups } from '../../core/ports.js';
import { validCgroupParent } from '../../core/sandbox.js';

const CONTROLLERS = ['memory', 'pids'] as const;

export type CgroupLayout = { readonly version: 2; readonly root: string } | { readonly version: 1; readonly memory: string; readonly pids: string };

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where the memory and pids controllers are under `root`, or why they can't be used. */
export async function detectCgroupLayout(root: string): Promise<CgroupLayout | { readonly error: string }> {
  const unified = await readOrUndefined(join(root, 'cgroup.controllers'));
  if (unified !== undefined) {
    const have = new Set(unified.split(/\s+/));
    const missing = CONTROLLERS.filter((c) => !have.has(c));
    if (missing.length > 0) return { error: `the cgroup v2 hierarchy at ${root} has no ${missing.join(' or ')} controller` };
    return { version: 2, root };
  }
  const memory = join(root, 'memory');
  const pids = join(root, 'pids');
  const v1 = (await exists(join(memory, 'memory.limit_in_bytes'))) && (await exists(join(pids, 'cgroup.procs')));
  if (v1) return { version: 1, memory, pids };
  return { error: `no cgroup hierarchy with the memory and pids controllers at ${root} (neither v2 with cgroup.controllers nor v1 memory/ and pids/)` };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** rmdir(2) of a cgroup is refused while a process (even one just killed) is still in it. */
const REMOVE_WAIT_MS = 2000;

export class HostVmmCgroups implements VmmCgroups {
  constructor(
    private readonly layout: CgroupLayout,
    /** `vmm-cgroup-parent`, relative to the hierarchy's root. */
    private readonly parent: string,
  ) {
    if (!validCgroupParent(parent)) throw new Error(`invalid cgroup parent "${parent.slice(0, 64)}": a relative path of plain names`);
  }

  get version(): 1 | 2 {
    return this.layout.version;
  }

  /** The VM's cgroup directory in each hierarchy (one for v2, memory then pids for v1). */
  dirs(name: string): string[] {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new Error(`invalid cgroup name "${name.slice(0, 64)}"`);
    const roots = this.layout.version === 2 ? [this.layout.root] : [this.layout.memory, this.layout.pids];
    return roots.map((root) => join(root, this.parent, name));
  }

  async ensure(name: string, limits: VmmCgroupLimits): Promise<readonly string[]> {
    const dirs = this.dirs(name);
    if (this.layout.version === 2) {
      await this.enableControllers(this.layout.root);
      const [dir] = dirs as [string];
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'memory.max'), String(limits.memoryBytes));
      await writeFile(join(dir, 'pids.max'), String(limits.pidsMax));
      return [join(dir, 'cgroup.procs')];
    }
    const [memory, pids] = dirs as [string, string];
    await mkdir(memory, { recursive: true });
    await writeFile(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    await mkdir(pids, { recursive: true });
    await writeFile(join(pids, 'pids.max'), String(limits.pidsMax));
    return [join(memory, 'cgroup.procs'), join(pids, 'cgroup.procs')];
  }

  async remove(name: string): Promise<void> {
    for (const dir of this.dirs(name)) {
      const deadline = Date.now() + REMOVE_WAIT_MS;
      for (;;) {
        try {
          await rmdir(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`cannot remove cgroup ${dir}: ${(e as Error).message}`, { cause: e });
          await sleep(50);
        }
      }
    }
  }

  async exists(name: string): Promise<boolean> {
    for (const dir of this.dirs(name)) if (await exists(dir)) return true;
    return false;
  }

  /**
   * v2 distributes a controller to a child only when its parent lists it in
   * cgroup.subtree_control: the root and each parent level must, the VM's cgroup itself not
   * (it holds the VMM, and a v2 cgroup with processes can't also distribute controllers).
   */
  private async enableControllers(root: string): Promise<void> {
    let dir = root;
    for (const level of ['', ...this.parent.split('/')]) {
      dir = level === '' ? dir : join(dir, level);
      await mkdir(dir, { recursive: true });
      const enabled = new Set(((await readOrUndefined(join(dir, 'cgroup.subtree_control'))) ?? '').split(/\s+/));
      const missing = CONTROLLERS.filter((c) => !enabled.has(c));
      if (missing.length === 0) continue;
      try {
        await writeFile(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
      } catch (e) {
        throw new Error(`cannot enable the ${missing.join(' and ')} controllers in ${dir}: ${(e as Error).message}`, { cause: e });
      }
    }
  }
}

/** `vmm-cgroup-parent` empty: VMMs get no cgroup of their own. */
export class NoVmmCgroups implements VmmCgroups {
  ensure(): Promise<readonly string[]> {
    return Promise.resolve([]);
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
  exists(): Promise<boolean> {
    return Promise.resolve(false);
  }
}
