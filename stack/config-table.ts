// The README configuration table, generated from the config schema so the two cannot drift:
//   npx tsx stack/config-table.ts          print it
//   npx tsx stack/config-table.ts --write  rewrite it between the README's config markers
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { settingsTable } from '../runtime/config.ts';
import { ROOT } from './paths.ts';

const cell = (d: string) => (d === '' ? '(empty)' : d === '(unset)' ? '(unset)' : `\`${d}\``);
const table = ['| Setting | Default | Meaning |', '|---|---|---|', ...settingsTable().map((r) => `| \`${r.name}\` | ${cell(r.default)} | ${r.meaning} |`)].join('\n');

if (process.argv.includes('--write')) {
  const file = join(ROOT, 'README.md');
  const text = readFileSync(file, 'utf8');
  const out = text.replace(/<!-- config:start -->[\s\S]*<!-- config:end -->/, `<!-- config:start -->\n${table}\n<!-- config:end -->`);
  writeFileSync(file, out);
} else {
  console.log(table);
}
