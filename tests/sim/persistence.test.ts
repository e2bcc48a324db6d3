// The simulator's paper account across restarts: the state file brings back the same facts over
// REST (through bybit-api), resting orders keep matching, and no id ever repeats, whatever happened
// to the file (kill -9 mid-write, a stale copy, no file at all, a fresh account). An unreadable file
// stops the start with the reason instead of silently opening a new account.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { RestClientV5 } from 'bybit-api';
import { ManualClock } from '../../runtime/clock.ts';
import { backupFileOf, historyFileOf, loadState } from '../../sim/persistence.ts';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { restClient, T0 } from './helpers.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'sim-state-'));
const price = (x: number, tick: number) => (Math.floor(x / tick) * tick).toFixed(Math.max(0, -Math.floor(Math.log10(tick))));

/** Everything an account's REST client can learn about it. */
async function facts(c: RestClientV5) {
  const out: Record<string, unknown> = {};
  for (const category of ['spot', 'linear'] as const) {
    out[`open-${category}`] = (await c.getActiveOrders({ category, limit: 50 })).result;
    out[`history-${category}`] = (await c.getHistoricOrders({ category, limit: 50 })).result;
    out[`executions-${category}`] = (await c.getExecutionList({ category, limit: 100 })).result;
  }
  out.positions = (await c.getPositionInfo({ category: 'linear', settleCoin: 'USDT' })).result;
  out.wallet = (await c.getWalletBalance({ accountType: 'UNIFIED' })).result;
  out.leverage = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]?.leverage;
  return out;
}

function idsOf(sim: Simulator): string[] {
  return [...sim.exchange.allOrders().map((o) => o.orderId), ...sim.exchange.allExecutions().map((e) => e.execId)];
}

/** Places a mix of filled and resting spot and linear orders; returns the resting ones' links. */
async function trade(c: RestClientV5, sim: Simulator, tag: string): Promise<{ linearBuy: string; spotSell: string }> {
  const ok = (r: { retCode: number; retMsg: string }) => assert.equal(r.retCode, 0, r.retMsg);
  const btc = sim.exchange.mid('BTCUSDT');
  const eth = sim.exchange.mid('ETHUSDT');
  const lev = String(sim.exchange.account(sim.credentials[0]!.uid).leverageOf('ETHUSDT') - 1);
  ok(await c.setLeverage({ category: 'linear', symbol: 'ETHUSDT', buyLeverage: lev, sellLeverage: lev }));
  ok(await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '2.00', orderLinkId: `${tag}-lin-mkt` }));
  ok(await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '1000', orderLinkId: `${tag}-spot-mkt` }));
  ok(await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price: price(btc * 0.99, 0.1), orderLinkId: `${tag}-lin-rest` }));
  ok(await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Limit', qty: '0.5000', price: price(eth * 1.02, 0.01), orderLinkId: `${tag}-spot-rest` }));
  ok(await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001000', price: price(btc * 0.95, 0.01), orderLinkId: `${tag}-cancelled` }));
  ok(await c.cancelOrder({ category: 'spot', symbol: 'BTCUSDT', orderLinkId: `${tag}-cancelled` }));
  return { linearBuy: `${tag}-lin-rest`, spotSell: `${tag}-spot-rest` };
}

test('restart on the same state file: the same facts over REST, resting orders still match, new ids only', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const clock = new ManualClock(T0);
  try {
    const a = await startSimulator({ seed: 7, clock, stateFile: file });
    let resting, before, oldIds: string[], info;
    try {
      const ca = restClient(a);
      resting = await trade(ca, a, 'r1');
      a.tick(30);
      before = await facts(ca);
      oldIds = idsOf(a);
      info = a.accountInfo();
      assert.equal(info.starts, 1);
    } finally {
      await a.close();
    }

    const b = await startSimulator({ seed: 7, clock, stateFile: file });
    try {
      const cb = restClient(b);
      assert.deepEqual(await facts(cb), before, 'every REST answer about the account is the same after the restart');
      assert.equal(b.accountInfo().createdAt, info.createdAt);
      assert.equal(b.accountInfo().starts, 2);
      assert.notEqual(b.accountInfo().instanceNonce, info.instanceNonce);

      // The orderLinkId index came back too: a used link is still refused.
      const dup = await cb.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.001', orderLinkId: 'r1-lin-mkt' });
      assert.equal(dup.retCode, 110072);

      // New orders and fills get ids the first run never handed out.
      await trade(cb, b, 'r2');
      const seen = new Set(oldIds);
      const fresh = idsOf(b).filter((id) => !oldIds.includes(id));
      assert.ok(fresh.length >= 7, `new ids: ${fresh.length}`);
      assert.deepEqual(fresh.filter((id) => seen.has(id)), []);
      assert.equal(new Set(idsOf(b)).size, idsOf(b).length, 'every id unique');

      // Orders resting before the restart fill as makers when the price crosses them.
      const lin = (await cb.getActiveOrders({ category: 'linear', orderLinkId: resting.linearBuy })).result.list[0]!;
      assert.equal(lin.orderStatus, 'New');
      b.setPrice('BTCUSDT', Number(lin.price) * 0.98);
      const spot = (await cb.getActiveOrders({ category: 'spot', orderLinkId: resting.spotSell })).result.list[0]!;
      b.setPrice('ETHUSDT', Number(spot.price) * 1.02);
      for (const [category, link] of [['linear', resting.linearBuy], ['spot', resting.spotSell]] as const) {
        const o = (await cb.getHistoricOrders({ category, orderLinkId: link })).result.list[0]!;
        assert.equal(o.orderStatus, 'Filled', `${link} filled after the restart`);
        const ex = (await cb.getExecutionList({ category, orderId: o.orderId })).result.list;
        assert.ok(ex.length >= 1 && ex.every((e) => e.isMaker === true && !seen.has(e.execId)), `${link}: maker fills with new execIds`);
      }
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('downtime is a market halt: the price process continues from the saved step at the clock\'s time, without replaying', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  try {
    const a = await startSimulator({ seed: 7, clock: new ManualClock(T0), stateFile: file });
    a.tick(10);
    const mids = a.exchange.prices.symbols().map((s) => a.exchange.mid(s));
    const steps = a.exchange.prices.steps;
    const candles = a.exchange.prices.candles('BTCUSDT', T0 - 3_600_000, T0 + 60_000);
    await a.close();

    const later = T0 + 6 * 3_600_000;
    const b = await startSimulator({ seed: 7, clock: new ManualClock(later), stateFile: file });
    try {
      assert.equal(b.exchange.prices.steps, steps, 'six hours of downtime ran no steps');
      assert.equal(b.exchange.prices.time, later);
      assert.deepEqual(b.exchange.prices.symbols().map((s) => b.exchange.mid(s)), mids);
      assert.deepEqual(b.exchange.prices.candles('BTCUSDT', T0 - 3_600_000, T0 + 60_000), candles, 'the last day of candles came back');
      b.tick(3);
      assert.equal(b.exchange.prices.steps, steps + 3);
      assert.notDeepEqual(b.exchange.prices.symbols().map((s) => b.exchange.mid(s)), mids, 'and it moves on from there');
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kill -9 during a storm of writes leaves a state file that loads, and the next run continues it', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const child = join(import.meta.dirname, 'fixtures', 'state-storm.ts');
  try {
    let lastLoaded = 0;
    for (let round = 0; round < 3; round++) {
      const p = spawn(process.execPath, ['--import', 'tsx', child, file], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<NodeJS.Signals | null>((r) => p.once('exit', (_code, sig) => r(sig)));
      let restored = -1;
      let writes = 0;
      const deadline = setTimeout(() => p.kill('SIGKILL'), 60_000);
      for await (const line of createInterface({ input: p.stdout! })) {
        const m = JSON.parse(line) as { restored?: number; writes?: number };
        if (m.restored !== undefined) restored = m.restored;
        if (m.writes !== undefined) writes = m.writes;
        if (writes >= 8) {
          p.kill('SIGKILL');
          break;
        }
      }
      clearTimeout(deadline);
      assert.equal(await exited, 'SIGKILL');
      assert.ok(writes >= 8, `round ${round}: ${writes} writes before the kill`);
      assert.equal(restored, lastLoaded, `round ${round}: the child started from the last state on disk`);
      const s = loadState(file);
      assert.ok(s, 'the file is there');
      assert.ok(s.exchange.orders.length > lastLoaded, `round ${round}: ${s.exchange.orders.length} orders on disk, ${lastLoaded} before`);
      assert.equal(s.instances.length, round + 1);
      lastLoaded = s.exchange.orders.length;
    }
    // A simulator starts on what the killed one left, and clears its stray temporary files.
    const sim = await startSimulator({ seed: 7, stateFile: file });
    try {
      assert.equal(sim.exchange.allOrders().length, lastLoaded);
      assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
    } finally {
      await sim.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no id repeats: two starts from the same seed without a file, and a restart on a stale copy of the file', async () => {
  const seqs = new Map<string, number>();
  const run = async (opts: { stateFile?: string }, tag: string, at = T0) => {
    const sim = await startSimulator({ seed: 7, clock: new ManualClock(at), ...opts });
    try {
      await trade(restClient(sim), sim, tag);
      for (const e of sim.exchange.allExecutions()) seqs.set(e.execId, e.seq);
      return idsOf(sim);
    } finally {
      await sim.close();
    }
  };
  const x = await run({}, 'x');
  const y = await run({}, 'x');
  assert.ok(x.length >= 7);
  assert.deepEqual(y.filter((id) => x.includes(id)), [], 'same seed, same calls, no file: disjoint orderIds and execIds');

  const dir = tmp();
  const file = join(dir, 'state.json');
  try {
    const first = await run({ stateFile: file }, 'a', T0);
    copyFileSync(file, join(dir, 'stale.json'));
    const second = await run({ stateFile: file }, 'b', T0 + 60_000);
    copyFileSync(join(dir, 'stale.json'), file); // the account goes back to before run 'b'
    const third = await run({ stateFile: file }, 'b', T0 + 120_000);
    const fromThird = third.filter((id) => !first.includes(id));
    assert.ok(fromThird.length >= 7);
    assert.deepEqual(fromThird.filter((id) => second.includes(id)), [], 'the ids run b handed out (lost with the stale file) never come back');
    const seqOf = (ids: string[]) => ids.map((id) => seqs.get(id)).filter((q) => q !== undefined);
    assert.ok(Math.min(...seqOf(fromThird)) > Math.max(...seqOf(second)), 'and the execution sequence only grows');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fresh account on purpose: default balances, no orders, the old account kept as the backup', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  try {
    const a = await startSimulator({ seed: 7, clock: new ManualClock(T0), stateFile: file });
    let oldOrders: number;
    try {
      await trade(restClient(a), a, 'old');
      oldOrders = a.exchange.allOrders().length;
    } finally {
      await a.close();
    }

    const b = await startSimulator({ seed: 7, clock: new ManualClock(T0), stateFile: file, fresh: true });
    try {
      const c = restClient(b);
      assert.equal(b.accountInfo().starts, 1);
      assert.deepEqual((await c.getHistoricOrders({ category: 'linear' })).result.list, []);
      const usdt = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!.coin[0]!;
      assert.equal(Number(usdt.walletBalance), 100000);
      assert.equal(loadState(backupFileOf(file))?.exchange.orders.length, oldOrders, 'the old account is kept aside, loadable');
      assert.equal(loadState(file)?.exchange.orders.length, 0, 'the fresh account is on disk at once');
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable state stops the start with the path, the reason and how to start fresh', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const hfile = historyFileOf(file);
  try {
    const a = await startSimulator({ seed: 7, clock: new ManualClock(T0), stateFile: file });
    try {
      await trade(restClient(a), a, 'u');
    } finally {
      await a.close();
    }
    const good = readFileSync(file, 'utf8');
    const history = readFileSync(hfile, 'utf8');
    const lines = history.split('\n');
    const other = history.replace(/"accountId":"([0-9a-f]+)"/, (_m, id: string) => `"accountId":"${'x'.repeat(id.length)}"`); // same length: only the owner differs
    const cases: Array<[string, string, string, RegExp]> = [
      ['torn snapshot', good.slice(0, good.length / 2), history, /not JSON/],
      ['empty snapshot', '', history, /not JSON/],
      ['foreign snapshot', '{"hello":"world"}', history, /not a simulator state file/],
      ['newer snapshot', good.replace(/"version":\d+/, '"version":99'), history, /state version 99/],
      ['wrong shape', good.replace(/"seq":\d+/, '"seq":"x"'), history, /invalid content: exchange\.accounts\.0\.positions\.0\.seq: Expected number/],
      ['history cut short', good, history.slice(0, history.length - 10), /history file .* holds \d+ bytes, the snapshot counts/],
      ['history line garbled', good, [lines[0], lines[1]!.replace('"o":{', '"o":['), ...lines.slice(2)].join('\n'), /line 2 of .* is not JSON/],
      ['history of another account', good, other, /not the history of this account/],
    ];
    for (const [what, text, hist, reason] of cases) {
      writeFileSync(file, text);
      writeFileSync(hfile, hist);
      await assert.rejects(startSimulator({ seed: 7, stateFile: file }), (e: Error) => {
        assert.match(e.message, reason, what);
        assert.ok(e.message.includes(file), `${what}: names the file`);
        assert.match(e.message, /--fresh-account/, `${what}: says how to start fresh`);
        return true;
      });
      assert.equal(readFileSync(file, 'utf8'), text, `${what}: the snapshot is left as it was`);
      assert.equal(readFileSync(hfile, 'utf8'), hist, `${what}: the history is left as it was`);
      assert.equal(existsSync(backupFileOf(file)), false);
    }
    writeFileSync(file, good);
    rmSync(hfile);
    await assert.rejects(startSimulator({ seed: 7, stateFile: file }), /history file .* cannot be read/);

    // Bytes past the snapshot's count (a write a kill cut short) are not an error: they are cut off.
    writeFileSync(hfile, `${history}{"o":{"orderId":"half-writ`);
    const b = await startSimulator({ seed: 7, stateFile: file });
    try {
      assert.equal(readFileSync(hfile, 'utf8'), history);
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
