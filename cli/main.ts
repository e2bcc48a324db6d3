// Operator CLI: `npm run cli -- <command>` (script: `tsx cli/main.ts`). Configuration is the
// services' own (runtime/config.ts, from the environment). Exit codes: 0 done, 1 failed, 2 usage
// (unknown command, bad arguments, invalid configuration, a command not available yet).
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../runtime/config.ts';
import { scrubText, secretsOf } from '../runtime/logger.ts';
import { parseConfig as restConfig } from '../connectors/bybit-rest.ts';
import { createReconciler, parseConfig as reconcilerConfig } from '../connectors/reconciler.ts';
import { formatReport } from '../connectors/reconcile-compare.ts';
import { createExchangeReader } from '../connectors/exchange-reader.ts';
import { createKillSwitch, formatKillSwitchReport, parseConfig as killSwitchConfig } from '../connectors/kill-switch.ts';
import { createMetrics } from '../runtime/metrics.ts';
import { createContext, EXIT, UsageError, type CliContext } from './context.ts';
import { statusCommand } from './status.ts';
import { tailCommand } from './tail.ts';
import { replayCommand } from './replay.ts';
import { UNIT_SCHEMAS } from '../stack/services.ts';

export const HELP = `Operator CLI of the Bybit order manager.

Usage: npm run cli -- <command> [options]

Commands:
  status [--json]                 Stack status (Kafka, schema registry, PostgreSQL, RabbitMQ, the order
                                  manager's /readyz, Bybit), trading state, open orders, consumer lag
                                  per stage, last reconciliation. Exit 1 when Kafka or PostgreSQL is down.
  reconcile [--json]              Run one reconciliation now, in this process, against the configured
                                  Bybit (BYBIT_ENV): corrections go to the exchange topics for the
                                  tracking stage. Prints the report. Exit 1 when the run failed.
  kill-switch on [--reason TEXT]  Halt trading (trading state HALTED, kill switch on) and cancel every
                                  open order of ours at Bybit; exit 1 unless verified none is left.
  kill-switch off [--reason TEXT] Switch the kill switch off and resume (ACTIVE).
  tail <topic> [--from-beginning] [--max N] [--prefix P]
                                  Print records as JSON lines, Avro values decoded (like rpk topic
                                  consume). Default: new records only, until Ctrl-C. --prefix
                                  overrides TOPIC_PREFIX.
  replay --file F | --topic-prefix P [...]
                                  Replay backtest in a fresh namespace against a seeded simulator;
                                  report + equity chart in reports/ (replay --help; docs/backtest.md).
  retrain [options]               Retrain a candidate model from orders.events (npm run retrain; see docs/model.md).
  help, --help, -h                This text.

Exit codes: 0 done, 1 failed, 2 usage error (unknown command, bad arguments, invalid configuration,
command not available yet).
Settings come from the environment (see the README's configuration table), e.g.
  TOPIC_PREFIX=t-x. npm run cli -- tail orders.events --from-beginning --max 10
`;

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function reconcile(ctx: CliContext, json: boolean): Promise<number> {
  const config = reconcilerConfig({ ...ctx.cfg, RECONCILE_ON_START: false });
  const reader = createExchangeReader({ config: restConfig(ctx.cfg), fraction: config.RECONCILE_RATE_LIMIT_FRACTION, maxPages: config.RECONCILE_MAX_PAGES });
  const codec = await ctx.codec();
  const reconciler = createReconciler({ config, db: await ctx.db(), kafka: ctx.kafka(), codec, reader, logger: ctx.logger, registry: createMetrics().registry });
  await reconciler.start({ schedule: false });
  try {
    const r = await reconciler.reconcileNow('cli');
    out(json ? JSON.stringify(r) : formatReport(r));
    return r.ok ? EXIT.ok : EXIT.failed;
  } finally {
    await reconciler.stop();
  }
}

async function killSwitch(ctx: CliContext, arg: string | undefined, reason: string | undefined, json: boolean): Promise<number> {
  if (arg !== 'on' && arg !== 'off') throw new UsageError('kill-switch needs "on" or "off"');
  const config = killSwitchConfig(ctx.cfg);
  const reader = createExchangeReader({ config: restConfig(ctx.cfg), fraction: config.KILL_SWITCH_RATE_LIMIT_FRACTION });
  const ks = createKillSwitch({ config, db: await ctx.db(), reader, logger: ctx.logger });
  const actor = `cli:${process.env.USER ?? 'operator'}`;
  const r = arg === 'on' ? await ks.engage(reason ?? 'operator command', actor) : await ks.release(actor, reason ?? 'operator command');
  out(json ? JSON.stringify(r) : formatKillSwitchReport(r));
  return r.ok ? EXIT.ok : EXIT.failed;
}

export async function main(argv: string[]): Promise<number> {
  // replay has its own options (cli/replay.ts).
  if (argv[0] === 'replay') return replayCommand(argv.slice(1));
  // retrain is the model service's retraining tool, with its own options (docs/model.md).
  if (argv[0] === 'retrain') {
    const { spawnSync } = await import('node:child_process');
    // Compiled (dist/cli/main.js, `npm run build:dist`): the compiled retrain-cli.js with plain node;
    // from the sources: retrain-cli.ts through tsx.
    const compiled = import.meta.url.endsWith('.js');
    const script = new URL(`../model/retrain-cli.${compiled ? 'js' : 'ts'}`, import.meta.url).pathname;
    const r = spawnSync(process.execPath, [...(compiled ? [] : ['--import', 'tsx']), script, ...argv.slice(1)], { stdio: 'inherit' });
    return r.status ?? EXIT.failed;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        reason: { type: 'string' },
        'from-beginning': { type: 'boolean' },
        max: { type: 'string' },
        prefix: { type: 'string' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`);
    return EXIT.usage;
  }
  const { values: v, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (v.help || command === 'help') {
    out(HELP);
    return EXIT.ok;
  }
  if (!command) {
    process.stderr.write(HELP);
    return EXIT.usage;
  }
  const known = ['status', 'reconcile', 'kill-switch', 'tail', 'replay', 'retrain'];
  if (!known.includes(command)) {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    return EXIT.usage;
  }
  let ctx: CliContext;
  try {
    ctx = createContext();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
  try {
    switch (command) {
      case 'status':
        return await statusCommand(ctx, { json: v.json ?? false });
      case 'reconcile':
        return await reconcile(ctx, v.json ?? false);
      case 'kill-switch':
        return await killSwitch(ctx, rest[0], v.reason, v.json ?? false);
      case 'tail': {
        if (!rest[0]) throw new UsageError('tail needs a topic');
        const max = v.max === undefined ? null : Number(v.max);
        if (max !== null && !(Number.isInteger(max) && max >= 0)) throw new UsageError('--max needs a whole number >= 0');
        let onSignal!: () => void;
        const stop = new Promise<void>((resolve) => (onSignal = resolve));
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        return await tailCommand(ctx, { topic: rest[0], fromBeginning: v['from-beginning'] ?? false, max, prefix: v.prefix ?? ctx.cfg.TOPIC_PREFIX, stop });
      }
      default:
        return EXIT.usage;
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\nRun with --help for usage.\n`);
      return EXIT.usage;
    }
    process.stderr.write(`${command} failed: ${scrubText((err as Error).message, secretsOf(ctx.cfg))}\n`);
    return EXIT.failed;
  } finally {
    await ctx.close();
  }
}

// Run when executed (not when imported by tests).
if (import.meta.url === `file://${process.argv[1]}` || /cli\/main\.[jt]s$/.test(process.argv[1] ?? '')) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      // The text of the error only (not its causes: a Bybit client error carries its request), scrubbed.
      let secrets: string[] = [];
      try {
        secrets = secretsOf(loadConfig(process.env, UNIT_SCHEMAS));
      } catch {
        // an invalid configuration was reported as such already
      }
      process.stderr.write(`${scrubText((err as Error).stack ?? String(err), secrets)}\n`);
      process.exit(EXIT.failed);
    },
  );
}
