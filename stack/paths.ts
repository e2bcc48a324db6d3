import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, wherever the process was started from. */
export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
