// Funding as Bybit reports it in the execution stream: each settlement of a linear position is
// also an execution with execType Funding, pushed on the private `execution` topic and listed by
// GET /v5/execution/list (its execType filter included), through the unmodified bybit-api client.
// Its execFee is the funding fee with the sign of a trading fee (> 0 paid, < 0 received), so it is
// the negated `funding` of the transaction log's SETTLEMENT entry, whose tradeId is its execId. The
// settlement time comes from the manual clock (no wall-clock timing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../runtime/clock.ts';
import { startSimulator } from '../../sim/server.ts';
import { manualSim, PRIVATE_TOPICS, restClient, T0, waitFor, WsRecorder } from './helpers.ts';

const HOUR = 3600_000;
const quiet = { depth: { levelNotional: 10_000_000 }, priceProcess: { volatility: 0, stepMs: 60_000 }, rateLimits: { multiplier: 100 } } as const;
type Row = Record<string, unknown>;

test('a funding settlement is an execution (execType Funding) on the stream and in the execution list, its execFee the SETTLEMENT entry\'s funding negated', async () => {
  // BTC long at +0.02 % pays; ETH short at -0.03 % pays; SOL short at +0.01 % receives.
  const rates: Record<string, number> = { BTCUSDT: 0.0002, ETHUSDT: -0.0003, SOLUSDT: 0.0001 };
  const sim = await manualSim({ ...quiet, fundingRate: (symbol) => rates[symbol] ?? 0 });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    sim.setPrice('ETHUSDT', 3000);
    sim.setPrice('SOLUSDT', 150);
    for (const [symbol, side, qty] of [['BTCUSDT', 'Buy', '0.100'], ['ETHUSDT', 'Sell', '2.00'], ['SOLUSDT', 'Sell', '10.0']] as const) {
      const r = await c.submitOrder({ category: 'linear', symbol, side, orderType: 'Market', qty });
      assert.equal(r.retCode, 0, r.retMsg);
    }
    const trades = (await c.getExecutionList({ category: 'linear', limit: 100 })).result.list;
    assert.equal(trades.length, 3);

    sim.advance(4 * HOUR); // 16:00 UTC
    const at = T0 + 4 * HOUR;
    const pushed = await waitFor(() => {
      const f = ws.items('execution').filter((e) => e.execType === 'Funding');
      return f.length === 3 && f;
    }, 'three funding executions pushed');
    const listed = (await c.getExecutionList({ category: 'linear', execType: 'Funding', limit: 100 })).result.list as unknown as Row[];
    assert.equal(listed.length, 3);
    const onlyTrades = (await c.getExecutionList({ category: 'linear', execType: 'Trade', limit: 100 })).result.list;
    assert.deepEqual(onlyTrades.map((e) => e.execId).sort(), trades.map((e) => e.execId).sort(), 'the Trade filter leaves funding out');
    const all = (await c.getExecutionList({ category: 'linear', limit: 100 })).result.list;
    assert.equal(all.length, 6, 'no filter: trades and funding');

    const uid = '1000001';
    const tx = await c.getTransactionLog({ accountType: 'UNIFIED', category: 'linear', type: 'SETTLEMENT', startTime: T0, endTime: at } as never);
    assert.equal(tx.retCode, 0, tx.retMsg);
    const settlements = tx.result.list as unknown as Row[];
    assert.equal(settlements.length, 3);

    // symbol: side, execQty, execPrice (mark), execValue, execFee (> 0 paid), feeRate (the rate), closedSize
    const expected: Record<string, [string, string, string, string, string, string, string]> = {
      BTCUSDT: ['Buy', '0.100', '60000.00', '6000', '1.2', '0.0002', '0.000'], // 0.1 x 60000 x 0.0002 paid
      ETHUSDT: ['Sell', '2.00', '3000.00', '6000', '1.8', '-0.0003', '0.00'], // 2 x 3000 x 0.0003 paid
      SOLUSDT: ['Sell', '10.0', '150.000', '1500', '-0.15', '0.0001', '0.0'], // 10 x 150 x 0.0001 received
    };
    for (const [name, items] of [['push', pushed], ['list', listed]] as const) {
      for (const e of items) {
        const symbol = String(e.symbol);
        const w = `${name} ${symbol}`;
        const [side, qty, price, value, fee, rate, closed] = expected[symbol]!;
        assert.deepEqual(
          [e.execType, e.side, e.execQty, e.execPrice, e.markPrice, e.execValue, e.execFee, e.feeRate, e.feeCurrency, e.execTime, e.orderLinkId, e.orderId, e.isMaker, e.closedSize],
          ['Funding', side, qty, price, price, value, fee, rate, 'USDT', String(at), '', `${at / 1000}-8-${uid}-0`, false, closed],
          w,
        );
        const s = settlements.find((x) => x.symbol === symbol)!;
        // The same amount, signs opposite by convention: the log's funding is > 0 received.
        assert.equal(Number(e.execFee), -Number(s.funding), `${w}: execFee = -SETTLEMENT funding`);
        assert.equal(e.execId, s.tradeId, `${w}: the SETTLEMENT entry's tradeId is the execution's execId`);
        assert.equal(e.orderId, s.orderId, `${w}: the same settlement id`);
      }
    }
    // The push and the list report the same executions.
    assert.deepEqual(pushed.map((e: Row) => e.execId).sort(), listed.map((e) => e.execId).sort());
    assert.ok(pushed.every((e: Row) => e.category === 'linear'));
  } finally {
    ws.close();
    await sim.close();
  }
});

test('funding executions are part of the saved account: a restart on the state file lists them again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-funding-'));
  const file = join(dir, 'state.json');
  const clock = new ManualClock(T0);
  try {
    const a = await startSimulator({ seed: 7, clock, stateFile: file, ...quiet });
    const ca = restClient(a);
    a.setPrice('BTCUSDT', 60000);
    assert.equal((await ca.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.100' })).retCode, 0);
    a.advance(4 * HOUR);
    const before = (await ca.getExecutionList({ category: 'linear', execType: 'Funding', limit: 10 })).result.list;
    assert.equal(before.length, 1);
    await a.close();
    const b = await startSimulator({ seed: 7, clock, stateFile: file, ...quiet });
    try {
      const after = (await restClient(b).getExecutionList({ category: 'linear', execType: 'Funding', limit: 10 })).result.list;
      assert.deepEqual(after, before);
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
