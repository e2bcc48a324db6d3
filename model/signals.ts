// Signal generation, warm-up and model mode, and the seed's JSON rendering.
//
// The emitter keeps the recent tickers of each configured asset and, when an asset is due (every
// WARMUP_INTERVAL_MS in warm-up, MODEL_SIGNAL_INTERVAL_MS in model mode, event time of the injected
// clock), decides:
//   - warm-up: with probability WARMUP_RANDOMNESS a coin-flip side, else the heuristic's side
//     (momentum / mean reversion on the last 3 returns); amount uniform in [WARMUP_MIN_AMOUNT,
//     WARMUP_MAX_AMOUNT]; is_warmup true, model_version null;
//   - model: P(up) from the active model; no signal when |P - 0.5| < MODEL_MIN_EDGE or when the
//     expected return after round-trip costs (model/money.ts: |2P - 1| x E|move| - 2 x (fee + half
//     spread + slippage), measured on the service's own windows and fills) is below
//     MODEL_MIN_EXPECTED_BPS; side from P, confidence max(P, 1 - P), amount from MODEL_MIN_AMOUNT
//     at that margin up to MODEL_MAX_AMOUNT at MODEL_FULL_SIZE_BPS above it.
// Every signal carries the features it was decided on (market_data_snapshot.technical_indicators)
// and the exposure (metadata.extra), so the window builder can rebuild the same sample.
import type { ModelSignal, Ticker } from '../schemas/types.ts';
import type { ModelConfig } from './config.ts';
import { computeFeatures, FEATURE_SPEC_ID, MIN_HISTORY, snapshotOf, tickFromTicker, type Tick } from './features.ts';
import { heuristicProbability } from './evaluate.ts';
import type { TrainedModel } from './learner.ts';
import type { ModeState } from './policy.ts';
import { SeededRng } from './rng.ts';
import { expectedNetBps, sideCostBps, SPREAD_FEATURE, type CostEstimate } from './money.ts';
import { randomUUID } from 'node:crypto';
import type { ExitOrder } from './exits.ts';

export function uuidFrom(rng: SeededRng): string {
  const hex = Array.from({ length: 32 }, () => rng.int(16).toString(16));
  hex[12] = '4';
  hex[16] = (8 + rng.int(4)).toString(16);
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

export type EmitterConfig = Pick<
  ModelConfig,
  | 'MODEL_ASSETS' | 'MODEL_STRATEGY_ID' | 'MODEL_FEATURE_LOOKBACK' | 'MODEL_MIN_EDGE' | 'MODEL_SIGNAL_INTERVAL_MS' | 'MODEL_MIN_AMOUNT' | 'MODEL_MAX_AMOUNT'
  | 'WARMUP_INTERVAL_MS' | 'WARMUP_MIN_AMOUNT' | 'WARMUP_MAX_AMOUNT' | 'WARMUP_RANDOMNESS' | 'WARMUP_HEURISTIC' | 'MODEL_SEED' | 'MODEL_CONTROL_STRATEGY_ID'
  | 'MODEL_MIN_EXPECTED_BPS' | 'MODEL_FULL_SIZE_BPS'
>;

export interface EmitContext {
  mode: ModeState;
  model: { version: string; model: TrainedModel } | null;
  /**
   * Warm-up: the active version, judged in shadow. Its P(up) on each warm-up signal's features is
   * taken when the signal is decided and carried in metadata.extra (`shadow_p`, `shadow_version`):
   * judged later, when the window closes, the model would have been fine-tuned online on windows
   * whose horizons overlap this one's (their labels see its future), and its shadow record would
   * count a prediction it could not have made.
   */
  shadow?: { version: string; model: TrainedModel } | null;
  /** Exposure feature of an asset (signed notional / scale). */
  exposure: (asset: string) => number;
  /** Measured costs and moves of an asset (model/money.ts); without them the model does not trade. */
  costs?: (asset: string) => CostEstimate;
}

export class SignalEmitter {
  private readonly history = new Map<string, Tick[]>();
  private readonly nextDue = new Map<string, number>();
  private readonly controlDue = new Map<string, number>();
  readonly rng: SeededRng;
  private readonly controlRng: SeededRng;
  private readonly newId: () => string;

  /**
   * `rng` drives the decisions (sides, amounts, coin flips): seeded, so a seed reproduces them.
   * `ids` names the signals: never from that seed, since the service restarts on the same
   * database and a signal_id drawn again from the same sequence would be refused as a duplicate of
   * yesterday's signal. Tests that compare whole signals pass a seeded one.
   */
  constructor(private readonly cfg: EmitterConfig, rng?: SeededRng, ids?: () => string) {
    this.rng = rng ?? new SeededRng(cfg.MODEL_SEED);
    this.controlRng = new SeededRng(cfg.MODEL_SEED + 1);
    this.newId = ids ?? randomUUID;
  }

  /** Track a ticker (ignored for other assets and when older than the newest one). */
  onTicker(t: Ticker): void {
    if (!this.cfg.MODEL_ASSETS.includes(t.symbol)) return;
    const tick = tickFromTicker(t);
    if (!tick) return;
    const list = this.history.get(t.symbol) ?? [];
    if (list.length && list[list.length - 1]!.ts > tick.ts) return;
    list.push(tick);
    const keep = this.cfg.MODEL_FEATURE_LOOKBACK + 2;
    if (list.length > keep) list.splice(0, list.length - keep);
    this.history.set(t.symbol, list);
  }

  historyOf(asset: string): readonly Tick[] {
    return this.history.get(asset) ?? [];
  }

  /** Signals due at `now` (each asset at most once per interval). */
  emit(now: number, ctx: EmitContext): ModelSignal[] {
    const out: ModelSignal[] = [];
    const interval = ctx.mode.mode === 'warmup' ? this.cfg.WARMUP_INTERVAL_MS : this.cfg.MODEL_SIGNAL_INTERVAL_MS;
    for (const asset of this.cfg.MODEL_ASSETS) {
      const due = this.nextDue.get(asset) ?? -Infinity;
      if (now < due) continue;
      const hist = this.history.get(asset) ?? [];
      if (hist.length < MIN_HISTORY) continue; // no market data yet: nothing to decide on
      this.nextDue.set(asset, now + interval);
      const exposure = ctx.exposure(asset);
      const features = computeFeatures(hist, exposure, this.cfg.MODEL_FEATURE_LOOKBACK)!;
      const s = ctx.mode.mode === 'model' && ctx.model ? (ctx.costs ? this.modelSignal(asset, now, hist, features, exposure, ctx.model, ctx.costs(asset)) : null) : this.warmupSignal(asset, now, hist, features, exposure, false, ctx.shadow ?? null);
      if (s) out.push(s);
    }
    if (ctx.mode.mode === 'model' && this.cfg.MODEL_CONTROL_STRATEGY_ID) out.push(...this.controlSignals(now, ctx));
    return out;
  }

  /**
   * The control arm: what warm-up would have traded, traded for real under its own strategy_id
   * while the model trades, on the warm-up cadence. The order manager books each strategy apart,
   * so "is the model worth more than warm-up" is read from the same books, prices and costs over
   * the same period. Its own random stream, so the arm does not change the model's signals.
   */
  private controlSignals(now: number, ctx: EmitContext): ModelSignal[] {
    const out: ModelSignal[] = [];
    for (const asset of this.cfg.MODEL_ASSETS) {
      if (now < (this.controlDue.get(asset) ?? -Infinity)) continue;
      const hist = this.history.get(asset) ?? [];
      if (hist.length < MIN_HISTORY) continue;
      this.controlDue.set(asset, now + this.cfg.WARMUP_INTERVAL_MS);
      const exposure = ctx.exposure(asset);
      const features = computeFeatures(hist, exposure, this.cfg.MODEL_FEATURE_LOOKBACK)!;
      out.push(this.warmupSignal(asset, now, hist, features, exposure, true));
    }
    return out;
  }

  private base(asset: string, now: number, hist: readonly Tick[], features: number[]) {
    return { signal_id: this.newId(), asset, timestamp: now, strategy_id: this.cfg.MODEL_STRATEGY_ID, market_data_snapshot: snapshotOf(hist, features), trace_id: this.newId() };
  }

  /** A warm-up signal; `control`: the control arm's (its strategy_id, its random stream, mode `control`). */
  warmupSignal(asset: string, now: number, hist: readonly Tick[], features: number[], exposure: number, control = false, shadow: { version: string; model: TrainedModel } | null = null): ModelSignal {
    const rng = control ? this.controlRng : this.rng;
    const b = { ...this.base(asset, now, hist, features), ...(control ? { strategy_id: this.cfg.MODEL_CONTROL_STRATEGY_ID } : {}) };
    const p = heuristicProbability(features, this.cfg.WARMUP_HEURISTIC);
    const random = p === 0.5 || rng.next() < this.cfg.WARMUP_RANDOMNESS;
    const side = random ? (rng.next() < 0.5 ? 'buy' : 'sell') : p > 0.5 ? 'buy' : 'sell';
    const amount = round(rng.uniform(this.cfg.WARMUP_MIN_AMOUNT, this.cfg.WARMUP_MAX_AMOUNT), 2);
    const clampedAmount = Math.min(this.cfg.WARMUP_MAX_AMOUNT, Math.max(this.cfg.WARMUP_MIN_AMOUNT, amount));
    return {
      ...b,
      signal_type: side,
      amount: clampedAmount,
      confidence: random ? 0.5 : round(Math.max(p, 1 - p), 4),
      model_version: null,
      is_warmup: true,
      metadata: {
        reasoning: `${control ? 'control arm, ' : ''}${random ? 'warm-up: random side (controlled randomness)' : `warm-up: ${this.cfg.WARMUP_HEURISTIC} on ret_3 = ${round(features[1]!, 2)} bps`}`,
        risk_score: round(Math.min(1, features[3]! / 100), 4),
        randomness_level: this.cfg.WARMUP_RANDOMNESS,
        mode: control ? 'control' : 'warmup',
        extra: JSON.stringify({ exposure, feature_spec: FEATURE_SPEC_ID, random, heuristic: this.cfg.WARMUP_HEURISTIC, ...(shadow ? { shadow_p: shadow.model.predict([features])[0]!, shadow_version: shadow.version } : {}) }),
      },
    };
  }

  /**
   * A horizon exit (model/exits.ts): the opposite side of an entry, sized to the quantity it
   * filled; under the entry's version and confidence (it passed the order manager's minimum when
   * it entered), mode 'exit', `exit_of` in metadata.extra.
   */
  exitSignal(o: ExitOrder, now: number): ModelSignal | null {
    const hist = this.history.get(o.asset) ?? [];
    if (hist.length < MIN_HISTORY) return null;
    const features = computeFeatures(hist, 0, this.cfg.MODEL_FEATURE_LOOKBACK)!;
    return {
      ...this.base(o.asset, now, hist, features),
      signal_id: o.signalId,
      signal_type: o.side,
      amount: o.amount,
      confidence: o.confidence,
      model_version: o.version,
      is_warmup: false,
      metadata: {
        reasoning: `horizon exit of ${o.entry}: ${o.side} ${o.qty} (what it filled)${o.lateMs > 0 ? `, ${o.lateMs} ms after its horizon` : ''}`,
        risk_score: 0,
        randomness_level: 0,
        mode: 'exit',
        extra: JSON.stringify({ exit_of: o.entry, qty: o.qty, late_ms: o.lateMs, feature_spec: FEATURE_SPEC_ID }),
      },
    };
  }

  /** The touch an order of `side` takes on the asset's newest ticker (ask for a buy, bid for a sell). */
  touch(asset: string, side: 'buy' | 'sell'): number | null {
    const hist = this.history.get(asset);
    const t = hist?.[hist.length - 1];
    if (!t) return null;
    const px = side === 'buy' ? t.ask : t.bid;
    return px !== null && px !== undefined && px > 0 ? px : t.mid;
  }

  modelSignal(asset: string, now: number, hist: readonly Tick[], features: number[], exposure: number, m: { version: string; model: TrainedModel }, costs: CostEstimate): ModelSignal | null {
    const p = m.model.predict([features])[0]!;
    const edge = Math.abs(p - 0.5);
    if (!(edge >= this.cfg.MODEL_MIN_EDGE) || edge === 0) return null;
    // Money first: a direction that does not pay its round trip with margin is not traded.
    const expected = expectedNetBps(p, features[SPREAD_FEATURE]!, costs);
    if (expected === null || !(expected >= this.cfg.MODEL_MIN_EXPECTED_BPS)) return null;
    const b = this.base(asset, now, hist, features);
    const strength = Math.min(1, Math.max(0, (expected - this.cfg.MODEL_MIN_EXPECTED_BPS) / this.cfg.MODEL_FULL_SIZE_BPS));
    const amount = round(this.cfg.MODEL_MIN_AMOUNT + (this.cfg.MODEL_MAX_AMOUNT - this.cfg.MODEL_MIN_AMOUNT) * strength, 2);
    return {
      ...b,
      signal_type: p > 0.5 ? 'buy' : 'sell',
      amount: Math.min(this.cfg.MODEL_MAX_AMOUNT, Math.max(this.cfg.MODEL_MIN_AMOUNT, amount)),
      confidence: round(Math.max(p, 1 - p), 4),
      model_version: m.version,
      is_warmup: false,
      metadata: {
        reasoning: `model ${m.version}: P(up over ${m.model.spec.horizonMs} ms) = ${round(p, 4)}, expected ${round(expected, 2)} bps after ${round(2 * sideCostBps(costs, features[SPREAD_FEATURE]!), 2)} bps round-trip costs`,
        risk_score: round(Math.min(1, features[3]! / 100), 4),
        randomness_level: 0,
        mode: 'model',
        extra: JSON.stringify({ exposure, feature_spec: FEATURE_SPEC_ID, p_up: p, expected_bps: expected, cost_rt_bps: 2 * sideCostBps(costs, features[SPREAD_FEATURE]!), abs_move_bps: costs.absMoveBps, fee_bps: costs.feeBps, slippage_bps: costs.slippageBps }),
      },
    };
  }
}
