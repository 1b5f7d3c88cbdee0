// `fl completion bash|zsh`: a shell completion script made from the commander program itself
// (its commands, aliases, options and option choices), so it can never fall behind the CLI.
// zsh runs the same function through bashcompinit, which every zsh ships.
import type { Command, Option } from 'commander';

export const COMPLETION_SHELLS = ['bash', 'zsh'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

interface CommandInfo {
  /** Canonical path below the program: '' for fl itself, `microvm create`. */
  readonly path: string;
  readonly subcommands: ReadonlyArray<{ readonly name: string; readonly aliases: readonly string[] }>;
  readonly options: readonly Option[];
}

function visibleOptions(cmd: Command): Option[] {
  // `hidden` is public on commander's Option but not in its types.
  return cmd.options.filter((o) => (o as Option & { hidden?: boolean }).hidden !== true);
}

function collect(cmd: Command, path: string, into: CommandInfo[]): void {
  const subcommands = cmd.commands.map((c) => ({ name: c.name(), aliases: c.aliases() }));
  into.push({ path, subcommands, options: visibleOptions(cmd) });
  for (const sub of cmd.commands) collect(sub, path === '' ? sub.name() : `${path} ${sub.name()}`, into);
}

function flagsOf(option: Option): string[] {
  return [option.short, option.long].filter((f): f is string => f !== undefined);
}

/** Options whose value is the next word (`--host x`), not a switch. */
function takesValue(option: Option): boolean {
  return option.required || option.optional;
}

/** A shell word in single quotes. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function caseArms(entries: ReadonlyArray<readonly [string, string]>, indent: string): string {
  return entries.map(([key, words]) => `${indent}${quote(key)}) echo ${quote(words)} ;;`).join('\n');
}

export function completionScript(program: Command, shell: CompletionShell): string {
  const commands: CommandInfo[] = [];
  collect(program, '', commands);
  const globalOptions = visibleOptions(program);
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}_complete`;

  const subcommandArms: Array<[string, string]> = [];
  const aliasArms: Array<[string, string]> = [];
  const flagArms: Array<[string, string]> = [];
  for (const info of commands) {
    // commander adds a `help` command to every command that has subcommands.
    if (info.subcommands.length > 0) subcommandArms.push([info.path, [...info.subcommands.flatMap((s) => [s.name, ...s.aliases]), 'help'].join(' ')]);
    for (const sub of info.subcommands) {
      const canonical = info.path === '' ? sub.name : `${info.path} ${sub.name}`;
      for (const word of [sub.name, ...sub.aliases]) aliasArms.push([`${info.path}|${word}`, canonical]);
    }
    // Global options are accepted after a subcommand too (fl microvm get x -o json).
    const own = info.path === '' ? info.options : [...info.options, ...globalOptions];
    flagArms.push([info.path, [...own.flatMap(flagsOf), '--help'].join(' ')]);
  }
  const valued = new Set<string>();
  const choiceArms: Array<[string, string]> = [];
  for (const info of commands) {
    for (const option of info.options) {
      if (!takesValue(option)) continue;
      for (const flag of flagsOf(option)) {
        valued.add(flag);
        if (option.argChoices !== undefined) choiceArms.push([flag, option.argChoices.join(' ')]);
      }
    }
  }
  choiceArms.push(['completion', COMPLETION_SHELLS.join(' ')]);

  const body = `# ${shell} completion for ${name}, made by \`${name} completion ${shell}\` from ${name}'s own command tree.
${shell === 'zsh' ? `# Load it with: source <(${name} completion zsh)   (it uses zsh's bashcompinit)\nautoload -U +X bashcompinit && bashcompinit\n` : `# Load it with: source <(${name} completion bash), or save it in /etc/bash_completion.d/${name}\n`}
# The subcommands of a command path.
${fn}_subcommands() {
  case "$1" in
${caseArms(subcommandArms, '    ')}
  esac
}
# The canonical path of "<path>|<word>" when <word> is a subcommand (or an alias of one).
${fn}_child() {
  case "$1" in
${caseArms(aliasArms, '    ')}
  esac
}
# The flags of a command path.
${fn}_flags() {
  case "$1" in
${caseArms(flagArms, '    ')}
  esac
}
# The values of a flag with fixed choices; for a word after "completion": the shells.
${fn}_choices() {
  case "$1" in
${caseArms(choiceArms, '    ')}
  esac
}
# Flags that take the next word as their value.
${fn}_valued() {
  case "$1" in
    ${[...valued].sort().map(quote).join('|') || "''"}) return 0 ;;
  esac
  return 1
}

${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word child i
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      --*=*) ;;
      -*) ${fn}_valued "$word" && ((i++)) ;;
      *)
        child="$(${fn}_child "$path|$word")"
        [[ -n "$child" ]] && path="$child"
        ;;
    esac
  done
  local prev="\${COMP_WORDS[COMP_CWORD - 1]}"
  if ((COMP_CWORD > 1)) && ${fn}_valued "$prev"; then
    local choices
    choices="$(${fn}_choices "$prev")"
    [[ -n "$choices" ]] && COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(${fn}_flags "$path")" -- "$cur"))
  elif [[ "$path" == completion ]]; then
    COMPREPLY=($(compgen -W "$(${fn}_choices completion)" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(${fn}_subcommands "$path")" -- "$cur"))
  fi
  return 0
}
complete -F ${fn} ${name}
`;
  return body;
}
