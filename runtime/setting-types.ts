// The building blocks of settings schemas. Settings arrive from the environment as strings, where an
// empty value means "not set" (so the default applies); each unit declares its own settings with
// these (house style 8) and runtime/config.ts parses them all at start.
import { z } from 'zod';

export const emptyToUndefined = (v: unknown): unknown => (v === '' ? undefined : v);
/** A setting whose empty value counts as unset. */
export const opt = <T extends z.ZodTypeAny>(s: T) => z.preprocess(emptyToUndefined, s);
export const int = z.coerce.number().int();
export const num = z.coerce.number().finite();
/** A yes/no setting written true/false, 1/0 or yes/no. */
export const flag = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
/** A yes/no setting as `flag`, or already a boolean (a unit's config built in code). */
export const bool = z.union([z.boolean(), flag]);
