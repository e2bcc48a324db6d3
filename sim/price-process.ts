// Seeded, clock-driven mid-price process (one series per symbol name, shared by spot and linear).
// Time is cut into steps of `stepMs`; the price at a step depends only on the seed, the options and
// the step index, never on order flow, so identical seed + inputs give identical paths.
//
// Modes:
//  - random-walk: log-returns drift + volatility * N(0,1), optionally cycling through regimes.
//  - pattern:     a planted, learnable structure. `patternRegime` momentum-noise (the default):
//                 alternating regimes of momentum (returns follow an AR(1) with coefficient
//                 `momentum`) and pure noise, `patternRegimeSteps` long; learnable, noise,
//                 trend-revert: drift blocks sized against trading costs (sim/regimes.ts).
//  - replay:      each step takes the next close of a kline CSV (sim/data/btcusdt-1m.csv by
//                 default); other symbols follow the same relative moves from their own start.
//
// Random draws: BTCUSDT, ETHUSDT and SOLUSDT draw from one shared stream, in that order, as they
// always did, so their paths for a seed are those of the simulator before it listed more symbols.
// Every other symbol has its own stream keyed by its name: listing, adding or delisting a symbol
// changes no other symbol's path. A series added after the start (a new instrument, or one a
// restored state does not hold) gets `historyMinutes` of warm-up history from its own stream.
//
// A process can be restored from its snapshot (step count, time, mids, rng states, last day of
// candles). Time the simulator was down is a market halt: the process continues from the saved
// mids at the clock's time, with the next step index, instead of replaying the missed steps.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Rng, type RngState } from './rng.ts';
import { toStep } from './num.ts';
import { BLOCK_REGIMES, blockSign, plantedDrift, regimeLabel, type PatternRegime } from './regimes.ts';

export interface Regime {
  drift: number;
  volatility: number;
  steps: number;
}

export interface PriceProcessOptions {
  mode?: 'random-walk' | 'pattern' | 'replay';
  /** Length of one price step, ms. Default 1000. */
  stepMs?: number;
  /** Mean log-return per step. Default 0. */
  drift?: number;
  /** Stdev of the log-return per step. Default 0.0001. */
  volatility?: number;
  /** Cycled in order; overrides drift/volatility in random-walk mode. */
  regimes?: Regime[];
  /** pattern mode: AR(1) coefficient of returns during momentum regimes. Default 0.6. */
  momentum?: number;
  /** pattern mode: steps per regime. Default 300. */
  patternRegimeSteps?: number;
  /**
   * pattern mode: which planted structure (sim/regimes.ts). Default momentum-noise, the original
   * one; learnable, noise and trend-revert take their drift, volatility and block length from
   * BLOCK_REGIMES (`momentum`, `volatility`, `patternRegimeSteps` do not apply to them).
   */
  patternRegime?: PatternRegime;
  /** replay mode: CSV path (default sim/data/btcusdt-1m.csv) or rows. */
  replayCsv?: string;
  replayRows?: KlineRow[];
  /** Minutes of history generated before start, for /v5/market/kline. Default 120. */
  historyMinutes?: number;
}

export interface KlineRow {
  start: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  turnover: number;
}

export interface StepEvent {
  time: number;
  index: number;
  symbol: string;
  prev: number;
  price: number;
  /** Size of the synthetic public trade printed at this step (base units). */
  tradeQty: number;
  tradeSide: 'Buy' | 'Sell';
}

/** What a restarted process needs to continue: see PriceProcess.snapshot(). */
export interface PriceState {
  steps: number;
  /** Time of the last completed step. */
  time: number;
  rng: RngState;
  series: Array<{
    symbol: string;
    initialPrice: number;
    mid: number;
    lastReturn: number;
    /** 1-minute candles of the last day as [start, open, high, low, close, volume, turnover]. */
    candles: number[][];
    /** The series' own random stream (symbols other than the three sharing `rng`). */
    rng?: RngState;
  }>;
}

interface Series {
  symbol: string;
  initialPrice: number;
  tickSize: number;
  mid: number;
  lastReturn: number;
  candles: Map<number, KlineRow>;
  /** Sorted starts of candles, for range queries. */
  starts: number[];
  /** Own random stream; undefined: the shared one. */
  rng?: Rng;
}

/** The symbols of the shared stream: the simulator's first three, whose seeded paths stay as they were. */
const SHARED_STREAM = new Set(['BTCUSDT', 'ETHUSDT', 'SOLUSDT']);

/** Stream number of a symbol's own random stream (a hash of its name, clear of the id streams 1-5). */
function streamOf(symbol: string): number {
  let h = 2166136261;
  for (let i = 0; i < symbol.length; i++) h = Math.imul(h ^ symbol.charCodeAt(i), 16777619);
  return 1000 + ((h >>> 0) % 1_000_000_000);
}

export const DEFAULT_KLINE_CSV = fileURLToPath(new URL('./data/btcusdt-1m.csv', import.meta.url));
const MAX_CANDLES = 20000;
const MINUTE = 60_000;
/** Candles kept in a snapshot: what the tickers' 24-hour figures need. */
const SNAPSHOT_CANDLE_MS = 24 * 60 * MINUTE;

export function parseKlineCsv(text: string): { symbol?: string; rows: KlineRow[] } {
  let symbol: string | undefined;
  const rows: KlineRow[] = [];
  for (const line of text.split(/\r?\n/)) {
    const l = line.trim();
    if (!l) continue;
    if (l.startsWith('#')) {
      const m = /symbol=([A-Z0-9]+)/.exec(l);
      if (m) symbol = m[1];
      continue;
    }
    if (/^[a-zA-Z]/.test(l)) continue; // header
    const [s, o, h, lo, c, v, t] = l.split(',').map(Number);
    if (![s, o, h, lo, c].every((x) => Number.isFinite(x))) continue;
    rows.push({ start: s!, open: o!, high: h!, low: lo!, close: c!, volume: v ?? 0, turnover: t ?? 0 });
  }
  rows.sort((a, b) => a.start - b.start);
  return { symbol, rows };
}

export class PriceProcess {
  readonly stepMs: number;
  private readonly rng: Rng;
  private readonly series: Series[];
  private readonly bySymbol = new Map<string, Series>();
  private readonly t0: number;
  private stepIndex = 0; // steps done
  private readonly replay?: { symbol?: string; rows: KlineRow[] };
  private readonly seed: number;

  constructor(
    private readonly opts: PriceProcessOptions,
    seed: number,
    symbols: Array<{ symbol: string; initialPrice: number; tickSize: number }>,
    startTime: number,
    restore?: PriceState,
  ) {
    this.stepMs = opts.stepMs ?? 1000;
    this.seed = seed;
    this.rng = restore ? Rng.fromState(restore.rng) : new Rng(seed, 1);
    if ((opts.mode ?? 'random-walk') === 'replay') {
      this.replay = opts.replayRows ? { rows: opts.replayRows } : parseKlineCsv(readFileSync(opts.replayCsv ?? DEFAULT_KLINE_CSV, 'utf8'));
      if (this.replay.rows.length === 0) throw new Error('replay: kline CSV has no rows');
    }
    const missing: typeof symbols = [];
    this.series = [];
    for (const s of symbols) {
      const saved = restore?.series.find((r) => r.symbol === s.symbol);
      if (saved) {
        const candles = new Map(saved.candles.map(([start, open, high, low, close, volume, turnover]) => [start!, { start: start!, open: open!, high: high!, low: low!, close: close!, volume: volume!, turnover: turnover! }]));
        // A series saved without its own stream drew from the shared one (state version 1): it
        // gets its own now, unless it is one of the shared three.
        const rng = saved.rng ? Rng.fromState(saved.rng) : SHARED_STREAM.has(s.symbol) ? undefined : new Rng(seed, streamOf(s.symbol));
        this.series.push({ ...s, initialPrice: saved.initialPrice, mid: saved.mid, lastReturn: saved.lastReturn, candles, starts: [...candles.keys()], rng });
      } else if (restore) {
        missing.push(s);
      } else {
        const first = this.replay?.rows[0];
        const mid = first && this.replay?.symbol === s.symbol ? first.close : s.initialPrice;
        const rng = SHARED_STREAM.has(s.symbol) ? undefined : new Rng(seed, streamOf(s.symbol));
        this.series.push({ ...s, initialPrice: mid, mid, lastReturn: 0, candles: new Map(), starts: [], rng });
      }
    }
    for (const s of this.series) this.bySymbol.set(s.symbol, s);
    if (restore) {
      // Downtime is a halt: the next step comes one step after the later of the saved time and now.
      this.stepIndex = restore.steps;
      this.t0 = Math.max(restore.time, startTime) - restore.steps * this.stepMs;
      for (const s of missing) this.ensureSeries(s.symbol, s.initialPrice, s.tickSize);
      return;
    }
    const historyMs = (opts.historyMinutes ?? 120) * MINUTE;
    this.t0 = startTime - historyMs;
    // Warm-up history: deterministic steps up to the start time.
    this.advanceTo(startTime);
  }

  /** State to continue from after a restart (the last day of candles only). */
  snapshot(): PriceState {
    const from = this.time - SNAPSHOT_CANDLE_MS;
    return {
      steps: this.stepIndex,
      time: this.time,
      rng: this.rng.state(),
      series: this.series.map((s) => ({
        symbol: s.symbol,
        initialPrice: s.initialPrice,
        mid: s.mid,
        lastReturn: s.lastReturn,
        candles: s.starts.filter((t) => t >= from).map((t) => {
          const c = s.candles.get(t)!;
          return [c.start, c.open, c.high, c.low, c.close, c.volume, c.turnover];
        }),
        ...(s.rng ? { rng: s.rng.state() } : {}),
      })),
    };
  }

  /**
   * A series for a symbol listed after the start (or missing from a restored state), with its own
   * stream and `historyMinutes` of warm-up history ending at the current step; an existing series
   * only takes the smaller tick. Deterministic: the same seed, symbol and step give the same path.
   */
  ensureSeries(symbol: string, initialPrice: number, tickSize: number): void {
    const cur = this.bySymbol.get(symbol);
    if (cur) {
      cur.tickSize = Math.min(cur.tickSize, tickSize);
      return;
    }
    const s: Series = { symbol, initialPrice, tickSize, mid: initialPrice, lastReturn: 0, candles: new Map(), starts: [], rng: new Rng(this.seed, streamOf(symbol)) };
    const warmup = Math.floor(((this.opts.historyMinutes ?? 120) * MINUTE) / this.stepMs);
    for (let k = Math.max(1, this.stepIndex - warmup + 1); k <= this.stepIndex; k++) this.stepSeries(s, this.t0 + k * this.stepMs, k);
    let at = this.series.findIndex((x) => x.symbol > symbol);
    if (at < 0) at = this.series.length;
    this.series.splice(at, 0, s);
    this.bySymbol.set(symbol, s);
  }

  get steps(): number {
    return this.stepIndex;
  }

  /** Time of the last completed step. */
  get time(): number {
    return this.t0 + this.stepIndex * this.stepMs;
  }

  mid(symbol: string): number {
    const s = this.bySymbol.get(symbol);
    if (!s) throw new Error(`no price series for ${symbol}`);
    return s.mid;
  }

  symbols(): string[] {
    return this.series.map((s) => s.symbol);
  }

  /**
   * Regime label at a step (pattern/regimes modes), for tests of learners. The block regimes'
   * directions are per symbol (default: the first listed).
   */
  regimeAt(index = this.stepIndex, symbol = this.series[0]?.symbol ?? ''): string {
    const mode = this.opts.mode ?? 'random-walk';
    const regime = this.opts.patternRegime ?? 'momentum-noise';
    if (mode === 'pattern' && regime !== 'momentum-noise') return regimeLabel(regime, index, this.blockSigns(symbol));
    if (mode === 'pattern') return Math.floor(index / (this.opts.patternRegimeSteps ?? 300)) % 2 === 0 ? 'momentum' : 'noise';
    if (mode === 'random-walk' && this.opts.regimes?.length) return `regime-${this.regimeIndex(index)}`;
    return mode;
  }

  /** A symbol's block signs in the block regimes (sim/regimes.ts): block index → ±1, fixed by the seed. */
  blockSigns(symbol: string): (block: number) => 1 | -1 {
    const stream = streamOf(symbol);
    return (block) => blockSign(this.seed, stream, block);
  }

  /** Planted log-drift of a step of a symbol (0 outside the block regimes), for tests and docs. */
  plantedDrift(symbol: string, index: number): number {
    if ((this.opts.mode ?? 'random-walk') !== 'pattern') return 0;
    return plantedDrift(this.opts.patternRegime ?? 'momentum-noise', index, this.blockSigns(symbol));
  }

  /** Jump a symbol's mid (admin/test control). Later steps continue from the new level. */
  setMid(symbol: string, price: number, time: number): void {
    const s = this.bySymbol.get(symbol);
    if (!s) throw new Error(`no price series for ${symbol}`);
    s.mid = toStep(price, s.tickSize);
    s.lastReturn = 0;
    this.record(s, time, s.mid, 0);
  }

  /**
   * Run every step due up to `now`. `onStep` sees each step (for matching resting orders); at
   * most `maxEvents` of the latest steps are returned for publishing.
   */
  advanceTo(now: number, onStep?: (events: StepEvent[]) => void, maxEvents = 200): StepEvent[] {
    const target = Math.floor((now - this.t0) / this.stepMs);
    const out: StepEvent[] = [];
    while (this.stepIndex < target) {
      this.stepIndex++;
      const time = this.t0 + this.stepIndex * this.stepMs;
      const evs = this.series.map((s) => this.stepSeries(s, time, this.stepIndex));
      onStep?.(evs);
      out.push(...evs);
      if (out.length > maxEvents * this.series.length) out.splice(0, out.length - maxEvents * this.series.length);
    }
    return out;
  }

  private regimeIndex(index: number): number {
    const rs = this.opts.regimes ?? [];
    const total = rs.reduce((a, r) => a + Math.max(1, r.steps), 0);
    let k = index % total;
    for (let i = 0; i < rs.length; i++) {
      k -= Math.max(1, rs[i]!.steps);
      if (k < 0) return i;
    }
    return 0;
  }

  private stepSeries(s: Series, time: number, index: number): StepEvent {
    const prev = s.mid;
    const mode = this.opts.mode ?? 'random-walk';
    const rng = s.rng ?? this.rng;
    const z = rng.normal();
    const u = rng.next();
    let next: number;
    if (mode === 'replay') {
      const rows = this.replay!.rows;
      const row = rows[index % rows.length]!;
      next = this.replay!.symbol === s.symbol ? row.close : s.initialPrice * (row.close / rows[0]!.close);
    } else {
      let drift = this.opts.drift ?? 0;
      let vol = this.opts.volatility ?? 0.0001;
      let r: number;
      const regime = this.opts.patternRegime ?? 'momentum-noise';
      if (mode === 'pattern' && regime !== 'momentum-noise') {
        r = plantedDrift(regime, index, this.blockSigns(s.symbol)) + BLOCK_REGIMES[regime].volatility * z;
      } else if (mode === 'pattern') {
        const momentum = this.regimeAt(index) === 'momentum' ? (this.opts.momentum ?? 0.6) : 0;
        r = momentum * s.lastReturn + vol * z;
      } else {
        if (this.opts.regimes?.length) {
          const reg = this.opts.regimes[this.regimeIndex(index)]!;
          drift = reg.drift;
          vol = reg.volatility;
        }
        r = drift + vol * z;
      }
      next = prev * Math.exp(r);
    }
    next = Math.max(s.tickSize, toStep(next, s.tickSize));
    s.lastReturn = Math.log(next / prev);
    s.mid = next;
    // A small print each step, so publicTrade and kline volume are alive.
    const notional = 200 + 4800 * u;
    const tradeQty = notional / next;
    this.record(s, time, next, tradeQty);
    return { time, index, symbol: s.symbol, prev, price: next, tradeQty, tradeSide: next >= prev ? 'Buy' : 'Sell' };
  }

  /** Add a print to the 1-minute candle of `time`. */
  record(sOrSymbol: Series | string, time: number, price: number, qty: number): void {
    const s = typeof sOrSymbol === 'string' ? this.bySymbol.get(sOrSymbol) : sOrSymbol;
    if (!s) return;
    const start = Math.floor(time / MINUTE) * MINUTE;
    let c = s.candles.get(start);
    if (!c) {
      const open = s.starts.length ? s.candles.get(s.starts[s.starts.length - 1]!)!.close : price;
      c = { start, open, high: Math.max(open, price), low: Math.min(open, price), close: price, volume: 0, turnover: 0 };
      s.candles.set(start, c);
      const lastStart = s.starts[s.starts.length - 1];
      if (lastStart === undefined || start > lastStart) s.starts.push(start);
      else s.starts.splice(s.starts.findIndex((x) => x > start), 0, start); // a clock behind the saved time
      if (s.starts.length > MAX_CANDLES) s.candles.delete(s.starts.shift()!);
    }
    c.high = Math.max(c.high, price);
    c.low = Math.min(c.low, price);
    c.close = price;
    c.volume += qty;
    c.turnover += qty * price;
  }

  /** 1-minute candles with start in [from, to], oldest first. */
  candles(symbol: string, from: number, to: number): KlineRow[] {
    const s = this.bySymbol.get(symbol);
    if (!s) return [];
    return s.starts.slice(indexOf(s.starts, from, false), indexOf(s.starts, to, true)).map((t) => s.candles.get(t)!);
  }


  /** The last `n` one-minute candles that start before `t`, oldest first. */
  candlesBefore(symbol: string, t: number, n: number): KlineRow[] {
    const s = this.bySymbol.get(symbol);
    if (!s) return [];
    const end = indexOf(s.starts, t, false);
    return s.starts.slice(Math.max(0, end - n), end).map((x) => s.candles.get(x)!);
  }

  /** Start of the oldest one-minute candle held, if any. */
  firstCandleStart(symbol: string): number | undefined {
    return this.bySymbol.get(symbol)?.starts[0];
  }

  /** The last `n` one-minute candles, oldest first (the last one is the current minute's). */
  recentCandles(symbol: string, n: number): KlineRow[] {
    const s = this.bySymbol.get(symbol);
    if (!s) return [];
    return s.starts.slice(-n).map((t) => s.candles.get(t)!);
  }

  /** 24h statistics for tickers. */
  stats24h(symbol: string, now: number): { prev24h: number; prev1h: number; high: number; low: number; volume: number; turnover: number } {
    const s = this.bySymbol.get(symbol)!;
    const cs = this.candles(symbol, now - 24 * 60 * MINUTE, now);
    const first = cs[0];
    const hourAgo = cs.find((c) => c.start >= now - 60 * MINUTE);
    let high = s.mid, low = s.mid, volume = 0, turnover = 0;
    for (const c of cs) {
      high = Math.max(high, c.high);
      low = Math.min(low, c.low);
      volume += c.volume;
      turnover += c.turnover;
    }
    return { prev24h: first?.open ?? s.mid, prev1h: hourAgo?.open ?? s.mid, high, low, volume, turnover };
  }
}

/**
 * Index of the first start >= x (or > x when `after`) in ascending starts: a binary search, as a
 * series holds up to 20 000 candles.
 */
function indexOf(starts: readonly number[], x: number, after: boolean): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (after ? starts[m]! <= x : starts[m]! < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** Aggregate 1-minute rows into Bybit kline intervals (1,3,5,15,30,60,120,240,360,720,D,W,M). */
export function intervalStart(t: number, interval: string): number {
  if (interval === 'M') {
    const d = new Date(t);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  }
  if (interval === 'W') {
    const week = 7 * 24 * 60 * MINUTE;
    const mondayOffset = 4 * 24 * 60 * MINUTE; // 1970-01-05 was a Monday
    return Math.floor((t - mondayOffset) / week) * week + mondayOffset;
  }
  const minutes = interval === 'D' ? 1440 : Number(interval);
  const ms = minutes * MINUTE;
  return Math.floor(t / ms) * ms;
}

export const KLINE_INTERVALS = ['1', '3', '5', '15', '30', '60', '120', '240', '360', '720', 'D', 'W', 'M'] as const;

export function aggregate(rows: KlineRow[], interval: string): KlineRow[] {
  const out: KlineRow[] = [];
  for (const r of rows) {
    const start = intervalStart(r.start, interval);
    const last = out[out.length - 1];
    if (last && last.start === start) {
      last.high = Math.max(last.high, r.high);
      last.low = Math.min(last.low, r.low);
      last.close = r.close;
      last.volume += r.volume;
      last.turnover += r.turnover;
    } else {
      out.push({ ...r, start });
    }
  }
  return out;
}
