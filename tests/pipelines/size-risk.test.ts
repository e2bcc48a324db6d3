// Table-driven unit tests of the risk and sizing rules (pipelines/risk-rules.ts), the trading state
// machine (pipelines/trading-state.ts) and the pure `process` of the stage (pipelines/size-risk.ts).
// No Kafka, no PostgreSQL: the state is built by hand from the simulator's instrument filters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../runtime/clock.ts';
import type { StageRecord } from '../../pipelines/runner.ts';
import { applyDecision, decide, exposure, forAsset, intentId, instKey, orderLinkId, reservations, RISK_REASONS, type OpenOrder, type RiskConfig, type RiskState } from '../../pipelines/risk-rules.ts';
import { ORDER_LINK_ID_RE } from '../../pipelines/record-guards.ts';
import { Dec } from '../../runtime/decimal.ts';
import { createSizeRiskStage, parseConfig, stateFrom, type StoredOutput } from '../../pipelines/size-risk.ts';
import { evaluate, utcDay, InvalidStateTransition, permits, resume, setKillSwitch, transition, TRANSITIONS, type TradingStateRow } from '../../pipelines/trading-state.ts';
import { riskInstruments } from '../../stack/sim-instruments.ts';
import type { OrderEvent, OrderIntent, Signal } from '../../schemas/types.ts';

const NOW = Date.parse('2025-11-25T21:35:10Z');

// ---------------------------------------------------------------------------------------------
// Fixtures

function baseState(): RiskState {
  const tick = (category: 'spot' | 'linear', symbol: string, bid: string, ask: string) => [instKey(category, symbol), { category, symbol, bid, ask, last: bid, markPrice: null, ts: NOW - 1000 }] as const;
  return {
    instruments: riskInstruments(),
    tickers: new Map([tick('spot', 'ETHUSDT', '2999.5', '3000.5'), tick('linear', 'ETHUSDT', '2999.5', '3000.5'), tick('spot', 'BTCUSDT', '59999.5', '60000.5'), tick('spot', 'SOLUSDT', '149.99', '150.01')]),
    balances: new Map([
      ['USDT', { coin: 'USDT', walletBalance: '10000', available: '10000', usdValue: '10000' }],
      ['ETH', { coin: 'ETH', walletBalance: '1', available: '1', usdValue: '3000' }],
    ]),
    positions: new Map(),
    openOrders: [],
    trading: { state: 'ACTIVE', killSwitch: false, reason: null },
  };
}

const BASE_CFG = {
  TOPIC_PREFIX: 'unit.',
  RISK_MAX_ORDER_NOTIONAL: '1000',
  RISK_WARMUP_MAX_ORDER_NOTIONAL: '50',
  RISK_MAX_POSITION_NOTIONAL: '10000',
  RISK_MAX_TOTAL_EXPOSURE: '50000',
  RISK_MIN_CONFIDENCE: '0.3',
  RISK_BALANCE_POLICY: 'reject',
  RISK_LIMIT_POLICY: 'shrink',
  RISK_FEE_RATE: '0.001',
  RISK_LIMIT_TTL_MS: '60000',
  RISK_PRICE_BAND_BPS: '100',
};
const cfgWith = (over: Record<string, string> = {}): RiskConfig => parseConfig({ ...BASE_CFG, ...over });

function signal(over: Partial<Signal> = {}): Signal {
  return {
    signal_id: randomUUID(),
    signal_type: 'buy',
    asset: 'ETHUSDT',
    amount: 500,
    confidence: 0.9,
    timestamp: NOW - 2000,
    strategy_id: 'strat-1',
    model_version: 'v1',
    is_warmup: false,
    market_data_snapshot: { price: 3000, spread: 1, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
    metadata: null,
    trace_id: 'trace-1',
    received_at: NOW - 1500,
    validated_at: NOW - 1400,
    ...over,
  };
}

function order(over: Partial<OpenOrder> = {}): OpenOrder {
  return {
    orderLinkId: `om-${randomUUID().slice(0, 8)}`,
    orderId: `ex-${randomUUID().slice(0, 8)}`,
    signalId: null,
    strategyId: 'strat-1',
    category: 'spot',
    symbol: 'ETHUSDT',
    side: 'Sell',
    orderType: 'Limit',
    timeInForce: 'GTC',
    marketUnit: null,
    reduceOnly: false,
    qty: '0.1',
    price: '3010',
    cumExecQty: '0',
    cumExecValue: '0',
    leavesQty: null,
    status: 'New',
    pending: null,
    ...over,
  };
}

type Expect =
  | { reject: string; detail?: RegExp }
  | { intents: Array<Partial<OrderIntent>>; reason?: string };

interface Case {
  name: string;
  cfg?: Record<string, string>;
  state?: (st: RiskState) => void;
  sig?: Partial<Signal>;
  expect: Expect;
}

function check(c: Case): void {
  const st = baseState();
  c.state?.(st);
  const sig = signal(c.sig);
  const d = decide(sig, st, cfgWith(c.cfg), NOW);
  if ('reject' in c.expect) {
    assert.equal(d.kind, 'reject', `${c.name}: expected rejection ${c.expect.reject}, got ${d.kind === 'intents' ? JSON.stringify(d.intents.map((i) => [i.action, i.qty, i.price])) : ''}`);
    if (d.kind !== 'reject') return;
    assert.equal(d.code, c.expect.reject, `${c.name}: ${d.detail}`);
    if (c.expect.detail) assert.match(d.detail, c.expect.detail, c.name);
    return;
  }
  assert.equal(d.kind, 'intents', `${c.name}: ${d.kind === 'reject' ? `${d.code}: ${d.detail}` : ''}`);
  if (d.kind !== 'intents') return;
  assert.equal(d.intents.length, c.expect.intents.length, `${c.name}: intents ${JSON.stringify(d.intents.map((i) => i.action))}`);
  c.expect.intents.forEach((want, i) => {
    const got = d.intents[i]!;
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof OrderIntent], v, `${c.name}: intent ${i} field ${k}`);
    assert.equal(got.sequence, i, `${c.name}: sequence`);
    assert.match(got.order_link_id, ORDER_LINK_ID_RE);
    assert.equal(got.decided_at, NOW);
    assert.equal(got.signal?.signal_id, sig.signal_id);
  });
  if (c.expect.reason) assert.equal(d.reason, c.expect.reason, c.name);
}

// ---------------------------------------------------------------------------------------------
// Exact decimals

test('Dec: exact parsing, arithmetic, rounding to steps', () => {
  const cases: Array<[string, () => string, string]> = [
    ['0.1 + 0.2', () => Dec.of(0.1).add(0.2).toString(), '0.3'],
    ['float noise floored to 8 dp', () => Dec.of(100.1 + 0.2).floorTo('0.00000001').toString(), '100.3'],
    ['exponent in', () => Dec.of('1e-7').toString(), '0.0000001'],
    ['number with exponent', () => Dec.of(5e-7).mul(2).toString(), '0.000001'],
    ['large exponent', () => Dec.of('1.5e3').toString(), '1500'],
    ['floor to step', () => Dec.of('0.166694').floorTo('0.00001').toString(), '0.16669'],
    ['floor to step 0.1', () => Dec.of('12.99').floorTo('0.1').toString(), '12.9'],
    ['floor already on step', () => Dec.of('0.3').floorTo('0.1').toString(), '0.3'],
    ['ceil to tick', () => Dec.of('3003.5005').ceilTo('0.01').toString(), '3003.51'],
    ['ceil on tick stays', () => Dec.of('3003.5').ceilTo('0.01').toString(), '3003.5'],
    ['floor negative', () => Dec.of('-1.25').floorTo('0.1').toString(), '-1.3'],
    ['div floor', () => Dec.of(500).div('2999.5', 8).toString(), '0.16669444'],
    ['div ceil', () => Dec.of(1).div(3, 4, 'ceil').toString(), '0.3334'],
    ['div negative floor', () => Dec.of(-1).div(3, 2).toString(), '-0.34'],
    ['mul', () => Dec.of('0.16').mul('3000.5').toString(), '480.08'],
    ['sub to zero', () => Dec.of('1.10').sub('1.1').toString(), '0'],
    ['tick 0.010 (SOL linear)', () => Dec.of('150.0155').floorTo('0.010').toString(), '150.01'],
  ];
  for (const [name, f, want] of cases) assert.equal(f(), want, name);
  assert.equal(Dec.of('2').cmp('2.000'), 0);
  assert.ok(Dec.of('0.00000001').gt(0));
  assert.throws(() => Dec.of('abc'), RangeError);
  assert.throws(() => Dec.of(NaN), RangeError);
  assert.throws(() => Dec.of(1).div(0), RangeError);
  assert.equal(Dec.maybe(null), null);
  assert.equal(Dec.maybe('x'), null);
});

// ---------------------------------------------------------------------------------------------
// Settings

test('config: defaults, per-asset maps, bad values', () => {
  const d = parseConfig({});
  assert.equal(d.RISK_BALANCE_POLICY, 'reject');
  assert.equal(d.RISK_LIMIT_POLICY, 'shrink');
  assert.equal(forAsset(d.RISK_CATEGORY, 'ETHUSDT'), 'spot');
  assert.equal(forAsset(d.RISK_MAX_ORDER_NOTIONAL, 'ETHUSDT'), 1000);
  const c = parseConfig({ RISK_CATEGORY: '{"BTCUSDT":"linear"}', RISK_MAX_ORDER_NOTIONAL: '{"*": 200, "BTCUSDT": 2000}', RISK_MIN_CONFIDENCE: '0.6' });
  assert.equal(forAsset(c.RISK_CATEGORY, 'BTCUSDT'), 'linear');
  assert.equal(forAsset(c.RISK_CATEGORY, 'ETHUSDT'), 'spot');
  assert.equal(forAsset(c.RISK_MAX_ORDER_NOTIONAL, 'BTCUSDT'), 2000);
  assert.equal(forAsset(c.RISK_MAX_ORDER_NOTIONAL, 'SOLUSDT'), 200);
  assert.equal(forAsset(c.RISK_MIN_CONFIDENCE, 'SOLUSDT'), 0.6);
  for (const bad of [{ RISK_CATEGORY: 'futures' }, { RISK_MAX_ORDER_NOTIONAL: '{"ETHUSDT": -1}' }, { RISK_MAX_ORDER_NOTIONAL: '{not json' }, { RISK_MIN_CONFIDENCE: '1.5' }, { RISK_ORDER_LINK_PREFIX: 'has-dash' }, { RISK_BALANCE_POLICY: 'maybe' }, { RISK_CATEGORY: '{"eth": "spot"}' }]) {
    assert.throws(() => parseConfig(bad), Error, JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------------------
// Sizing: quote → base, rounding, order types

const sizing: Case[] = [
  { name: 'spot market buy is quote-sized (marketUnit quoteCoin)', expect: { intents: [{ action: 'create', category: 'spot', side: 'Buy', order_type: 'Market', market_unit: 'quoteCoin', qty: '500', price: null, time_in_force: 'IOC', reduce_only: false, expires_at: null }], reason: 'new_signal' } },
  { name: 'quote amount with float noise floors to quotePrecision', sig: { amount: 100.1 + 0.2 }, expect: { intents: [{ qty: '100.3' }] } },
  { name: 'spot market sell: base qty at the bid, floored to basePrecision', sig: { signal_type: 'sell' }, expect: { intents: [{ action: 'create', side: 'Sell', order_type: 'Market', market_unit: 'baseCoin', qty: '0.16669' }] } },
  { name: 'spot limit buy: bid - 10 bps floored to tick, qty at the limit price, TTL', cfg: { RISK_ORDER_TYPE: 'limit', RISK_LIMIT_OFFSET_BPS: '10' }, expect: { intents: [{ order_type: 'Limit', price: '2996.5', qty: '0.16686', market_unit: null, time_in_force: 'GTC', expires_at: NOW + 60000 }] } },
  { name: 'spot limit sell: ask + 10 bps ceiled to tick', cfg: { RISK_ORDER_TYPE: 'limit', RISK_LIMIT_OFFSET_BPS: '10' }, sig: { signal_type: 'sell' }, expect: { intents: [{ order_type: 'Limit', side: 'Sell', price: '3003.51', qty: '0.16647' }] } },
  { name: 'limit with negative offset crosses the spread; PostOnly and no TTL by config', cfg: { RISK_ORDER_TYPE: 'limit', RISK_LIMIT_OFFSET_BPS: '-10', RISK_LIMIT_TIME_IN_FORCE: 'PostOnly', RISK_LIMIT_TTL_MS: '0' }, expect: { intents: [{ price: '3002.49', time_in_force: 'PostOnly', expires_at: null }] } },
  { name: 'limit buy from a bid / ask a fresh tick kept (spot stream) while they are within RISK_TICKER_MAX_AGE_MS', cfg: { RISK_ORDER_TYPE: 'limit', RISK_LIMIT_OFFSET_BPS: '10' }, state: (st) => st.tickers.set('spot:ETHUSDT', { category: 'spot', symbol: 'ETHUSDT', bid: '2990', ask: '2991', last: '3000', markPrice: null, ts: NOW - 1000, bookTs: NOW - 50_000 }), expect: { intents: [{ order_type: 'Limit', price: '2987.01' }] } },
  { name: 'limit buy: a bid / ask older than RISK_TICKER_MAX_AGE_MS behind a fresh tick is not used; last price is', cfg: { RISK_ORDER_TYPE: 'limit', RISK_LIMIT_OFFSET_BPS: '10' }, state: (st) => st.tickers.set('spot:ETHUSDT', { category: 'spot', symbol: 'ETHUSDT', bid: '2990', ask: '2991', last: '3000', markPrice: null, ts: NOW - 1000, bookTs: NOW - 120_000 }), expect: { intents: [{ order_type: 'Limit', price: '2997' }] } },
  { name: 'per-asset order type: limit for ETH only', cfg: { RISK_ORDER_TYPE: '{"ETHUSDT":"limit"}' }, expect: { intents: [{ order_type: 'Limit' }] } },
  { name: 'linear market buy: base qty at the ask floored to qtyStep 0.01', cfg: { RISK_CATEGORY: 'linear' }, expect: { intents: [{ category: 'linear', order_type: 'Market', qty: '0.16', market_unit: null, reduce_only: false }] } },
  { name: 'SOL linear: step 0.1', cfg: { RISK_CATEGORY: 'linear' }, state: (st) => st.tickers.set('linear:SOLUSDT', { category: 'linear', symbol: 'SOLUSDT', bid: '149.99', ask: '150.01', last: '150', markPrice: null, ts: NOW }), sig: { asset: 'SOLUSDT', amount: 100, market_data_snapshot: { price: 150, spread: 0.02, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { intents: [{ qty: '0.6' }] } },
  { name: 'no fresh ticker: the snapshot price sizes the order', state: (st) => { st.tickers.get('spot:ETHUSDT')!.ts = NOW - 120_000; st.tickers.get('linear:ETHUSDT')!.ts = NOW - 120_000; }, sig: { signal_type: 'sell', market_data_snapshot: { price: 2500, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { intents: [{ qty: '0.2' }] } },
];
for (const c of sizing) test(`sizing: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// Minimums, maximums, prices, instruments

const filters: Case[] = [
  { name: 'spot buy below minOrderAmt (5 USDT)', sig: { amount: 4.99 }, expect: { reject: RISK_REASONS.belowMinNotional } },
  { name: 'spot buy exactly minOrderAmt passes', sig: { amount: 5 }, expect: { intents: [{ qty: '5' }] } },
  { name: 'linear qty rounds down to zero: below min qty', cfg: { RISK_CATEGORY: 'linear' }, sig: { amount: 20 }, expect: { reject: RISK_REASONS.belowMinQty } },
  { name: 'linear below minNotionalValue after rounding', cfg: { RISK_CATEGORY: 'linear' }, state: (st) => (st.instruments.get('linear:ETHUSDT')!.minNotionalValue = '100'), sig: { amount: 90 }, expect: { reject: RISK_REASONS.belowMinNotional, detail: /60\.01/ } },
  { name: 'spot sell below min qty', state: (st) => (st.instruments.get('spot:ETHUSDT')!.minOrderQty = '0.5'), sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.belowMinQty } },
  { name: 'BTC spot market buy above maxMarketOrderQty shrinks to it (quote-sized)', cfg: { RISK_MAX_ORDER_NOTIONAL: '1000000', RISK_MAX_POSITION_NOTIONAL: '1000000', RISK_MAX_TOTAL_EXPOSURE: '1000000' }, state: (st) => (st.balances.get('USDT')!.available = '1000000'), sig: { asset: 'BTCUSDT', amount: 400000, market_data_snapshot: { price: 60000, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { intents: [{ qty: '336002.8', market_unit: 'quoteCoin' }], reason: 'shrunk_to_limit' } },
  { name: 'above max qty rejected under RISK_LIMIT_POLICY=reject', cfg: { RISK_LIMIT_POLICY: 'reject', RISK_MAX_ORDER_NOTIONAL: '1000000', RISK_MAX_POSITION_NOTIONAL: '1000000', RISK_MAX_TOTAL_EXPOSURE: '1000000' }, state: (st) => (st.balances.get('USDT')!.available = '1000000'), sig: { asset: 'BTCUSDT', amount: 400000, market_data_snapshot: { price: 60000, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { reject: RISK_REASONS.aboveMaxQty } },
  { name: 'price divergence beyond the band', sig: { market_data_snapshot: { price: 3100, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { reject: RISK_REASONS.priceDivergence } },
  { name: 'divergence inside a per-asset band', cfg: { RISK_PRICE_BAND_BPS: '{"*": 100, "ETHUSDT": 500}' }, sig: { market_data_snapshot: { price: 3100, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { intents: [{ action: 'create' }] } },
  { name: 'a fresh ticker of the other category is used when the own one is stale', state: (st) => (st.tickers.get('spot:ETHUSDT')!.ts = NOW - 120_000), sig: { market_data_snapshot: { price: 3100, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { reject: RISK_REASONS.priceDivergence } },
  { name: 'stale tickers are not compared (snapshot used)', state: (st) => { st.tickers.get('spot:ETHUSDT')!.ts = NOW - 120_000; st.tickers.get('linear:ETHUSDT')!.ts = NOW - 120_000; }, sig: { market_data_snapshot: { price: 3100, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null } }, expect: { intents: [{ action: 'create' }] } },
  { name: 'no ticker and no snapshot price', state: (st) => { st.tickers.delete('spot:ETHUSDT'); st.tickers.delete('linear:ETHUSDT'); }, sig: { market_data_snapshot: { price: 0, spread: 0, volume_24h: 0, volatility: 0, orderbook_depth: null, technical_indicators: null } }, expect: { reject: RISK_REASONS.noPrice } },
  { name: 'instrument missing for the category', sig: { asset: 'DOGEUSDT' }, expect: { reject: RISK_REASONS.instrumentUnavailable } },
  { name: 'instrument disabled', state: (st) => (st.instruments.get('spot:ETHUSDT')!.tradable = false), expect: { reject: RISK_REASONS.instrumentUnavailable } },
  { name: 'confidence below the minimum', sig: { confidence: 0.29 }, expect: { reject: RISK_REASONS.lowConfidence } },
  { name: 'confidence exactly the minimum passes', sig: { confidence: 0.3 }, expect: { intents: [{ action: 'create' }] } },
  { name: 'per-asset minimum confidence', cfg: { RISK_MIN_CONFIDENCE: '{"*":0.3,"ETHUSDT":0.95}' }, expect: { reject: RISK_REASONS.lowConfidence } },
];
for (const c of filters) test(`filters: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// Balance

const balance: Case[] = [
  { name: 'spot buy without enough quote (fee headroom counted)', state: (st) => (st.balances.get('USDT')!.available = '500'), expect: { reject: RISK_REASONS.insufficientBalance, detail: /500\.5/ } },
  { name: 'spot buy with exactly amount + fee passes', state: (st) => (st.balances.get('USDT')!.available = '500.5'), expect: { intents: [{ qty: '500' }] } },
  { name: 'spot buy shrunk to the free quote coin', cfg: { RISK_BALANCE_POLICY: 'shrink' }, state: (st) => (st.balances.get('USDT')!.available = '300'), expect: { intents: [{ qty: '299.7002997' }], reason: 'shrunk_to_balance' } },
  { name: 'shrunk below the minimum: rejected insufficient_balance', cfg: { RISK_BALANCE_POLICY: 'shrink' }, state: (st) => (st.balances.get('USDT')!.available = '4'), expect: { reject: RISK_REASONS.insufficientBalance } },
  { name: 'not-yet-confirmed orders reserve their funds', cfg: { RISK_MAX_POSITION_NOTIONAL: '50000' }, state: (st) => st.openOrders.push(order({ side: 'Buy', orderType: 'Market', marketUnit: 'quoteCoin', qty: '9800', price: null, status: 'Intent', strategyId: 'other' })), expect: { reject: RISK_REASONS.insufficientBalance } },
  { name: 'exchange-confirmed orders are already out of available', cfg: { RISK_MAX_POSITION_NOTIONAL: '50000' }, state: (st) => st.openOrders.push(order({ side: 'Buy', qty: '3', price: '2900', status: 'New', strategyId: 'other' })), expect: { intents: [{ action: 'create' }] } },
  { name: 'spot sell without holdings', state: (st) => (st.balances.get('ETH')!.available = '0'), sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.insufficientBalance } },
  { name: 'spot sell shrunk to holdings', cfg: { RISK_BALANCE_POLICY: 'shrink' }, state: (st) => (st.balances.get('ETH')!.available = '0.1'), sig: { signal_type: 'sell' }, expect: { intents: [{ qty: '0.1' }], reason: 'shrunk_to_balance' } },
  { name: 'spot sell rejected when holdings are short (reject policy)', state: (st) => (st.balances.get('ETH')!.available = '0.1'), sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.insufficientBalance } },
  { name: 'linear margin: notional / leverage', cfg: { RISK_CATEGORY: 'linear', RISK_LEVERAGE: '2' }, state: (st) => (st.balances.get('USDT')!.available = '250.5'), expect: { intents: [{ qty: '0.16' }] } },
  { name: 'linear margin short', cfg: { RISK_CATEGORY: 'linear', RISK_LEVERAGE: '2' }, state: (st) => (st.balances.get('USDT')!.available = '200'), expect: { reject: RISK_REASONS.insufficientBalance } },
  { name: 'linear margin shrink', cfg: { RISK_CATEGORY: 'linear', RISK_LEVERAGE: '2', RISK_BALANCE_POLICY: 'shrink' }, state: (st) => (st.balances.get('USDT')!.available = '200'), expect: { intents: [{ qty: '0.13' }], reason: 'shrunk_to_balance' } },
  { name: 'linear sell opens a short with margin', cfg: { RISK_CATEGORY: 'linear' }, sig: { signal_type: 'sell' }, expect: { intents: [{ side: 'Sell', qty: '0.16', reduce_only: false }] } },
];
for (const c of balance) test(`balance: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// Open orders: cancel opposite, amend same-side resting limit

test('open orders: the opposite order of the same asset and strategy is cancelled before the create', () => {
  const st = baseState();
  const opp = order({ side: 'Sell', orderLinkId: 'om-opposite', orderId: 'ex-1' });
  const otherStrategy = order({ side: 'Sell', strategyId: 'strat-2' });
  const otherAsset = order({ side: 'Sell', symbol: 'SOLUSDT' });
  st.openOrders.push(opp, otherStrategy, otherAsset);
  const sig = signal();
  const d = decide(sig, st, cfgWith(), NOW);
  assert.equal(d.kind, 'intents');
  if (d.kind !== 'intents') return;
  assert.deepEqual(d.intents.map((i) => [i.action, i.sequence, i.order_link_id]), [['cancel', 0, 'om-opposite'], ['create', 1, orderLinkId('om', sig.signal_id)]]);
  const c = d.intents[0]!;
  assert.equal(c.target_order_id, 'ex-1');
  assert.equal(c.side, 'Sell');
  assert.equal(c.qty, null);
  assert.equal(c.reason, 'opposite_order_cancel');
  assert.equal(d.outcome, 'create');
});

test('open orders: a same-side resting limit order is amended, not duplicated (limit policy)', () => {
  const st = baseState();
  st.openOrders.push(order({ side: 'Buy', orderLinkId: 'om-resting', orderId: 'ex-2', qty: '0.2', price: '2950', cumExecQty: '0.05', leavesQty: '0.15', status: 'PartiallyFilled' }));
  const d = decide(signal(), st, cfgWith({ RISK_ORDER_TYPE: 'limit' }), NOW);
  assert.equal(d.kind, 'intents');
  if (d.kind !== 'intents') return;
  assert.equal(d.intents.length, 1);
  const a = d.intents[0]!;
  assert.equal(a.action, 'amend');
  assert.equal(a.order_link_id, 'om-resting');
  assert.equal(a.target_order_id, 'ex-2');
  assert.equal(a.price, '2999.5');
  // new qty for 500 USDT at 2999.5 is 0.16669; Bybit's amend qty is the total incl. the filled 0.05
  assert.equal(a.qty, '0.21669');
  assert.equal(a.reason, 'same_side_amend');
  assert.equal(d.outcome, 'amend');
});

test('open orders: the amended order frees its own funds (no false insufficient balance)', () => {
  const st = baseState();
  // Confirmed at the exchange: its 590 USDT are locked there, not in `available`.
  st.balances.get('USDT')!.available = '100';
  st.openOrders.push(order({ side: 'Buy', orderLinkId: 'om-resting', qty: '0.2', price: '2950', status: 'New' }));
  const d = decide(signal(), st, cfgWith({ RISK_ORDER_TYPE: 'limit' }), NOW);
  assert.equal(d.kind, 'intents', d.kind === 'reject' ? d.detail : '');
  // Not yet placed: its funds are still in `available` and reserved; the replacement may reuse them.
  const st2 = baseState();
  st2.balances.get('USDT')!.available = '600';
  st2.openOrders.push(order({ side: 'Buy', orderLinkId: 'om-resting', qty: '0.2', price: '2950', status: 'Intent' }));
  const d2 = decide(signal(), st2, cfgWith({ RISK_ORDER_TYPE: 'limit' }), NOW);
  assert.equal(d2.kind, 'intents', d2.kind === 'reject' ? d2.detail : '');
  // ...but not money that is not there.
  st2.balances.get('USDT')!.available = '100';
  const d3 = decide(signal(), st2, cfgWith({ RISK_ORDER_TYPE: 'limit' }), NOW);
  assert.equal(d3.kind === 'reject' && d3.code, RISK_REASONS.insufficientBalance);
});

test('open orders: cancel plus amend when both sides rest', () => {
  const st = baseState();
  st.openOrders.push(order({ side: 'Sell', orderLinkId: 'om-sell' }), order({ side: 'Buy', orderLinkId: 'om-buy', price: '2900' }));
  const d = decide(signal(), st, cfgWith({ RISK_ORDER_TYPE: 'limit' }), NOW);
  assert.equal(d.kind, 'intents');
  if (d.kind === 'intents') assert.deepEqual(d.intents.map((i) => [i.action, i.order_link_id]), [['cancel', 'om-sell'], ['amend', 'om-buy']]);
});

const openOrderCases: Case[] = [
  { name: 'market policy creates even with a same-side resting limit', state: (st) => st.openOrders.push(order({ side: 'Buy' })), expect: { intents: [{ action: 'create' }] } },
  { name: 'an order with a pending cancel is not cancelled again', state: (st) => st.openOrders.push(order({ pending: { action: 'cancel' } })), expect: { intents: [{ action: 'create' }] } },
  { name: 'PendingCancel status is not cancelled again', state: (st) => st.openOrders.push(order({ status: 'PendingCancel' })), expect: { intents: [{ action: 'create' }] } },
  { name: 'external orders (no orderLinkId) are not touched', state: (st) => st.openOrders.push(order({ orderLinkId: null })), expect: { intents: [{ action: 'create' }] } },
  { name: 'max open orders (total)', cfg: { RISK_MAX_OPEN_ORDERS: '2' }, state: (st) => st.openOrders.push(order({ side: 'Buy', symbol: 'SOLUSDT' }), order({ side: 'Buy', symbol: 'BTCUSDT', price: '50000', qty: '0.001' })), expect: { reject: RISK_REASONS.maxOpenOrders } },
  { name: 'max open orders per asset', cfg: { RISK_MAX_OPEN_ORDERS_PER_ASSET: '1' }, state: (st) => st.openOrders.push(order({ side: 'Buy', price: '2000', strategyId: 'strat-2' })), expect: { reject: RISK_REASONS.maxOpenOrders } },
  { name: 'the cancelled opposite order frees its slot', cfg: { RISK_MAX_OPEN_ORDERS_PER_ASSET: '1' }, state: (st) => st.openOrders.push(order({ side: 'Sell', orderLinkId: 'om-x' })), expect: { intents: [{ action: 'cancel' }, { action: 'create' }] } },
  { name: 'an amend needs no new slot', cfg: { RISK_MAX_OPEN_ORDERS: '1', RISK_ORDER_TYPE: 'limit' }, state: (st) => st.openOrders.push(order({ side: 'Buy', orderLinkId: 'om-x' })), expect: { intents: [{ action: 'amend' }] } },
];
for (const c of openOrderCases) test(`open orders: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// Risk caps

const caps: Case[] = [
  { name: 'max order notional shrinks the order', sig: { amount: 2500 }, expect: { intents: [{ qty: '1000' }], reason: 'shrunk_to_limit' } },
  { name: 'max order notional rejects under the reject policy', cfg: { RISK_LIMIT_POLICY: 'reject' }, sig: { amount: 2500 }, expect: { reject: RISK_REASONS.maxOrderNotional } },
  { name: 'per-asset max order notional', cfg: { RISK_MAX_ORDER_NOTIONAL: '{"*":1000,"ETHUSDT":300}' }, expect: { intents: [{ qty: '300' }] } },
  { name: 'warm-up cap is lower', sig: { is_warmup: true }, expect: { intents: [{ qty: '50' }], reason: 'shrunk_to_limit' } },
  { name: 'warm-up cap rejects under the reject policy', cfg: { RISK_LIMIT_POLICY: 'reject' }, sig: { is_warmup: true }, expect: { reject: RISK_REASONS.warmupCap } },
  { name: 'warm-up cap does not apply to model signals', sig: { is_warmup: false, amount: 60 }, expect: { intents: [{ qty: '60' }] } },
  { name: 'asset exposure: holdings (1 ETH ~ 3000) + order within headroom 200', cfg: { RISK_MAX_POSITION_NOTIONAL: '3200' }, expect: { intents: [{ qty: '200' }], reason: 'shrunk_to_limit' } },
  { name: 'asset exposure: open buy orders count', cfg: { RISK_MAX_POSITION_NOTIONAL: '3600' }, state: (st) => st.openOrders.push(order({ side: 'Buy', qty: '0.1', price: '3000', strategyId: 'strat-2' })), expect: { intents: [{ qty: '300' }] } },
  { name: 'asset exposure: no headroom is a rejection', cfg: { RISK_MAX_POSITION_NOTIONAL: '2900' }, expect: { reject: RISK_REASONS.maxPositionExposure } },
  { name: 'asset exposure: shrunk below the minimum is a rejection with the cap code', cfg: { RISK_MAX_POSITION_NOTIONAL: '3003' }, expect: { reject: RISK_REASONS.maxPositionExposure, detail: /minimum/ } },
  { name: 'asset exposure rejects under the reject policy', cfg: { RISK_MAX_POSITION_NOTIONAL: '3200', RISK_LIMIT_POLICY: 'reject' }, expect: { reject: RISK_REASONS.maxPositionExposure } },
  { name: 'spot sells are not limited by exposure', cfg: { RISK_MAX_POSITION_NOTIONAL: '100' }, sig: { signal_type: 'sell' }, expect: { intents: [{ side: 'Sell' }] } },
  { name: 'total exposure across assets (linear BTC position counts)', cfg: { RISK_MAX_TOTAL_EXPOSURE: '9100' }, state: (st) => st.positions.set('linear:BTCUSDT', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', size: '0.1', markPrice: '60000' }), expect: { intents: [{ qty: '100' }] } },
  { name: 'total exposure full', cfg: { RISK_MAX_TOTAL_EXPOSURE: '9000' }, state: (st) => st.positions.set('linear:BTCUSDT', { category: 'linear', symbol: 'BTCUSDT', side: 'Sell', size: '0.1', markPrice: '60000' }), expect: { reject: RISK_REASONS.maxTotalExposure } },
  { name: 'linear short exposure limits further sells', cfg: { RISK_CATEGORY: 'linear', RISK_MAX_POSITION_NOTIONAL: '3200' }, state: (st) => st.positions.set('linear:ETHUSDT', { category: 'linear', symbol: 'ETHUSDT', side: 'Sell', size: '1', markPrice: '3000' }), sig: { signal_type: 'sell' }, expect: { intents: [{ qty: '0.06' }] } },
  { name: 'linear order against the position reduces: no exposure check, reduce_only', cfg: { RISK_CATEGORY: 'linear', RISK_MAX_POSITION_NOTIONAL: '100' }, state: (st) => st.positions.set('linear:ETHUSDT', { category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size: '1', markPrice: '3000' }), sig: { signal_type: 'sell' }, expect: { intents: [{ qty: '0.16', reduce_only: true }] } },
];
for (const c of caps) test(`caps: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// Trading states in decisions

const states: Case[] = [
  { name: 'HALTED refuses a buy', state: (st) => (st.trading = { state: 'HALTED', killSwitch: false, reason: 'daily_loss_halt' }), expect: { reject: RISK_REASONS.halted } },
  { name: 'HALTED refuses even a reducing sell', state: (st) => (st.trading = { state: 'HALTED', killSwitch: false, reason: 'manual' }), sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.halted } },
  { name: 'kill switch', state: (st) => (st.trading = { state: 'HALTED', killSwitch: true, reason: 'kill_switch' }), expect: { reject: RISK_REASONS.killSwitch } },
  { name: 'REDUCING refuses a spot buy', state: (st) => (st.trading = { state: 'REDUCING', killSwitch: false, reason: 'daily_loss_reduce' }), expect: { reject: RISK_REASONS.reducingOnly } },
  { name: 'REDUCING allows a spot sell of holdings', state: (st) => (st.trading = { state: 'REDUCING', killSwitch: false, reason: null }), sig: { signal_type: 'sell' }, expect: { intents: [{ side: 'Sell', qty: '0.16669' }] } },
  { name: 'REDUCING refuses a linear order that opens a position', cfg: { RISK_CATEGORY: 'linear' }, state: (st) => (st.trading = { state: 'REDUCING', killSwitch: false, reason: null }), sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.reducingOnly } },
  { name: 'REDUCING refuses a linear order adding to the position', cfg: { RISK_CATEGORY: 'linear' }, state: (st) => { st.trading = { state: 'REDUCING', killSwitch: false, reason: null }; st.positions.set('linear:ETHUSDT', { category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size: '1', markPrice: '3000' }); }, expect: { reject: RISK_REASONS.reducingOnly } },
  { name: 'REDUCING: a linear sell against a long is reduce-only and capped at the position', cfg: { RISK_CATEGORY: 'linear' }, state: (st) => { st.trading = { state: 'REDUCING', killSwitch: false, reason: null }; st.positions.set('linear:ETHUSDT', { category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size: '0.1', markPrice: '3000' }); }, sig: { signal_type: 'sell' }, expect: { intents: [{ side: 'Sell', qty: '0.1', reduce_only: true }] } },
  { name: 'REDUCING: cap to the position rejected under the reject policy', cfg: { RISK_CATEGORY: 'linear', RISK_LIMIT_POLICY: 'reject' }, state: (st) => { st.trading = { state: 'REDUCING', killSwitch: false, reason: null }; st.positions.set('linear:ETHUSDT', { category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size: '0.1', markPrice: '3000' }); }, sig: { signal_type: 'sell' }, expect: { reject: RISK_REASONS.reducingOnly } },
];
for (const c of states) test(`trading state: ${c.name}`, () => check(c));

// ---------------------------------------------------------------------------------------------
// The trading state machine

const row = (over: Partial<TradingStateRow> = {}): TradingStateRow => ({ state: 'ACTIVE', killSwitch: false, reason: null, stateDay: utcDay(NOW), dayPnl: '0', ...over });
const limits = { reduceAt: 200, haltAt: 500 };

test('trading state: evaluation table', () => {
  const cases: Array<[string, TradingStateRow, string, string | null]> = [
    ['no loss stays ACTIVE', row({ dayPnl: '50' }), 'ACTIVE', null],
    ['loss below the reduce limit', row({ dayPnl: '-199.99' }), 'ACTIVE', null],
    ['loss at the reduce limit → REDUCING', row({ dayPnl: '-200' }), 'REDUCING', 'daily_loss_reduce'],
    ['loss at the halt limit → HALTED', row({ dayPnl: '-500' }), 'HALTED', 'daily_loss_halt'],
    ['REDUCING → HALTED', row({ state: 'REDUCING', reason: 'daily_loss_reduce: x', dayPnl: '-650' }), 'HALTED', 'daily_loss_halt'],
    ['REDUCING does not relax the same day when PnL recovers', row({ state: 'REDUCING', reason: 'daily_loss_reduce: x', dayPnl: '-10' }), 'REDUCING', null],
    ['HALTED by loss does not fall back to REDUCING', row({ state: 'HALTED', reason: 'daily_loss_halt: x', dayPnl: '-300' }), 'HALTED', null],
    ['a loss-caused state ends with the day it was entered on', row({ state: 'HALTED', reason: 'daily_loss_halt: x', stateDay: '2000-01-01' }), 'ACTIVE', 'new_trading_day'],
    ['… unless today\'s loss is past a limit too', row({ state: 'HALTED', reason: 'daily_loss_halt: x', stateDay: '2000-01-01', dayPnl: '-900' }), 'HALTED', null],
    ['an operator HALT does not end with the day', row({ state: 'HALTED', reason: 'manual_halt', stateDay: '2000-01-01' }), 'HALTED', null],
    ['kill switch forces HALTED', row({ killSwitch: true }), 'HALTED', 'kill_switch'],
    ['kill switch while HALTED: no change', row({ state: 'HALTED', killSwitch: true, reason: 'kill_switch' }), 'HALTED', null],
  ];
  for (const [name, r, want, cause] of cases) {
    const e = evaluate(r, limits, NOW);
    assert.equal(e.state, want, name);
    assert.equal(e.change?.cause ?? null, cause, name);
  }
  assert.equal(evaluate(row({ dayPnl: '-10000' }), { reduceAt: 0, haltAt: 0 }, NOW).state, 'ACTIVE', 'limits of 0 are disabled');
});

test('trading state: transition table is exhaustive and refuses anything else', () => {
  assert.equal(transition('ACTIVE', 'daily_loss_reduce'), 'REDUCING');
  assert.throws(() => transition('HALTED', 'daily_loss_reduce'), InvalidStateTransition);
  assert.throws(() => transition('ACTIVE', 'new_trading_day'), InvalidStateTransition);
  assert.throws(() => transition('ACTIVE', 'manual_resume'), InvalidStateTransition);
  for (const from of ['ACTIVE', 'REDUCING', 'HALTED'] as const) assert.equal(TRANSITIONS[from].kill_switch, 'HALTED');
  assert.deepEqual([permits('ACTIVE', 'increase'), permits('REDUCING', 'increase'), permits('REDUCING', 'reduce'), permits('HALTED', 'reduce'), permits('HALTED', 'cancel')], [true, false, true, false, true]);
  assert.deepEqual(setKillSwitch({ state: 'REDUCING', killSwitch: false }, true), { state: 'HALTED', killSwitch: true, change: { from: 'REDUCING', to: 'HALTED', cause: 'kill_switch' } });
  assert.equal(setKillSwitch({ state: 'HALTED', killSwitch: true }, false).state, 'HALTED', 'switching off does not resume');
  assert.throws(() => resume({ state: 'HALTED', killSwitch: true }), InvalidStateTransition);
  assert.equal(resume({ state: 'HALTED', killSwitch: false }), 'ACTIVE');
});

// ---------------------------------------------------------------------------------------------
// Ids

test('ids: deterministic, Bybit-safe orderLinkId, distinct per signal and action', () => {
  const a = randomUUID();
  const b = randomUUID();
  assert.equal(orderLinkId('om', a), orderLinkId('om', a));
  assert.notEqual(orderLinkId('om', a), orderLinkId('om', b));
  for (const p of ['om', 'ABCDEFGH']) {
    const id = orderLinkId(p, a);
    assert.ok(id.length <= 36, id);
    assert.match(id, /^[A-Za-z0-9_-]+$/);
    assert.ok(id.startsWith(`${p}-`));
  }
  assert.equal(intentId(a, 1, 'create'), intentId(a, 1, 'create'));
  assert.notEqual(intentId(a, 0, 'cancel'), intentId(a, 1, 'create'));
  assert.match(intentId(a, 0, 'create'), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

// ---------------------------------------------------------------------------------------------
// The stage's pure process: chunk effects, rejections as events, replays

const PREFIX = 'unit.';
let offset = 0;
const rec = (value: Signal): StageRecord<Signal> => ({ value, key: value.asset, headers: {}, topic: `${PREFIX}signals.valid`, partition: 0, offset: String(offset++), timestamp: NOW, traceId: value.trace_id });

test('process: a later signal of the chunk sees the earlier one (max exposure, two buys)', () => {
  const config = cfgWith({ RISK_MAX_POSITION_NOTIONAL: '3700' }); // 1 ETH held (~3000): 700 headroom
  const stage = createSizeRiskStage({ config });
  const state = stateFrom(baseState());
  const clock = new ManualClock(NOW);
  const r1 = stage.process(rec(signal({ amount: 500 })), { state, clock });
  const r2 = stage.process(rec(signal({ amount: 500 })), { state, clock });
  const r3 = stage.process(rec(signal({ amount: 500 })), { state, clock });
  assert.equal(r1.kind, 'ok');
  const i1 = r1.outputs![0]!.value as OrderIntent;
  const i2 = r2.outputs![0]!.value as OrderIntent;
  assert.equal(i1.qty, '500');
  assert.equal(i2.qty, '200', 'the second buy only gets the remaining headroom');
  assert.equal(r1.outputs![0]!.topic, `${PREFIX}orders.intents`);
  assert.equal(r1.outputs![0]!.key, 'ETHUSDT');
  const ev = r3.outputs![0]!;
  assert.equal(r3.kind, 'ok', 'a refusal is a business outcome, not a dead letter');
  assert.equal(ev.topic, `${PREFIX}orders.events`);
  assert.equal((ev.value as OrderEvent).event_type, 'signal_rejected');
  assert.equal((ev.value as OrderEvent).reason_code, RISK_REASONS.maxPositionExposure);
  assert.equal(ev.headers?.reason_code, RISK_REASONS.maxPositionExposure);
  assert.equal(state.decided.size, 3);
  assert.equal(state.risk.openOrders.length, 2);
});

test('process: funds of earlier decisions in the chunk are reserved (two buys, one balance)', () => {
  const stage = createSizeRiskStage({ config: cfgWith() });
  const st = baseState();
  st.balances.get('USDT')!.available = '800';
  const state = stateFrom(st);
  const clock = new ManualClock(NOW);
  const r1 = stage.process(rec(signal({ amount: 500 })), { state, clock });
  const r2 = stage.process(rec(signal({ amount: 500 })), { state, clock });
  assert.equal((r1.outputs![0]!.value as OrderIntent).action, 'create');
  assert.equal((r2.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.insufficientBalance);
});

test('process: a flip cancels the opposite order decided earlier in the same chunk', () => {
  const stage = createSizeRiskStage({ config: cfgWith({ RISK_ORDER_TYPE: 'limit' }) });
  const state = stateFrom(baseState());
  const clock = new ManualClock(NOW);
  const sell = signal({ signal_type: 'sell' });
  stage.process(rec(sell), { state, clock });
  const r = stage.process(rec(signal()), { state, clock });
  const intents = r.outputs!.map((o) => o.value as OrderIntent);
  assert.deepEqual(intents.map((i) => [i.action, i.order_link_id]), [['cancel', orderLinkId('om', sell.signal_id)], ['create', intents[1]!.order_link_id]]);
});

test('process: a replayed signal emits exactly the recorded outputs; a repeat in the chunk emits nothing', () => {
  const stage = createSizeRiskStage({ config: cfgWith() });
  const first = stateFrom(baseState());
  const clock = new ManualClock(NOW);
  const sig = signal();
  const r1 = stage.process(rec(sig), { state: first, clock });
  const again = stage.process(rec(sig), { state: first, clock });
  assert.deepEqual(again.outputs, []);
  // The next load finds the decision in PostgreSQL: the replay must not decide again.
  const replay = stateFrom(baseState());
  replay.replays.set(sig.signal_id, first.decided.get(sig.signal_id)!.outputs as StoredOutput[]);
  clock.advance(5000);
  const r2 = stage.process(rec(sig), { state: replay, clock });
  assert.deepEqual(r2.outputs, r1.outputs);
  assert.equal(replay.decided.size, 0);
});

test('every output is a valid Avro record of its topic (create, cancel, amend, rejection)', async () => {
  const { invalidPaths } = await import('../../schemas/codecs.ts'); // dynamic: codecs load the .avsc files
  const stage = createSizeRiskStage({ config: cfgWith({ RISK_ORDER_TYPE: '{"ETHUSDT":"limit"}', RISK_CATEGORY: '{"SOLUSDT":"linear"}' }) });
  const st = baseState();
  st.openOrders.push(order({ side: 'Sell', orderLinkId: 'om-s' }), order({ side: 'Buy', orderLinkId: 'om-b', price: '2900' }));
  st.tickers.set('linear:SOLUSDT', { category: 'linear', symbol: 'SOLUSDT', bid: '149.99', ask: '150.01', last: '150', markPrice: null, ts: NOW });
  const state = stateFrom(st);
  const clock = new ManualClock(NOW);
  const solSnap = { price: 150, spread: 0.02, volume_24h: 1, volatility: 0.01, orderbook_depth: { bid_depth: 1, ask_depth: 1 }, technical_indicators: { rsi: 40 } };
  const outs = [
    stage.process(rec(signal()), { state, clock }),
    stage.process(rec(signal({ asset: 'BTCUSDT', market_data_snapshot: { ...solSnap, price: 60000 } })), { state, clock }),
    stage.process(rec(signal({ asset: 'SOLUSDT', signal_type: 'sell', market_data_snapshot: solSnap, model_version: null, trace_id: null })), { state, clock }),
    stage.process(rec(signal({ confidence: 0.01 })), { state, clock }),
  ].flatMap((r) => r.outputs ?? []);
  assert.deepEqual(outs.map((o) => (o.topic.endsWith('orders.intents') ? (o.value as OrderIntent).action : (o.value as OrderEvent).event_type)), ['cancel', 'amend', 'create', 'create', 'signal_rejected']);
  for (const o of outs) {
    const kind = o.topic.endsWith('orders.intents') ? 'OrderIntent' : 'OrderEvent';
    assert.deepEqual(invalidPaths(kind, o.value), [], `${kind} ${JSON.stringify(o.value).slice(0, 200)}`);
  }
});

test('a chunk\'s decisions reuse per-symbol sums of the open orders: every decision, exposure and reservation equals the one made from a fresh copy of the state', () => {
  // Deterministic pseudo-random run: open orders of every kind over three symbols (spot and
  // linear, local and confirmed, pending amends and cancels), then 150 signals decided one after
  // another on one state as a chunk does (applyDecision in between: creates added, amends and
  // cancels pending). The copy has new arrays and order objects, so nothing is reused for it.
  let seed = 17;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const cfg = cfgWith({ RISK_CATEGORY: JSON.stringify({ '*': 'spot', SOLUSDT: 'linear' }), RISK_ORDER_TYPE: JSON.stringify({ '*': 'market', ETHUSDT: 'limit' }), RISK_MAX_OPEN_ORDERS: '100000', RISK_MAX_OPEN_ORDERS_PER_ASSET: '100000', RISK_BALANCE_POLICY: 'shrink', RISK_MAX_POSITION_NOTIONAL: '20000' });
  const st = baseState();
  st.tickers.set(instKey('linear', 'SOLUSDT'), { category: 'linear', symbol: 'SOLUSDT', bid: '149.99', ask: '150.01', last: '150', markPrice: '150', ts: NOW - 1000 });
  st.positions.set(instKey('linear', 'SOLUSDT'), { category: 'linear', symbol: 'SOLUSDT', side: 'Buy', size: '3', markPrice: '150' });
  const px: Record<string, number> = { ETHUSDT: 3000, BTCUSDT: 60000, SOLUSDT: 150 };
  for (let i = 0; i < 60; i++) {
    const symbol = pick(['ETHUSDT', 'BTCUSDT', 'SOLUSDT']);
    const status = pick(['Intent', 'Submitted', 'Unknown', 'New', 'PartiallyFilled', 'PendingAmend']);
    const qty = (Math.floor(rnd() * 50) + 1) / 1000;
    const pending = status === 'PendingAmend' || rnd() < 0.15 ? (rnd() < 0.7 ? { action: 'amend' as const, qty: String(qty * 2), price: String(px[symbol]! * 0.99) } : { action: 'cancel' as const }) : null;
    st.openOrders.push(order({ symbol, category: symbol === 'SOLUSDT' ? 'linear' : 'spot', side: pick(['Buy', 'Sell'] as const), strategyId: pick(['strat-1', 'strat-2']), status, qty: String(qty), price: String(px[symbol]! * (0.98 + rnd() * 0.04)), cumExecQty: status === 'PartiallyFilled' ? String(qty / 2) : '0', pending }));
  }
  const fresh = (s: RiskState): RiskState => ({ ...s, openOrders: s.openOrders.map((o) => ({ ...o })) });
  const kinds = new Set<string>();
  for (let i = 0; i < 150; i++) {
    const asset = pick(['ETHUSDT', 'BTCUSDT', 'SOLUSDT']);
    const sig = signal({ asset, signal_type: pick(['buy', 'sell'] as const), amount: Math.floor(rnd() * 400) + 20, strategy_id: pick(['strat-1', 'strat-2']), market_data_snapshot: { price: px[asset]!, spread: 1, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null } });
    const prices = new Map([[asset, Dec.of(px[asset]!)]]);
    assert.deepEqual(exposure(st, prices), exposure(fresh(st), prices), `exposure before signal ${i}`);
    assert.deepEqual(reservations(st, cfg), reservations(fresh(st), cfg), `reservations before signal ${i}`);
    const d = decide(sig, st, cfg, NOW);
    assert.deepEqual(d, decide(sig, fresh(st), cfg, NOW), `decision ${i}`);
    kinds.add(d.kind === 'reject' ? `reject:${d.code}` : d.intents.map((x) => x.action).join('+'));
    applyDecision(st, d);
  }
  // The run went through what the sums must follow: new orders, amends (pending replaced) and cancels.
  for (const k of ['create', 'amend', 'cancel+create']) assert.ok([...kinds].some((x) => x.startsWith(k)), `a ${k} decision among ${[...kinds].join(', ')}`);
});

test('per-symbol sums of the open orders follow two orders added at once, and an order whose only reservation is taken out leaves no coin behind', () => {
  const cfg = cfgWith();
  const st = baseState();
  const fresh = (s: RiskState): RiskState => ({ ...s, openOrders: s.openOrders.map((o) => ({ ...o })) });
  const same = (what: string) => {
    assert.deepEqual(reservations(st, cfg), reservations(fresh(st), cfg), `reservations: ${what}`);
    assert.deepEqual(exposure(st), exposure(fresh(st)), `exposure: ${what}`);
  };
  // A confirmed buy with an amend that grows it: the growth is reserved (USDT).
  const grown = order({ side: 'Buy', qty: '0.1', price: '2900', status: 'New', pending: { action: 'amend', qty: '0.3', price: '2900' } });
  st.openOrders.push(grown);
  same('one amend pending');
  assert.ok(reservations(st, cfg).byCoin.get('USDT')?.isPos(), 'the growth is reserved');
  grown.pending = { action: 'cancel' };
  same('the amend replaced by a cancel');
  assert.equal(reservations(st, cfg).byCoin.has('USDT'), false, 'nothing reserved, no coin left at zero');
  st.openOrders.push(order({ side: 'Buy', qty: '0.2', price: '2950', status: 'Intent' }), order({ side: 'Buy', qty: '0.05', price: '2990', status: 'Submitted' }));
  same('two orders added between two reads');
  assert.equal(reservations(st, cfg).byCoin.get('USDT')?.toString(), Dec.of('0.2').mul('2950').add(Dec.of('0.05').mul('2990')).mul('1.001').toString(), 'both added orders reserved, with the fee headroom');
});
