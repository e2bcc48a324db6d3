// `npm run build:dist`: compile to dist/ (tsconfig.build.json), then copy the non-TypeScript files
// the code reads relative to its own module (new URL('./x', import.meta.url)) next to the compiled
// modules, so dist/ mirrors the source tree: runtime/migrate.ts reads ../sql/, schemas/codecs.ts
// its .avsc files, sim/price-process.ts ./data/btcusdt-1m.csv. Copying (rather than resolving those
// files from the repository root) leaves the modules unchanged and makes dist/ plus node_modules/
// and package.json (for "type": "module") all a runtime image needs. runtime/paths.ts's ROOT is the
// exception: it names the repository (for .stack/, reports/), so it steps out of dist/ itself.
// Plain JavaScript so that it runs before anything is compiled, with plain node.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
// Start clean: a module removed from the sources must not linger in dist/.
rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
// [source dir, which of its files] (not recursive: schemas/released/ is for the tests only).
const assets = [
  ['sql', (f) => f.endsWith('.sql')],
  ['schemas', (f) => f.endsWith('.avsc')],
  ['sim/data', (f) => f.endsWith('.csv')],
];
for (const [dir, keep] of assets) {
  mkdirSync(join(dist, dir), { recursive: true });
  for (const f of readdirSync(join(root, dir)).filter(keep)) copyFileSync(join(root, dir, f), join(dist, dir, f));
}
