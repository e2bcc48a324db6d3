// Structured JSON logs (pino). A secret must never reach a log line, whatever is logged: an error
// of the Bybit client carries its request (axios `config` with the X-BAPI-SIGN header, bybit-api's
// `requestOptions` with the API secret), often several causes deep. So every object logged, at any
// depth and through error causes, is scrubbed before it is written (`scrub`):
//   - values under a sensitive key are replaced, the key matched case-insensitively (HTTP headers
//     come as X-BAPI-SIGN or x-bapi-sign);
//   - errors become plain objects (type, message, stack, own fields, cause: scrubbed in turn);
//   - strings lose the configured secrets' values, `sign=…` query parameters, signature headers in
//     raw HTTP text, and the arguments of a websocket auth request.
// The written line goes through the string rules once more (the message text too).
import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from './config.ts';

export type { Logger };

const CENSOR = '[redacted]';
/** Keys whose values are never written (compared lower-cased, `-`/`_` ignored). */
const SENSITIVE = new Set(['secret', 'apisecret', 'bybitapisecret', 'password', 'passwd', 'token', 'admintoken', 'authorization', 'cookie', 'xbapisign', 'sign', 'signature']);
const isSensitive = (key: string) => SENSITIVE.has(key.toLowerCase().replace(/[-_]/g, ''));

const TEXT_RULES: Array<[RegExp, string]> = [
  // sign=<value> in a query string or form body
  [/(\bsign=)[^&\s"'\\]+/gi, `$1${CENSOR}`],
  // a signature header in raw HTTP text (ClientRequest._header) or a JSON/inspected header object
  [/(x-bapi-sign\\?["']?\s*[:=]\s*\\?["']?)[^"'\\\s,}]+/gi, `$1${CENSOR}`],
  // the websocket auth request: {"op":"auth","args":[key, expires, signature]} (a bare word, so a
  // second pass over the written, escaped line leaves it as it is)
  [/(\\?"op\\?"\s*:\s*\\?"auth\\?"\s*,\s*\\?"args\\?"\s*:\s*\[)[^\]]*\]/gi, '$1redacted]'],
];

/** A text without the secrets' values and without signatures. */
export function scrubText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(CENSOR);
  for (const [re, to] of TEXT_RULES) out = out.replace(re, to);
  return out;
}

const MAX_DEPTH = 12;

/** A copy of `value` safe to write: see the header. Cycles become '[circular]'. */
export function scrub(value: unknown, secrets: readonly string[], depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return scrubText(value, secrets);
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? undefined : value;
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => scrub(v, secrets, depth + 1, seen));
    if (value instanceof Date) return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = isSensitive(k) ? CENSOR : scrub(v, secrets, depth + 1, seen);
    if (value instanceof Error) {
      out.type ??= value.name; // kafkajs errors have a `type` of their own, which says more
      out.message = scrubText(value.message, secrets);
      if (value.stack) out.stack = scrubText(value.stack, secrets);
      if (value.cause !== undefined) out.cause = scrub(value.cause, secrets, depth + 1, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** The values a logger of this configuration scrubs wherever they appear. */
export function secretsOf(cfg: Pick<Config, 'BYBIT_API_SECRET' | 'ADMIN_TOKEN'>): string[] {
  return [cfg.BYBIT_API_SECRET, cfg.ADMIN_TOKEN].filter((s): s is string => typeof s === 'string' && s.length >= 4);
}

/** stderr, written synchronously: the last words of a process that exits right after. */
export const syncStderr = (): DestinationStream => pino.destination({ dest: 2, sync: true });

export function createLogger(cfg: Pick<Config, 'LOG_LEVEL' | 'BYBIT_API_SECRET' | 'ADMIN_TOKEN'>, name = 'pipeline', dest?: DestinationStream): Logger {
  const secrets = secretsOf(cfg);
  const options: pino.LoggerOptions = {
    name,
    level: cfg.LOG_LEVEL,
    formatters: {
      log: (obj) => scrub(obj, secrets) as Record<string, unknown>,
      bindings: (b) => scrub(b, secrets) as Record<string, unknown>,
    },
    // Errors are already plain, scrubbed objects (with their causes): pino's own serializer would
    // take them apart again.
    serializers: { err: (e: unknown) => e },
    hooks: {
      streamWrite: (line) => scrubText(line, secrets),
    },
  };
  return dest ? pino(options, dest) : pino(options);
}
