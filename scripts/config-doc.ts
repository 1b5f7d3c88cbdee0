// Writes the key reference of docs/configuration.md from the one table of config keys
// (src/config/config.ts), or with --check only says whether it is current (exit 1 when not).
//   node --import tsx scripts/config-doc.ts [--check]
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { withConfigReference } from '../src/config/example.js';

const DOC = resolve(import.meta.dirname, '../docs/configuration.md');
const current = readFileSync(DOC, 'utf8');
const wanted = withConfigReference(current);
if (process.argv.includes('--check')) {
  if (current !== wanted) {
    process.stderr.write('docs/configuration.md is not the config key table: run node --import tsx scripts/config-doc.ts\n');
    process.exit(1);
  }
  process.stdout.write('docs/configuration.md matches the config key table\n');
} else if (current !== wanted) {
  writeFileSync(DOC, wanted);
  process.stdout.write('docs/configuration.md updated\n');
}
