// Structured JSON logs (pino). Secrets are redacted by path, and additionally any string value equal
// to the configured API secret is scrubbed by a serializer hook: a secret must never reach a log line.
import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from './config.ts';

export type { Logger };

const REDACT = [
  'secret', 'apiSecret', 'api_secret', 'password', 'token', 'authorization', 'BYBIT_API_SECRET', 'ADMIN_TOKEN',
  '*.secret', '*.apiSecret', '*.api_secret', '*.password', '*.token', '*.authorization', '*.BYBIT_API_SECRET', '*.ADMIN_TOKEN',
  'headers["x-bapi-sign"]', '*.headers["x-bapi-sign"]', 'headers.authorization', '*.headers.authorization',
];

export function createLogger(cfg: Pick<Config, 'LOG_LEVEL' | 'BYBIT_API_SECRET' | 'ADMIN_TOKEN'>, name = 'pipeline', dest?: DestinationStream): Logger {
  const secrets = [cfg.BYBIT_API_SECRET, cfg.ADMIN_TOKEN].filter((s): s is string => typeof s === 'string' && s.length >= 4);
  const options: pino.LoggerOptions = {
    name,
    level: cfg.LOG_LEVEL,
    redact: { paths: REDACT, censor: '[redacted]' },
    hooks: {
      // Last line of defence: a secret embedded in a message or error text is replaced.
      streamWrite(line) {
        let out = line;
        for (const s of secrets) if (out.includes(s)) out = out.split(s).join('[redacted]');
        return out;
      },
    },
  };
  return dest ? pino(options, dest) : pino(options);
}
