import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root, wherever the process was started from: the parent of runtime/ for the sources
 * (runtime/paths.ts), the parent of dist/ for the compiled form (dist/runtime/paths.js, `npm run
 * build:dist`), since .stack/, reports/ and the stack's files live in the repository, not in dist/.
 */
export const ROOT = resolve(fileURLToPath(new URL(import.meta.url.endsWith('.js') ? '../..' : '..', import.meta.url)));
