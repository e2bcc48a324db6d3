// Property-based bad-input suite for the risk and sizing rules (pipelines/risk-rules.ts `decide`,
// pure; the stage under the runner is in tests/fuzz/stages-kafka.fuzz.test.ts). Signals that fit the
// Avro schema but are semantically bad — NaN, Infinity, zero, negative, tiny and huge amounts and
// confidences, unknown or disabled assets, odd sides, absurd snapshot prices — against a realistic
// state (the simulator's instruments, fresh tickers, balances). Properties: `decide` either refuses
// with one of the documented reason codes or throws (the runner then dead-letters the record as
// stage_exception); it never emits an order for an amount that is not a finite positive number or
// for a confidence below the minimum, never one above the notional cap, and every intent it emits
// fits the OrderIntent schema with a positive, finite quantity.
//
// FUZZ_RUNS scales the run counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { decide, instKey, RISK_REASONS, type RiskConfig, type RiskState } from '../../pipelines/risk-rules.ts';
import { Dec } from '../../runtime/decimal.ts';
import { parseConfig } from '../../pipelines/size-risk.ts';
import { invalidPaths } from '../../schemas/codecs.ts';
import { riskInstruments } from '../../stack/sim-instruments.ts';
import type { Signal } from '../../schemas/types.ts';
import { INJECTIONS, runs } from './arbitraries.ts';

const NOW = Date.parse('2026-01-10T12:00:00Z');
const CODES = new Set<string>(Object.values(RISK_REASONS));
const MAX_ORDER = 1000;
const MIN_CONF = 0.3;

function state(): RiskState {
  const tick = (category: 'spot' | 'linear', symbol: string, bid: string, ask: string) => [instKey(category, symbol), { category, symbol, bid, ask, last: bid, markPrice: null, ts: NOW - 1000 }] as const;
  return {
    instruments: riskInstruments(),
    tickers: new Map([tick('spot', 'ETHUSDT', '2999.5', '3000.5'), tick('linear', 'ETHUSDT', '2999.5', '3000.5'), tick('spot', 'BTCUSDT', '59999.5', '60000.5')]),
    balances: new Map([
      ['USDT', { coin: 'USDT', walletBalance: '100000', available: '100000', usdValue: '100000' }],
      ['ETH', { coin: 'ETH', walletBalance: '10', available: '10', usdValue: '30000' }],
    ]),
    positions: new Map(),
    openOrders: [],
    trading: { state: 'ACTIVE', killSwitch: false, reason: null },
  };
}

const CONFIGS: Array<[string, RiskConfig]> = [
  ['market shrink', parseConfig({ TOPIC_PREFIX: 'fz.', RISK_MAX_ORDER_NOTIONAL: String(MAX_ORDER), RISK_MIN_CONFIDENCE: String(MIN_CONF), RISK_LIMIT_POLICY: 'shrink', RISK_MAX_POSITION_NOTIONAL: '100000' })],
  ['limit reject', parseConfig({ TOPIC_PREFIX: 'fz.', RISK_MAX_ORDER_NOTIONAL: String(MAX_ORDER), RISK_MIN_CONFIDENCE: String(MIN_CONF), RISK_LIMIT_POLICY: 'reject', RISK_ORDER_TYPE: 'limit', RISK_MAX_POSITION_NOTIONAL: '100000' })],
  ['linear', parseConfig({ TOPIC_PREFIX: 'fz.', RISK_MAX_ORDER_NOTIONAL: String(MAX_ORDER), RISK_MIN_CONFIDENCE: String(MIN_CONF), RISK_CATEGORY: 'linear', RISK_MAX_POSITION_NOTIONAL: '100000' })],
];

const number = fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, -1, 5e-324, 1e-9, 1e300, Number.MAX_VALUE, Number.MAX_SAFE_INTEGER), fc.double(), fc.double({ min: 1, max: 5000, noNaN: true }));
const confidence = fc.oneof(fc.constantFrom(NaN, Infinity, -1, 0, 0.29, 0.3, 1, 2), fc.double());
const asset = fc.oneof(fc.constantFrom('ETHUSDT', 'BTCUSDT', 'NOPEUSDT', '', 'ethusdt', '__proto__', 'constructor'), fc.constantFrom(...INJECTIONS));

const signal = fc.record({ amount: number, confidence, asset, side: fc.constantFrom('buy', 'sell'), price: number, warm: fc.boolean(), ts: fc.integer({ min: -1e12, max: 1e13 }) }).map(
  (g): Signal => ({
    signal_id: randomUUID(), signal_type: g.side as Signal['signal_type'], asset: g.asset, amount: g.amount, confidence: g.confidence, timestamp: g.ts, strategy_id: 'fz', model_version: null,
    is_warmup: g.warm, market_data_snapshot: { price: g.price, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null }, metadata: null, trace_id: null, received_at: NOW, validated_at: NOW,
  }),
);

test('risk rules: a bad signal is refused with a known reason (or throws, and is dead-lettered); no order beyond the rules', () => {
  fc.assert(
    fc.property(fc.constantFrom(...CONFIGS), signal, ([, cfg], sig) => {
      let d;
      try {
        d = decide(sig, state(), cfg, NOW);
      } catch (err) {
        // The runner turns a throw into a dead letter (stage_exception); only data errors may throw.
        assert.ok(err instanceof RangeError, `only a RangeError from Dec may escape, got ${(err as Error).message}`);
        assert.ok(!(Number.isFinite(sig.amount)), `a finite amount never throws (amount ${sig.amount})`);
        return;
      }
      if (d.kind === 'reject') {
        assert.ok(CODES.has(d.code), `known reason ${d.code}`);
        assert.ok(d.detail.length > 0);
        return;
      }
      const creates = d.intents.filter((i) => i.action === 'create');
      if (creates.length === 0) return;
      assert.ok(Number.isFinite(sig.amount) && sig.amount > 0, `no order for amount ${sig.amount}`);
      assert.ok(sig.confidence >= MIN_CONF, `no order for confidence ${sig.confidence}`);
      assert.ok(['ETHUSDT', 'BTCUSDT'].includes(sig.asset), `no order for asset ${JSON.stringify(sig.asset)}`);
      for (const i of d.intents) assert.deepEqual(invalidPaths('OrderIntent', i), [], 'intents fit the schema');
      for (const i of creates) {
        const qty = Dec.of(i.qty!);
        assert.ok(qty.isPos(), `positive qty ${i.qty}`);
        // notional at the worst book price, with the tick rounding of a limit price allowed for
        const px = i.market_unit === 'quoteCoin' ? Dec.ONE : Dec.of(i.price ?? (i.symbol === 'BTCUSDT' ? '60000.5' : '3000.5'));
        assert.ok(qty.mul(px).toNumber() <= MAX_ORDER * 1.01, `order notional ${qty.mul(px)} within the cap ${MAX_ORDER}`);
      }
    }),
    { numRuns: runs(4000), seed: 601 },
  );
});
