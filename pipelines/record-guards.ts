// What PostgreSQL can store, checked before a record's values reach a query. A record can fit its
// Avro schema and still be impossible to store (fuzzing found each of these): a NUL (PostgreSQL text
// refuses it), a lone UTF-16 surrogate (jsonb refuses its \u escape), a time outside what Date and
// timestamptz hold, a decimal that numeric refuses or that costs minutes of BigInt arithmetic, an
// id that is not a UUID or an orderLinkId that breaks the orders table's check. A failed query is
// not per record (the runner retries or stops the whole partition), so each stage that stores a
// value refuses such a record in `process` (reason invalid_record / invalid_intent, dead-lettered)
// and leaves it out of its queries. One definition of each guard, used by every stage.

/** Canonical UUID text (any version/variant), case-insensitive; normalised to lower case. */
export const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Bybit's rule for orderLinkId, which the orders table checks too. */
export const ORDER_LINK_ID_RE = /^[A-Za-z0-9_-]{1,36}$/;

/** Epoch ms that both Date and PostgreSQL's timestamptz hold (4713 BC .. 275760 AD). */
export const MIN_TIME_MS = -210_866_760_000_000;
export const MAX_TIME_MS = 8.64e15;

export const isStorableTime = (t: unknown): t is number => typeof t === 'number' && Number.isFinite(t) && t >= MIN_TIME_MS && t <= MAX_TIME_MS;

/** A plain positive decimal numeric takes ("1e400" yes, "Infinity" or "1e99999" no), > 0. */
const POSITIVE_DECIMAL_RE = /^(\d{1,40}(\.\d{0,40})?|\.\d{1,40})(e[+-]?\d{1,3})?$/i;
export const isPositiveDecimal = (v: string | null): boolean => v !== null && POSITIVE_DECIMAL_RE.test(v) && Number(v) > 0;

/**
 * A signed decimal small enough for exact arithmetic (Dec) and numeric: at most 40 digits on each
 * side of the point and a two-digit exponent ("1e100000000" is refused).
 */
export const BOUNDED_DECIMAL_RE = /^-?\d{1,40}(\.\d{1,40})?(e-?\d{1,2})?$/i;

const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE_RE.source, 'g');

/**
 * Where a value holds text PostgreSQL refuses (a NUL or a lone surrogate, in a string or an object
 * key, at any depth), as "<path> contains NUL"; null when it holds none.
 */
export function unstorableText(v: unknown, path = ''): string | null {
  if (typeof v === 'string') return v.includes('\u0000') ? `${path} contains NUL` : LONE_SURROGATE_RE.test(v) ? `${path} contains a lone surrogate` : null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const b = unstorableText(v[i], `${path}[${i}]`);
      if (b) return b;
    }
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const b = unstorableText(k, `${path} key`) ?? unstorableText(x, path ? `${path}.${k}` : k);
      if (b) return b;
    }
  }
  return null;
}

/**
 * The value with what PostgreSQL refuses replaced (NUL and lone surrogates by U+FFFD, non-finite
 * numbers by null): for storing what was refused (a dead letter's reason, a rejected signal's raw
 * form) rather than refusing it again.
 */
export function pgSafe(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(LONE_SURROGATES, '\uFFFD').split('\u0000').join('\uFFFD');
  if (Array.isArray(v)) return v.map(pgSafe);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [pgSafe(k) as string, pgSafe(x)]));
  if (typeof v === 'number' && !Number.isFinite(v)) return null;
  return v;
}
