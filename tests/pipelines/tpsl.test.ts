// The TP/SL rules (pipelines/tpsl.ts) and the booking of a TP/SL fill (pipelines/pnl.ts), pure:
// the RISK_TPSL setting with every problem listed, the prices rounded toward the entry, what a
// position needs (only the legs that differ; nothing for a shared or unconfigured position), and
// the split of the exchange's closing fill over the books that held the position.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTpsl, planProtection, targets, type ExchangePosition, type Holding } from '../../pipelines/tpsl.ts';
import { applyFill, emptyBook, splitPositionClose, type PnlBook } from '../../pipelines/pnl.ts';
import { parseConfig } from '../../connectors/protect.ts';
import { loadConfig } from '../../runtime/config.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

test('RISK_TPSL: strategies with tp and/or sl in percent; empty is off', () => {
  assert.deepEqual(parseTpsl('strategyA:tp=2,sl=1;strategyB:sl=0.5'), { spec: { strategyA: { tp: '2', sl: '1' }, strategyB: { tp: null, sl: '0.5' } }, problems: [] });
  assert.deepEqual(parseTpsl(' trend : tp = 1.50 ; '), { spec: { trend: { tp: '1.5', sl: null } }, problems: [] });
  assert.deepEqual(parseConfig({}).RISK_TPSL, {});
  assert.deepEqual(parseConfig({ RISK_TPSL: '' }).RISK_TPSL, {});
  assert.deepEqual(parseConfig({ RISK_TPSL: 'a:sl=1' }).RISK_TPSL, { a: { tp: null, sl: '1' } });
  // A unit parses its settings again from the service's parsed configuration, where it is a spec.
  for (const text of ['', 'a:sl=1', 'strategyA:tp=2,sl=1;strategyB:sl=0.5']) {
    const cfg = loadConfig({ RISK_TPSL: text }, UNIT_SCHEMAS);
    assert.deepEqual(parseConfig(cfg).RISK_TPSL, parseTpsl(text).spec, text);
  }
});

test('RISK_TPSL: a bad value fails the start with every problem named', () => {
  const cases: Array<[string, RegExp]> = [
    ['a', /"a": expected strategy:tp=P,sl=P/],
    ['a:tp=2;a:sl=1', /strategy "a" is given twice/],
    ['a:tp=2,tp=3', /a: tp is given twice/],
    ['a:tp=-1', /a: tp=-1 must be a positive number of percent/],
    ['a:sl=0', /a: sl=0 must be a positive number of percent/],
    ['a:sl=abc', /a: sl=abc must be a positive number/],
    ['a:sl=100', /a: sl=100 must be below 100/],
    ['a:tp=1001', /a: tp=1001 must be at most 1000/],
    ['a:trail=1', /a: "trail=1" is not tp=<percent> or sl=<percent>/],
    ['a:', /a: give tp=<percent>, sl=<percent> or both/],
    ['a b:tp=1', /strategy "a b" must be 1-100 characters/],
  ];
  for (const [value, msg] of cases) {
    const { problems } = parseTpsl(value);
    assert.equal(problems.length, 1, `${value}: ${problems.join('; ')}`);
    assert.match(problems[0]!, msg, value);
  }
  // All of them at once, through the service's config loader, as a start would see them.
  assert.throws(
    () => loadConfig({ RISK_TPSL: 'x:tp=0;y:sl=100;z' }, UNIT_SCHEMAS),
    (err: Error) => /RISK_TPSL/.test(err.message) && /x: tp=0/.test(err.message) && /y: sl=100/.test(err.message) && /"z": expected/.test(err.message),
  );
});

test('TP/SL prices: percent of the entry, rounded to the tick toward the entry', () => {
  // Long at 3000.30: TP 3060.306 rounds down, SL 2970.297 rounds up (a stop never wider than asked).
  assert.deepEqual(targets({ tp: '2', sl: '1' }, true, '3000.3', '0.01'), { takeProfit: '3060.3', stopLoss: '2970.3' });
  assert.deepEqual(targets({ tp: '2', sl: '1' }, true, '3000.31', '0.01'), { takeProfit: '3060.31', stopLoss: '2970.31' });
  // Short at 60,001.1 with tick 0.1: TP 58,801.078 rounds up, SL 60,601.111 rounds down.
  assert.deepEqual(targets({ tp: '2', sl: '1' }, false, '60001.1', '0.1'), { takeProfit: '58801.1', stopLoss: '60601.1' });
  assert.deepEqual(targets({ tp: null, sl: '0.5' }, false, '100', '0.5'), { takeProfit: null, stopLoss: '100.5' });
});

const pos = (over: Partial<ExchangePosition> = {}): ExchangePosition => ({ symbol: 'ETHUSDT', side: 'Buy', size: '1.00', positionIdx: 0, takeProfit: '0', stopLoss: '0', ...over });
const held = (strategy: string, qty: string, avgEntry = '3000.3'): Holding => ({ strategy, qty, avgEntry });
const SPEC = { trend: { tp: '2', sl: '1' }, meanrev: { tp: null, sl: '0.5' } };

test('what a position needs: only the legs that differ, only when one configured strategy holds it all', () => {
  assert.deepEqual(planProtection(SPEC, pos(), [held('trend', '1')], '0.01'), { kind: 'set', strategy: 'trend', takeProfit: '3060.3', stopLoss: '2970.3', entry: '3000.3', side: 'Buy' });
  assert.deepEqual(planProtection(SPEC, pos({ takeProfit: '3060.30', stopLoss: '2970.30' }), [held('trend', '1')], '0.01'), { kind: 'in_place', strategy: 'trend' });
  assert.deepEqual(planProtection(SPEC, pos({ takeProfit: '3060.30', stopLoss: '2900.00' }), [held('trend', '1')], '0.01'), { kind: 'set', strategy: 'trend', takeProfit: null, stopLoss: '2970.3', entry: '3000.3', side: 'Buy' });
  // A strategy with only a stop loss leaves a take profit someone else set alone.
  assert.deepEqual(planProtection(SPEC, pos({ side: 'Sell', takeProfit: '2000.00' }), [held('meanrev', '-1')], '0.01'), { kind: 'set', strategy: 'meanrev', takeProfit: null, stopLoss: '3015.3', entry: '3000.3', side: 'Sell' });
  // Nothing to do: flat, or nobody configured holds it.
  assert.deepEqual(planProtection(SPEC, pos({ size: '0', side: '' }), [held('trend', '1')], '0.01'), { kind: 'none' });
  assert.deepEqual(planProtection(SPEC, pos(), [held('other', '1')], '0.01'), { kind: 'none' });
  assert.deepEqual(planProtection({}, pos(), [held('trend', '1')], '0.01'), { kind: 'none' });
  // Left alone, with the reason.
  const skip = (p: ReturnType<typeof planProtection>) => (p.kind === 'skip' ? p.reason : p.kind);
  assert.equal(skip(planProtection(SPEC, pos(), [held('trend', '0.5'), held('external', '0.5')], '0.01')), 'shared_position');
  assert.equal(skip(planProtection(SPEC, pos(), [held('trend', '0.5'), held('meanrev', '0.5')], '0.01')), 'shared_position');
  assert.equal(skip(planProtection(SPEC, pos(), [held('trend', '0.9')], '0.01')), 'book_differs');
  assert.equal(skip(planProtection(SPEC, pos({ side: 'Sell' }), [held('trend', '1')], '0.01')), 'book_differs');
  assert.equal(skip(planProtection(SPEC, pos({ positionIdx: 1 }), [held('trend', '1')], '0.01')), 'hedge_mode');
  assert.equal(skip(planProtection(SPEC, pos(), [held('trend', '1')], null)), 'no_instrument');
});

const book = (strategy: string, qty: string, avgEntry: string): PnlBook => ({ ...emptyBook('linear', 'ETHUSDT', strategy), qty, avgEntry });

test('a TP/SL fill is booked to the books that held the position, in proportion; the rest is external', () => {
  // The whole position of one strategy: all of it, fee included.
  assert.deepEqual(splitPositionClose([book('trend', '1', '3000')], { side: 'Sell', qty: '1', fee: '1.65' }), [{ strategy: 'trend', qty: '1', fee: '1.65' }]);
  // Two long books, a short one that the Sell does not close.
  assert.deepEqual(splitPositionClose([book('a', '0.3', '3000'), book('b', '0.1', '3100'), book('c', '-0.2', '3050')], { side: 'Sell', qty: '0.2', fee: '0.4' }), [
    { strategy: 'a', qty: '0.15', fee: '0.3' },
    { strategy: 'b', qty: '0.05', fee: '0.1' },
  ]);
  // More than the books hold: the excess was not ours.
  assert.deepEqual(splitPositionClose([book('a', '-0.5', '3000')], { side: 'Buy', qty: '0.8', fee: '0.8' }), [
    { strategy: 'a', qty: '0.5', fee: '0.5' },
    { strategy: 'external', qty: '0.3', fee: '0.3' },
  ]);
  assert.deepEqual(splitPositionClose([], { side: 'Sell', qty: '1', fee: '1' }), [{ strategy: 'external', qty: '1', fee: '1' }]);
  // Booked, the stop realises the strategy's loss and leaves its book flat.
  const after = applyFill(book('trend', '1', '3000.3'), { category: 'linear', symbol: 'ETHUSDT', side: 'Sell', execType: 'Trade', qty: '1', price: '2970.3', fee: '1.633665', feeCurrency: 'USDT' }).book;
  assert.deepEqual([after.qty, after.avgEntry, after.realised, after.fees], ['0', '0', '-30', '1.633665']);
});
