// Model numbers, in a process of their own (its peak RSS is the model's work, not the driver's):
//   replay  — synthetic order events + tickers + signals, Avro-encoded with the project's codec,
//             then decoded and fed through the WindowBuilder in event-time order, as a replay of
//             orders.events does (records/s and order events/s; windows built/s);
//   retrain — trainingRound (split, train, evaluate, promotion rule) on 100k synthetic labelled
//             samples with the service's default settings;
//   inference — one signal's feature vector → predict, timed one at a time.
// Synthetic data (a seeded random walk with a planted momentum): the numbers are about speed only.
// Prints one JSON line on stdout.
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadConfig, schemaRegistryUrl } from '../../runtime/config.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import type { ModelSignal, OrderEvent, Ticker } from '../../schemas/types.ts';
import { parseModelConfig } from '../../model/config.ts';
import { loadTf } from '../../model/tf.ts';
import { WindowBuilder, mergeByEventTime, type WindowInput } from '../../model/windows.ts';
import { windowConfig } from '../../model/service.ts';
import { trainingRound } from '../../model/trainer.ts';
import { computeFeatures, FEATURE_NAMES, tickFromTicker, type Tick } from '../../model/features.ts';
import type { LabelledRow } from '../../model/learner.ts';
import { SeededRng } from '../../model/rng.ts';
import { dist } from './stats.ts';
import { UNIT_SCHEMAS } from '../services.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SAMPLES = Number(process.env.BENCH_RETRAIN_SAMPLES ?? 100_000);
const cfg = loadConfig({ ...process.env, LOG_LEVEL: 'silent' }, UNIT_SCHEMAS);
const mcfg = parseModelConfig({});
const wcfg = { ...windowConfig(mcfg), strategyId: mcfg.MODEL_STRATEGY_ID };
const rng = new SeededRng(17);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

function ticker(symbol: string, ts: number, mid: number): Ticker {
  return { symbol, category: 'spot', lastPrice: String(mid), bid1Price: String(mid - 0.5), bid1Size: '3', ask1Price: String(mid + 0.5), ask1Size: '2', volume24h: '1000', turnover24h: null, price24hPcnt: null, markPrice: null, ts, source: 'ws', observedAt: ts };
}

function signal(id: string, asset: string, ts: number): ModelSignal {
  return {
    signal_id: id, signal_type: 'buy', asset, amount: 20, confidence: 0.7, timestamp: ts, strategy_id: mcfg.MODEL_STRATEGY_ID, model_version: null, is_warmup: true,
    market_data_snapshot: { price: 100, spread: 1, volume_24h: 1000, volatility: 0.01, orderbook_depth: null, technical_indicators: null },
    metadata: null, trace_id: null,
  };
}

function event(signalId: string, asset: string, ts: number, type: 'order_submitted' | 'order_acknowledged' | 'order_filled', seq: number): OrderEvent {
  const filled = type === 'order_filled';
  return {
    event_id: `${signalId}-${seq}`, event_type: type, occurred_at: ts, observed_at: ts + 1, order_link_id: `om-${signalId.slice(0, 8)}`, order_id: signalId, status: filled ? 'Filled' : 'New', previous_status: null,
    category: 'spot', symbol: asset, side: 'Buy', order_type: 'Market', qty: '0.2', price: null, filled_qty: filled ? '0.2' : '0', avg_fill_price: filled ? '100.5' : null, fees: filled ? '0.0002' : null, fee_currency: filled ? asset.replace('USDT', '') : null,
    remaining_qty: filled ? '0' : '0.2', last_exec_id: null, last_exec_qty: null, last_exec_price: null, slippage_bps: filled ? 5 : null,
    latencies: { signal_to_submitted_ms: 10, submitted_to_ack_ms: 5, submitted_to_first_fill_ms: filled ? 6 : null, to_final_ms: filled ? 20 : null },
    reason_code: null, reason_detail: null, signal_id: signalId, strategy_id: mcfg.MODEL_STRATEGY_ID, model_version: null, is_warmup: true, trace_id: null,
  } as unknown as OrderEvent;
}

/** One hour of 3 assets: a ticker per asset per second, a signal per asset every 2 s, 3 order events per signal. */
function syntheticReplay(): WindowInput[] {
  const inputs: WindowInput[] = [];
  const t0 = 1_700_000_000_000;
  const assets = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];
  let off = 0;
  for (const [ai, asset] of assets.entries()) {
    let mid = 100 * (ai + 1);
    for (let s = 0; s < 3600; s++) {
      const ts = t0 + s * 1000;
      mid *= 1 + (rng.next() - 0.5) * 0.002;
      inputs.push({ kind: 'ticker', value: ticker(asset, ts, mid), src: { topic: 'market.tickers', partition: ai, offset: String(off++) } });
      if (s % 2 === 0 && s > 70) {
        const id = `${asset}-${s}-${randomBytes(4).toString('hex')}`;
        inputs.push({ kind: 'signal', value: signal(id, asset, ts), src: { topic: 'model.signals', partition: ai, offset: String(off++) } });
        (['order_submitted', 'order_acknowledged', 'order_filled'] as const).forEach((type, k) =>
          inputs.push({ kind: 'event', value: event(id, asset, ts + 20 + k * 10, type, k), src: { topic: 'orders.events', partition: ai, offset: String(off++) } }),
        );
      }
    }
  }
  return mergeByEventTime(inputs);
}

async function replayBench() {
  const codec = await createTopicCodec({ registryUrl: schemaRegistryUrl(cfg), prefix: `bench-model-${randomBytes(3).toString('hex')}.` });
  const inputs = syntheticReplay();
  const topicOf = (i: WindowInput) => (i.kind === 'ticker' ? 'market.tickers' : i.kind === 'signal' ? 'model.signals' : 'orders.events');
  // The bytes a replay reads from Kafka.
  const encoded: Array<{ kind: WindowInput['kind']; topic: string; bytes: Buffer; src: WindowInput['src'] }> = [];
  for (const i of inputs) encoded.push({ kind: i.kind, topic: topicOf(i), bytes: await codec.encode(topicOf(i), i.value), src: i.src });
  const events = inputs.filter((i) => i.kind === 'event').length;
  const runs: Array<{ records_per_s: number; order_events_per_s: number; windows_per_s: number; builder_only_records_per_s: number; windows: number }> = [];
  for (let r = 0; r < RUNS; r++) {
    let t = performance.now();
    const wb = new WindowBuilder(wcfg);
    let windows = 0;
    for (const e of encoded) {
      // As a replay decodes: synchronously once the writer schema is cached (the first record fetches it).
      const value = codec.decodeSync(e.topic, e.bytes) ?? (await codec.decode(e.topic, e.bytes));
      windows += wb.add({ kind: e.kind, value, src: e.src } as WindowInput).length;
    }
    const s = (performance.now() - t) / 1000;
    t = performance.now();
    const wb2 = new WindowBuilder(wcfg);
    for (const i of inputs) wb2.add(i);
    const s2 = (performance.now() - t) / 1000;
    runs.push({ records_per_s: Math.round(encoded.length / s), order_events_per_s: Math.round(events / s), windows_per_s: Math.round(windows / s), builder_only_records_per_s: Math.round(inputs.length / s2), windows });
  }
  return { records: inputs.length, order_events: events, runs };
}

function syntheticRows(n: number): LabelledRow[] {
  const rows: LabelledRow[] = [];
  for (let i = 0; i < n; i++) {
    const f = FEATURE_NAMES.map(() => rng.next() * 2 - 1);
    const up = f[5]! + (rng.next() - 0.5) * 1.5 > 0;
    rows.push({ features: f, label: up ? 1 : 0, market_return_bps: up ? 5 : -5, ts: 1_700_000_000_000 + i * 1000 });
  }
  return rows;
}

async function trainBench() {
  const { tf, backend } = await loadTf(mcfg.MODEL_TFJS_NODE);
  const rows = syntheticRows(SAMPLES);
  const secs: number[] = [];
  let model = null as Awaited<ReturnType<typeof trainingRound>>['candidate'] | null;
  const retrainRuns = Math.max(1, Math.min(RUNS, Number(process.env.BENCH_RETRAIN_RUNS ?? 2)));
  for (let r = 0; r < retrainRuns; r++) {
    const t = performance.now();
    const round = await trainingRound(tf, rows, mcfg, null);
    secs.push((performance.now() - t) / 1000);
    model = round.candidate;
  }
  // Inference per signal: features from the ticker history, then one prediction.
  const hist: Tick[] = [];
  let mid = 100;
  for (let i = 0; i < 200; i++) {
    mid *= 1 + (rng.next() - 0.5) * 0.002;
    hist.push(tickFromTicker(ticker('ETHUSDT', 1_700_000_000_000 + i * 1000, mid))!);
  }
  // Several runs of 1,000 timed calls (after 200 untimed): the median run's quantiles.
  const runs: Array<{ all: ReturnType<typeof dist>; predict: ReturnType<typeof dist> }> = [];
  for (let r = 0; r < RUNS; r++) {
    const lat: number[] = [];
    const predictOnly: number[] = [];
    for (let i = 0; i < 1200; i++) {
      const t = performance.now();
      const f = computeFeatures(hist.slice(0, 100 + (i % 100)), 0, mcfg.MODEL_FEATURE_LOOKBACK)!;
      const t1 = performance.now();
      model!.predict([f]);
      const t2 = performance.now();
      if (i >= 200) {
        lat.push(t2 - t);
        predictOnly.push(t2 - t1);
      }
    }
    runs.push({ all: dist(lat), predict: dist(predictOnly) });
  }
  const med = (xs: number[]) => median(xs);
  const inference = { p50: med(runs.map((r) => r.all.p50)), p90: med(runs.map((r) => r.all.p90)), p99: med(runs.map((r) => r.all.p99)), max: Math.max(...runs.map((r) => r.all.max)), runs: runs.map((r) => r.all) };
  const predictOnlyMs = { p50: med(runs.map((r) => r.predict.p50)), p99: med(runs.map((r) => r.predict.p99)) };
  return { backend, samples: SAMPLES, epochs: mcfg.MODEL_EPOCHS, retrain_s_runs: secs.map((s) => Math.round(s * 100) / 100), retrain_s: Math.round(median(secs) * 100) / 100, inference_ms: inference, predict_only_ms: predictOnlyMs };
}

// Peak RSS per phase: VmHWM is reset between phases (writing 5 to /proc/self/clear_refs), so each
// phase's peak is its own; peak_rss_mb is the highest of them (the process's peak).
const status = (k: string) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024);
const phasePeaks: Record<string, number> = {};
const phase = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
  phasePeaks['before_' + name] = status('VmHWM');
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux, or not allowed: the phases then share one peak
  }
  const out = await f();
  phasePeaks[name] = status('VmHWM');
  return out;
};
// BENCH_MODEL_PARTS (default both): `replay` and/or `train`, to measure one part alone.
const parts = (process.env.BENCH_MODEL_PARTS ?? 'replay,train').split(',');
const rssAfterImports = status('VmRSS');
const replay = parts.includes('replay') ? await phase('replay', replayBench) : null;
const train = parts.includes('train') ? await phase('train', trainBench) : null;
const hwm = Math.max(status('VmHWM'), ...Object.values(phasePeaks));
process.stdout.write(JSON.stringify({ replay, train, peak_rss_mb: hwm, rss_after_imports_mb: rssAfterImports, phase_peak_rss_mb: phasePeaks }) + '\n');
process.exit(0);
