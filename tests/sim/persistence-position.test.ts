// The state file keeps the position and account settings, TP/SL orders, closed P&L records and the
// transaction log across restarts (state version 2), and a version-1 file (written by the
// simulator before these existed) still loads, as the one-way, regular-margin account it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RestClientV5 } from 'bybit-api';
import { ManualClock } from '../../runtime/clock.ts';
import { historyFileOf } from '../../sim/persistence.ts';
import { startSimulator } from '../../sim/server.ts';
import { restClient, T0 } from './helpers.ts';

const HOUR = 3600_000;
const tmp = () => mkdtempSync(join(tmpdir(), 'sim-state-pos-'));
const ok = async (r: Promise<{ retCode: number; retMsg: string }>) => {
  const x = await r;
  assert.equal(x.retCode, 0, x.retMsg);
};

/** What a client can learn about positions, settings and the account's records. */
async function facts(c: RestClientV5) {
  const out: Record<string, unknown> = {};
  for (const symbol of ['BTCUSDT', 'ETHUSDT', 'SOLUSDT']) out[`position-${symbol}`] = (await c.getPositionInfo({ category: 'linear', symbol })).result;
  out.open = (await c.getActiveOrders({ category: 'linear', settleCoin: 'USDT' })).result;
  out.closedPnl = (await c.getClosedPnL({ category: 'linear', startTime: T0 - HOUR, endTime: T0 + 7 * 24 * HOUR - HOUR })).result;
  out.transactionLog = (await c.getTransactionLog({ startTime: T0 - HOUR, endTime: T0 + 24 * HOUR })).result;
  out.wallet = (await c.getWalletBalance({ accountType: 'UNIFIED' })).result;
  out.account = (await c.getAccountInfo()).result;
  return out;
}

test('restart: position and margin modes, leverage, TP/SL orders, closed P&L, the transaction log and funding state come back the same', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const clock = new ManualClock(T0);
  const opts = { seed: 7, clock, stateFile: file, priceProcess: { volatility: 0, stepMs: 60_000 }, rateLimits: { multiplier: 100 } };
  try {
    const a = await startSimulator(opts);
    let before;
    try {
      const c = restClient(a);
      await ok(c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 3 }));
      await ok(c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '7.5', sellLeverage: '7.5' }));
      a.advance(1000);
      await ok(c.setMarginMode('ISOLATED_MARGIN'));
      await ok(c.setLeverage({ category: 'linear', symbol: 'ETHUSDT', buyLeverage: '4', sellLeverage: '6' }));
      await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '1.00', positionIdx: 1 }));
      await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '0.50', positionIdx: 2 }));
      await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.050' }));
      a.advance(4 * HOUR); // funding at 16:00
      await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.020', reduceOnly: true }));
      await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '0.40', positionIdx: 1 }));
      const mid = a.exchange.mid('BTCUSDT');
      await ok(c.setTradingStop({ category: 'linear', symbol: 'BTCUSDT', tpslMode: 'Full', positionIdx: 0, takeProfit: (Math.round(mid * 0.9 * 10) / 10).toFixed(1), stopLoss: (Math.round(mid * 1.1 * 10) / 10).toFixed(1) }));
      before = await facts(c);
      assert.equal((before.open as { list: Array<{ orderStatus: string }> }).list.filter((o) => o.orderStatus === 'Untriggered').length, 2);
      assert.equal((before.closedPnl as { list: unknown[] }).list.length, 2);
      assert.ok((before.transactionLog as { list: Array<{ type: string }> }).list.filter((e) => e.type === 'SETTLEMENT').length === 3);
    } finally {
      await a.close();
    }
    const b = await startSimulator(opts);
    try {
      const c = restClient(b);
      assert.deepEqual(await facts(c), before, 'every answer about positions, settings and records is the same after the restart');
      // The open part's fees and funding are still waiting for its close: closed P&L takes them.
      const pos = b.exchange.account('1000001').findPosition('BTCUSDT', 0)!;
      assert.ok(pos.openFee > 0 && pos.fundingCost < 0, `openFee ${pos.openFee}, fundingCost ${pos.fundingCost} (a short receives the positive default rate)`);
      assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 3 })).retCode, 110025, 'still hedge mode');
      const account = (await c.getAccountInfo()).result;
      assert.deepEqual([account.marginMode, account.updatedTime], ['ISOLATED_MARGIN', String(T0 + 1000)]);
      assert.deepEqual((await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list.map((p) => p.leverage), ['4', '6']);
      // The restored take profit still watches the price.
      b.setPrice('BTCUSDT', b.exchange.mid('BTCUSDT') * 0.85);
      b.tick(1);
      assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.size, '0.000');
      const fired = (await c.getHistoricOrders({ category: 'linear', symbol: 'BTCUSDT', orderFilter: 'StopOrder' } as never)).result.list;
      assert.deepEqual(fired.map((o) => [o.stopOrderType, o.orderStatus]).sort(), [['StopLoss', 'Deactivated'], ['TakeProfit', 'Filled']]);
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// tests/sim/fixtures/state-v1: written by the simulator of commit afc0a07 (state version 1): ETH
// long 2.00 at 5x, a resting BTC bid, a spot market buy, a SOL short opened and closed.
test('a version-1 state file loads as a one-way, regular-margin account, continues, and is written back as version 2', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const fixture = new URL('./fixtures/state-v1/', import.meta.url);
  copyFileSync(new URL('state.json', fixture), file);
  copyFileSync(new URL('state.history.jsonl', fixture), historyFileOf(file));
  const v1 = JSON.parse(readFileSync(file, 'utf8')) as { version: number; savedAt: number; history: { lines: number }; exchange: { accounts: Array<{ coins: Record<string, { wallet: number }> }> } };
  assert.equal(v1.version, 1);
  const clock = new ManualClock(v1.savedAt + 1000);
  try {
    const a = await startSimulator({ seed: 7, clock, stateFile: file });
    try {
      const c = restClient(a);
      const eth = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list;
      assert.deepEqual(eth.map((p) => [p.positionIdx, p.side, p.size, p.leverage]), [[0, 'Buy', '2.00', '5']]);
      assert.equal((await c.getActiveOrders({ category: 'linear', orderLinkId: 'v1-rest' })).result.list[0]!.positionIdx, 0);
      assert.equal((await c.getHistoricOrders({ category: 'linear', orderLinkId: 'v1-sol-close' })).result.list[0]!.orderStatus, 'Filled');
      assert.equal((await c.getExecutionList({ category: 'linear', limit: 50 })).result.list.length, 3);
      const usdt = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!.coin[0]!;
      assert.ok(Math.abs(Number(usdt.walletBalance) - v1.exchange.accounts[0]!.coins.USDT!.wallet) < 1e-6);
      assert.equal(((await c.getAccountInfo()).result as unknown as { marginMode: string }).marginMode, 'REGULAR_MARGIN');
      assert.equal((await c.getClosedPnL({ category: 'linear' })).result.list.length, 0, 'version 1 kept no closed P&L records');
      assert.equal((await c.getTransactionLog()).result.list.length, 0, 'nor a transaction log');
      // The account goes on: a close of the version-1 position makes the first record (no opening
      // fee was kept in version 1, so only the closing fee is deducted).
      await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '2.00', reduceOnly: true, orderLinkId: 'v2-close' }));
      const rec = (await c.getClosedPnL({ category: 'linear' })).result.list[0]!;
      assert.equal(rec.openFee, '0');
      assert.ok(Math.abs(Number(rec.closedPnl) - ((Number(rec.avgExitPrice) - Number(rec.avgEntryPrice)) * 2 - Number(rec.closeFee))) < 1e-6);
    } finally {
      await a.close();
    }
    const v2 = JSON.parse(readFileSync(file, 'utf8')) as { version: number; upgradedFrom: { version: number; lines: number } };
    assert.equal(v2.version, 2);
    assert.deepEqual(v2.upgradedFrom, { version: 1, lines: v1.history.lines });
    const b = await startSimulator({ seed: 7, clock, stateFile: file });
    try {
      const c = restClient(b);
      assert.equal((await c.getClosedPnL({ category: 'linear' })).result.list.length, 1, 'the history mixes version-1 and version-2 lines and loads');
      assert.equal((await c.getHistoricOrders({ category: 'linear', orderLinkId: 'v2-close' })).result.list[0]!.orderStatus, 'Filled');
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
