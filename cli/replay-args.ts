// The replay's command line: options, ranges and times as the operator writes them.
import { parseArgs } from 'node:util';
import { parseIsoTimestamp } from '../pipelines/signal-format.ts';
import { UsageError } from './context.ts';
import type { OffsetSpec, ReplayOptions } from './replay-types.ts';

export const REPLAY_HELP = `Usage: npm run cli -- replay (--file signals.jsonl | --topic-prefix P [range]) [options]

Replays recorded signals through the order manager against a fresh seeded simulator, in a fresh
namespace (topics, consumer groups, queues, database) deleted afterwards, and writes
reports/backtest-<name>.json and reports/backtest-<name>.html (equity-curve chart).

Input (one of):
  --file PATH              JSON-lines file, one signal JSON per line.
  --topic-prefix P         Replay P's signals.raw topic ('' for the unprefixed one), with
    --from-offset N|p:N,..   first offset per partition (inclusive; default: the start),
    --to-offset N|p:N,..     last offset per partition (exclusive; default: the end now),
    --from-time T            records from this time (ISO 8601 or epoch ms, inclusive),
    --to-time T              until this time (exclusive).
Options:
  --name NAME              Report name (default: replay).
  --seed N                 Simulator seed (default 1).
  --set KEY=VALUE          A setting for the replayed services (repeatable), e.g. RISK_MAX_ORDER_NOTIONAL=500.
  --reports-dir DIR        Where reports go (default: reports).
  --signal-timeout-ms N    How long one signal may take (default 30000).
  --max-gap-ms N           Most simulated market time between two signals (default 60000).
  --strategies LIST        Strategies compared with the recorded one, comma-separated (default
                           warm-up,buy-and-hold,coin-flip; 'recorded' alone: no comparison). Each
                           runs in a world of its own, side by side.
  --coin-seed N            Seed of the coin flip and the warm-up heuristic's ties (default: --seed).
  --parallel N             Most strategy worlds run at once (default: all; 1 on a loaded machine).
  --log-level L            Log level of the replayed services, to stderr (default silent).
  --no-progress            No progress bar.
Exit codes: 0 done, 1 failed, 2 usage error.
`;

function parseOffsets(s: string | undefined, what: string): OffsetSpec | undefined {
  if (s === undefined) return undefined;
  if (/^\d+$/.test(s)) return Number(s);
  const out: Record<number, number> = {};
  for (const part of s.split(',')) {
    const m = /^(\d+):(\d+)$/.exec(part.trim());
    if (!m) throw new UsageError(`${what} must be N or partition:offset,... (got ${JSON.stringify(s)})`);
    out[Number(m[1])] = Number(m[2]);
  }
  return out;
}

function parseTime(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  const t = /^\d+$/.test(s) ? Number(s) : parseIsoTimestamp(s);
  if (t === null || !Number.isFinite(t)) throw new UsageError(`${what} must be an ISO 8601 time with an offset or epoch ms`);
  return t;
}

function parseIntOpt(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s)) throw new UsageError(`${what} must be a whole number >= 0`);
  return Number(s);
}

export function parseReplayArgs(argv: string[]): ReplayOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        file: { type: 'string' },
        'topic-prefix': { type: 'string' },
        'from-offset': { type: 'string' },
        'to-offset': { type: 'string' },
        'from-time': { type: 'string' },
        'to-time': { type: 'string' },
        name: { type: 'string' },
        seed: { type: 'string' },
        set: { type: 'string', multiple: true },
        'reports-dir': { type: 'string' },
        'signal-timeout-ms': { type: 'string' },
        'max-gap-ms': { type: 'string' },
        'log-level': { type: 'string' },
        'no-progress': { type: 'boolean' },
        strategies: { type: 'string' },
        'coin-seed': { type: 'string' },
        parallel: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.file !== undefined && v['topic-prefix'] !== undefined) throw new UsageError('give either --file or --topic-prefix, not both');
  if (v.file === undefined && v['topic-prefix'] === undefined) throw new UsageError('replay needs --file or --topic-prefix');
  if (v.file !== undefined && (v['from-offset'] ?? v['to-offset'] ?? v['from-time'] ?? v['to-time']) !== undefined) throw new UsageError('offset and time ranges apply to --topic-prefix only');
  const settings: Record<string, string> = {};
  for (const kv of v.set ?? []) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(kv);
    if (!m) throw new UsageError(`--set needs KEY=VALUE (got ${JSON.stringify(kv)})`);
    settings[m[1]!] = m[2]!;
  }
  let strategies: ReplayOptions['strategies'];
  if (v.strategies !== undefined) {
    const known = ['recorded', 'warm-up', 'buy-and-hold', 'coin-flip'] as const;
    const list = v.strategies.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
    for (const x of list) if (!(known as readonly string[]).includes(x)) throw new UsageError(`--strategies: unknown strategy ${JSON.stringify(x)} (known: ${known.join(', ')})`);
    strategies = list as NonNullable<ReplayOptions['strategies']>;
  }
  return {
    name: v.name ?? 'replay',
    seed: parseIntOpt(v.seed, '--seed') ?? 1,
    file: v.file,
    topicPrefix: v['topic-prefix'],
    fromOffset: parseOffsets(v['from-offset'], '--from-offset'),
    toOffset: parseOffsets(v['to-offset'], '--to-offset'),
    fromTime: parseTime(v['from-time'], '--from-time'),
    toTime: parseTime(v['to-time'], '--to-time'),
    reportsDir: v['reports-dir'],
    signalTimeoutMs: parseIntOpt(v['signal-timeout-ms'], '--signal-timeout-ms'),
    maxGapMs: parseIntOpt(v['max-gap-ms'], '--max-gap-ms'),
    logLevel: v['log-level'],
    progress: !v['no-progress'],
    settings,
    strategies,
    coinSeed: parseIntOpt(v['coin-seed'], '--coin-seed'),
    parallel: parseIntOpt(v.parallel, '--parallel'),
  };
}

/** `npm run cli -- replay ...`: returns the exit code. */
