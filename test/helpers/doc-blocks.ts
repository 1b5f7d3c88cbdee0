// The fenced blocks of the operator docs (docs/*.md) and what test/e2e/docs.test.ts does with
// them. The convention, also described in docs/README.md:
//   ```sh     a command block: run by the docs test, and its exit status checked (0 unless told);
//   ```text   output, diagrams: never run;  ```yaml / ```json: data, parsed (must be valid);
//   anything else (```bash, ```console, a bare ```) is refused, so no command hides from the test.
// An HTML comment on the line before a fence (invisible on GitHub) says more about a sh block:
//   <!-- docs-test: {"exit": 2, "stderr": ["parent-iface"]} -->       expected status, and regexes
//                                                                     its stdout/stderr must match
//   <!-- docs-test: {"background": true, "ready": "fl host info"} -->  a daemon: run in the
//        background until the next background block or the end of the document; the next block
//        waits until `ready` succeeds
//   <!-- docs-test: {"skip": "why it cannot run in the sandbox"} -->   illustrative only (rare)
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

export interface BlockOptions {
  readonly exit?: number;
  readonly stdout?: readonly string[];
  readonly stderr?: readonly string[];
  readonly background?: boolean;
  readonly ready?: string;
  readonly skip?: string;
}

export interface DocBlock {
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly lang: string;
  readonly text: string;
  readonly options: BlockOptions;
}

export const RUNNABLE = 'sh';
export const DATA_LANGS: ReadonlySet<string> = new Set(['text', 'yaml', 'json']);
const OPTION_KEYS = new Set(['exit', 'stdout', 'stderr', 'background', 'ready', 'skip']);

function parseOptions(json: string, where: string): BlockOptions {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new Error(`${where}: docs-test comment is not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: docs-test comment must be a JSON object`);
  for (const key of Object.keys(value)) if (!OPTION_KEYS.has(key)) throw new Error(`${where}: unknown docs-test option "${key}"`);
  const o = value as BlockOptions;
  if (o.exit !== undefined && (!Number.isInteger(o.exit) || o.exit < 0 || o.exit > 255)) throw new Error(`${where}: exit must be 0-255`);
  for (const re of [...(o.stdout ?? []), ...(o.stderr ?? [])]) new RegExp(re); // throws on a bad pattern
  if (o.background === true && (o.ready === undefined || o.exit !== undefined)) throw new Error(`${where}: a background block needs "ready" and has no "exit"`);
  if (o.skip !== undefined && o.skip.trim().length < 20) throw new Error(`${where}: a skipped block must say why (a sentence)`);
  return o;
}

/** Every fenced block of a Markdown file, with its docs-test options; throws on a malformed one. */
export function docBlocks(file: string, text = readFileSync(file, 'utf8')): DocBlock[] {
  const lines = text.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(.*)$/.exec(lines[i] ?? '');
    if (open === null) continue;
    const [, indent = '', fence = '', info = ''] = open;
    const lang = info.trim().split(/\s+/)[0] ?? '';
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && !(lines[i] ?? '').startsWith(`${indent}${fence}`); i++) body.push((lines[i] ?? '').slice(indent.length));
    if (i >= lines.length) throw new Error(`${file}:${start + 1}: unclosed code fence`);
    const comment = /^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$/.exec(lines[start - 1] ?? '');
    const where = `${file}:${start + 1}`;
    const options = comment !== null ? parseOptions(comment[1] ?? '', where) : {};
    if (comment !== null && lang !== RUNNABLE) throw new Error(`${where}: a docs-test comment only goes before a sh block`);
    blocks.push({ file, line: start + 1, lang, text: `${body.join('\n')}\n`, options });
  }
  return blocks;
}

/** What is wrong with the blocks of a document as the convention goes (empty: nothing). */
export function blockProblems(blocks: readonly DocBlock[]): string[] {
  const problems: string[] = [];
  for (const b of blocks) {
    const where = `${b.file}:${b.line}`;
    if (b.lang !== RUNNABLE && !DATA_LANGS.has(b.lang))
      problems.push(`${where}: fence "${b.lang}" is neither sh (run by the docs test) nor ${[...DATA_LANGS].join('/')} (not run)`);
    if (b.lang === 'yaml') {
      try {
        parseYaml(b.text);
      } catch (e) {
        problems.push(`${where}: invalid YAML: ${(e as Error).message}`);
      }
    }
    if (b.lang === 'json') {
      try {
        JSON.parse(b.text);
      } catch (e) {
        problems.push(`${where}: invalid JSON: ${(e as Error).message}`);
      }
    }
  }
  return problems;
}

/** The sh blocks the docs test runs (skipped ones left out). */
export const runnableBlocks = (blocks: readonly DocBlock[]): DocBlock[] => blocks.filter((b) => b.lang === RUNNABLE && b.options.skip === undefined);

/**
 * One bash script that runs a document's sh blocks in order in one shell (so a variable a block
 * sets is there for the next), each block's stdout, stderr and status in `<out>/<n>.out|err|rc`.
 * A block expected to exit 0 runs under errexit in the shell itself, so a failing command stops the
 * document there (that block has no .rc; the shell's status is its command's). One expected to
 * fail runs in a subshell. `preamble` sets up the sandbox first.
 */
export function docScript(blocks: readonly DocBlock[], out: string, preamble: string): { script: string; files: Record<string, string> } {
  const files: Record<string, string> = {};
  const q = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
  const lines = [
    '#!/bin/bash',
    'set -uo pipefail',
    // Job control: a background block is a process group of its own, stopped as a whole.
    'set -m',
    '__bg=""',
    '__stop_bg() {',
    '  [ -n "$__bg" ] || return 0',
    '  kill -TERM -- "-$__bg" 2>/dev/null',
    '  for __i in $(seq 100); do kill -0 -- "-$__bg" 2>/dev/null || break; sleep 0.1; done',
    '  kill -KILL -- "-$__bg" 2>/dev/null',
    '  wait "$__bg" 2>/dev/null',
    '  __bg=""',
    '}',
    // The document's status stays the failing command's, whatever stopping the daemon returns.
    "trap '__rc=$?; __stop_bg; exit $__rc' EXIT",
    preamble,
  ];
  runnableBlocks(blocks).forEach((b, n) => {
    const base = `${out}/${n}`;
    files[`${n}.sh`] = b.text;
    const io = `>${q(`${base}.out`)} 2>${q(`${base}.err`)} </dev/null`;
    const rc = q(`${base}.rc`);
    lines.push(`# block ${n}: ${b.file}:${b.line}`, `echo "$EPOCHREALTIME" >${q(`${base}.start`)}`);
    if (b.options.background === true) {
      files[`${n}.ready.sh`] = b.options.ready ?? '';
      lines.push(
        '__stop_bg',
        `( source ${q(`${base}.sh`)} ) ${io} &`,
        '__bg=$!',
        '__n=0',
        `until ( source ${q(`${base}.ready.sh`)} ) >/dev/null 2>&1; do`,
        `  kill -0 "$__bg" 2>/dev/null || { wait "$__bg"; echo "exited with status $? before it was ready" >${q(`${base}.why`)}; exit 97; }`,
        `  __n=$((__n + 1)); [ "$__n" -lt 300 ] || { echo "not ready after 60 s" >${q(`${base}.why`)}; exit 98; }`,
        '  sleep 0.2',
        'done',
        `echo 0 >${rc}`,
      );
    } else if ((b.options.exit ?? 0) === 0) {
      lines.push('set -e', `source ${q(`${base}.sh`)} ${io}`, 'set +e', `echo 0 >${rc}`);
    } else {
      lines.push(`( set -e; source ${q(`${base}.sh`)} ) ${io}`, `echo $? >${rc}`);
    }
  });
  return { script: `${lines.join('\n')}\n`, files };
}

export interface BlockResult {
  readonly block: DocBlock;
  /** Undefined: the block did not finish (it, or a block before it, stopped the document). */
  readonly status?: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly why?: string;
  /** When it started (seconds, bash's EPOCHREALTIME). */
  readonly startedAt?: number;
}

/** Each runnable block's outcome, read back from `out` after the script ran. */
export function blockResults(blocks: readonly DocBlock[], out: string): BlockResult[] {
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(`${out}/${f}`, 'utf8');
    } catch {
      return undefined;
    }
  };
  return runnableBlocks(blocks).map((block, n) => {
    const rc = read(`${n}.rc`);
    const why = read(`${n}.why`);
    const start = read(`${n}.start`);
    return {
      ...(start !== undefined ? { startedAt: Number(start.trim()) } : {}),
      block,
      ...(rc !== undefined ? { status: Number(rc.trim()) } : {}),
      stdout: read(`${n}.out`) ?? '',
      stderr: read(`${n}.err`) ?? '',
      ...(why !== undefined ? { why: why.trim() } : {}),
    };
  });
}

/** What is wrong with one block's outcome against its options (undefined: as documented). */
export function resultProblem(r: BlockResult, shellStatus: number | null): string | undefined {
  const where = `${r.block.file}:${r.block.line}`;
  const tail = (s: string): string => s.split('\n').slice(-25).join('\n');
  const shown = `\n--- the block:\n${r.block.text}--- stdout:\n${tail(r.stdout)}\n--- stderr:\n${tail(r.stderr)}`;
  if (r.status === undefined) return `${where}: the block failed (shell status ${String(shellStatus)}${r.why !== undefined ? `: ${r.why}` : ''})${shown}`;
  const expected = r.block.options.exit ?? 0;
  if (r.status !== expected) return `${where}: exit status ${r.status}, the doc says ${expected}${shown}`;
  for (const [stream, text] of [
    ['stdout', r.stdout],
    ['stderr', r.stderr],
  ] as const) {
    for (const re of r.block.options[stream] ?? []) if (!new RegExp(re, 'm').test(text)) return `${where}: ${stream} does not match /${re}/${shown}`;
  }
  return undefined;
}
