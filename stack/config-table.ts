// The README configuration table, generated from the config schema so the two cannot drift:
//   npx tsx stack/config-table.ts          print it
//   npx tsx stack/config-table.ts --write  rewrite it between the README's config markers
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { settingsTable } from '../runtime/config.ts';
import { ROOT } from '../runtime/paths.ts';
import { UNIT_SCHEMAS } from './services.ts';

const cell = (d: string) => (d === '' ? '(empty)' : d === '(unset)' ? '(unset)' : `\`${d}\``);

export function configTable(): string {
  return ['| Setting | Default | Meaning |', '|---|---|---|', ...settingsTable(UNIT_SCHEMAS).map((r) => `| \`${r.name}\` | ${cell(r.default)} | ${r.meaning} |`)].join('\n');
}

/** The text between the README's config markers (null when the markers are not there exactly once). */
export function readmeTable(readme: string): string | null {
  const m = readme.match(/<!-- config:start -->\n([\s\S]*?)\n<!-- config:end -->/g);
  return m && m.length === 1 ? m[0].replace(/^<!-- config:start -->\n/, '').replace(/\n<!-- config:end -->$/, '') : null;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const file = join(ROOT, 'README.md');
    const text = readFileSync(file, 'utf8');
    // A replacer function, not a string: defaults such as `^om-…$` hold `$`` sequences that a
    // replacement string would expand (it once copied the README's head into the table).
    const out = text.replace(/<!-- config:start -->[\s\S]*?<!-- config:end -->/, () => `<!-- config:start -->\n${configTable()}\n<!-- config:end -->`);
    writeFileSync(file, out);
  } else {
    console.log(configTable());
  }
}
