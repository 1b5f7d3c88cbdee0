// `fl completion bash|zsh`: the script is made from fl's commander program, so the test loads
// the real one into bash and asks it what it completes, as bash would at a <TAB>.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { FL, makeTempDir } from '../helpers/daemon.js';

/** fl's stdout; a successful run must print nothing on stderr (no warnings). */
function run(args: readonly string[]): string {
  const result = spawnSync(FL, [...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0) throw Object.assign(new Error(`fl ${args.join(' ')} exited ${result.status}`), { status: result.status, stderr: result.stderr });
  assert.equal(result.stderr, '', `fl ${args.join(' ')} wrote on stderr`);
  return result.stdout;
}

describe('fl completion', () => {
  let script: string;

  before(() => {
    const dir = makeTempDir('fl-completion-');
    script = join(dir, 'fl.bash');
    writeFileSync(script, run(['completion', 'bash']));
  });

  /** What bash offers for the words typed so far (the last one being completed, possibly ''). */
  function complete(...words: string[]): string[] {
    const typed = ['fl', ...words].map((w) => `'${w}'`).join(' ');
    const out = execFileSync(
      'bash',
      ['-c', `source "$1"; COMP_WORDS=(${typed}); COMP_CWORD=${words.length}; _fl_complete; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', script],
      { encoding: 'utf8' },
    );
    return out.split('\n').filter((l) => l !== '');
  }

  it('registers itself for fl', () => {
    const out = execFileSync('bash', ['-c', 'source "$1"; complete -p fl', 'bash', script], { encoding: 'utf8' });
    assert.equal(out.trim(), 'complete -F _fl_complete fl');
  });

  it('completes the commands, with aliases, as fl --help lists them', () => {
    const top = complete('');
    // Every command of `fl --help` is offered: the script is made from the same program.
    const helped = [...run(['--help']).matchAll(/^ {2}([a-z]+)(?:\|([a-z]+))?\s/gm)].flatMap((m) => [m[1], m[2]]).filter((c) => c !== undefined);
    assert.ok(helped.includes('microvm') && helped.includes('completion'), helped.join(' '));
    for (const command of helped) assert.ok(top.includes(command), `${command} in ${top.join(' ')}`);
    assert.deepEqual(
      complete('microvm', '').sort(),
      ['create', 'delete', 'get', 'help', 'list', 'logs', 'ls', 'pause', 'restart', 'resume', 'start', 'stop'].sort(),
    );
    assert.deepEqual(complete('vm', 'cr'), ['create'], 'through the alias');
    assert.deepEqual(complete('host', ''), ['info', 'help']);
    assert.deepEqual(complete('completion', ''), ['bash', 'zsh']);
  });

  it("completes a command's flags and the global ones, and the choices of -o", () => {
    assert.deepEqual(complete('microvm', 'create', '--ke').sort(), ['--kernel-cmdline', '--kernel-filename', '--kernel-image']);
    const listFlags = complete('microvm', 'list', '--');
    for (const flag of ['--watch', '--namespace', '--name', '--host', '--tls-ca', '--output', '--help'])
      assert.ok(listFlags.includes(flag), `${flag} in ${listFlags.join(' ')}`);
    assert.ok(!listFlags.includes('--kernel-image'), "not another command's flags");
    assert.deepEqual(complete('-o', ''), ['table', 'json', 'yaml']);
    assert.deepEqual(complete('microvm', 'get', 'vm1', '--output', 'y'), ['yaml']);
    // A flag's value is not taken for a command.
    assert.deepEqual(complete('--host', 'microvm', 'micro'), ['microvm']);
    assert.deepEqual(complete('--host', 'h:9090', 'microvm', 'li'), ['list']);
  });

  it('prints a zsh script that runs the same completion through bashcompinit', () => {
    const zsh = run(['completion', 'zsh']);
    assert.match(zsh, /^autoload -U \+X bashcompinit && bashcompinit$/m);
    assert.match(zsh, /^complete -F _fl_complete fl$/m);
    // Apart from the zsh preamble, the same functions as for bash.
    assert.equal(
      zsh.slice(zsh.indexOf('_fl_complete_subcommands()')),
      run(['completion', 'bash']).slice(run(['completion', 'bash']).indexOf('_fl_complete_subcommands()')),
    );
  });

  it('refuses another shell', () => {
    assert.throws(
      () => run(['completion', 'fish']),
      (e: { status: number; stderr: string }) => {
        assert.equal(e.status, 2);
        assert.match(e.stderr, /^fl: command-argument value 'fish' is invalid for argument 'shell'\. Allowed choices are bash, zsh\.\n$/);
        return true;
      },
    );
  });
});
