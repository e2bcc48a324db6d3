// `tail <topic>`: print a topic's records as JSON lines, values decoded from Avro (Confluent wire
// format, schema from the registry) like `rpk topic consume`; the raw topic (signals.raw) prints its
// bytes as text. Reads committed records only, with a throw-away consumer group.
import { randomBytes } from 'node:crypto';
import { TOPICS } from '../runtime/topics.ts';
import { failTool, type InMessage } from '../runtime/kafka.ts';
import { EXIT, UsageError, type CliContext } from './context.ts';

export interface TailOptions {
  topic: string;
  fromBeginning: boolean;
  max: number | null;
  prefix: string;
  out?: (line: string) => void;
  /** Resolves when the caller wants to stop (Ctrl-C). */
  stop?: Promise<void>;
}

/** JSON-safe copy: Buffers become text when they are UTF-8, else {base64}. */
function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v)) {
    const text = v.toString('utf8');
    return Buffer.from(text, 'utf8').equals(v) ? text : { base64: v.toString('base64') };
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

export async function tailCommand(ctx: CliContext, o: TailOptions): Promise<number> {
  const def = TOPICS.find((t) => t.name === o.topic);
  if (!def) throw new UsageError(`unknown topic ${JSON.stringify(o.topic)}; topics: ${TOPICS.map((t) => t.name).join(', ')}`);
  const physical = o.prefix + def.name;
  const raw = def.record === 'raw';
  const codec = raw ? null : await ctx.codec(o.prefix);
  const out = o.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const consumer = ctx.kafka().consumer({ groupId: `${o.prefix}cli-tail-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('tail') });
  let printed = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const print = async (m: InMessage) => {
    let value: unknown;
    let error: string | undefined;
    if (m.value === null) value = null;
    else if (raw) value = m.value.toString('utf8');
    else {
      try {
        value = plain(await codec!.decode(m.topic, m.value));
      } catch (err) {
        error = (err as Error).message;
        value = { base64: m.value.toString('base64') };
      }
    }
    const rec = { topic: o.topic, partition: m.partition, offset: Number(m.offset), timestamp: m.timestamp, key: m.key, headers: m.headers, value, ...(error ? { error } : {}) };
    out(JSON.stringify(rec));
  };
  await consumer.connect();
  try {
    await consumer.subscribe([physical], o.fromBeginning);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        if (o.max !== null && printed >= o.max) break;
        await print(m);
        printed++;
        ctl.resolveOffset(m.offset);
        if (o.max !== null && printed >= o.max) done();
      }
    });
    if (o.max === 0) done();
    await Promise.race([finished, o.stop ?? new Promise<void>(() => undefined)]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
  }
  return EXIT.ok;
}
