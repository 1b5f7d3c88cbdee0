// What `run --help` and the example config file say about each key, from the one table of keys
// (CONFIG_KEY_SPECS): its meaning and its default as it would be written in the file.
import { stringify } from 'yaml';
import { CONFIG_KEY_SPECS, DEFAULT_CONFIG_FILE, envName, IGNORED_KEYS } from './config.js';

type KeyName = keyof typeof CONFIG_KEY_SPECS;

/** A default as it reads in a config file, or undefined when it is empty (unset). */
export function defaultText(name: KeyName): string | undefined {
  const value: unknown = CONFIG_KEY_SPECS[name].default;
  if (value === '' || (Array.isArray(value) && value.length === 0)) return undefined;
  if (typeof value === 'object' && value !== null && Object.keys(value).length === 0) return undefined;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A key's line in `run --help`. */
export function keyHelp(name: string): string {
  const ignored = IGNORED_KEYS[name];
  if (ignored !== undefined) return `accepted for the Go original's config files; no effect: ${ignored}`;
  const spec = CONFIG_KEY_SPECS[name as KeyName];
  const shown = defaultText(name as KeyName);
  return `${spec.help}${shown !== undefined ? ` (default: ${shown})` : ''}`;
}

/** Wraps a comment at about 96 columns. */
function comment(text: string): string[] {
  const lines: string[] = [];
  let line = '#';
  for (const word of text.split(' ')) {
    if (line.length + word.length + 1 > 96 && line !== '#') {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  return [...lines, line];
}

/**
 * The example config file: every key, its meaning, and its default commented out (uncomment and
 * change what you need). packaging/config.example.yaml is this text; a test keeps them equal.
 */
export function exampleConfig(): string {
  const out = [
    `# flintlockd configuration (${DEFAULT_CONFIG_FILE}).`,
    '#',
    ...comment(
      `Every key with its meaning and default. Precedence: flags (--key) over environment (${envName('state-dir')} sets state-dir) over this file over the defaults. Durations take a unit (30s, 10m, 1h30m); sizes a binary unit (512MiB, 8GiB) or are MiB.`,
    ),
    '#',
    ...comment('To start, set at least parent-iface or bridge-name, and either tls-cert and tls-key or insecure: true.'),
  ];
  for (const name of Object.keys(CONFIG_KEY_SPECS) as KeyName[]) {
    const value: unknown = CONFIG_KEY_SPECS[name].default;
    out.push(
      '',
      ...comment(CONFIG_KEY_SPECS[name].help),
      `# ${stringify({ [name]: value }, { lineWidth: 0 })
        .trimEnd()
        .split('\n')
        .join('\n#   ')}`,
    );
  }
  return `${out.join('\n')}\n`;
}
