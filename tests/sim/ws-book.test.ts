// Public websocket feeds with state, through bybit-api's WebsocketClient: orderbook.{depth} as a
// snapshot and then deltas that rebuild the simulator's book exactly (steps and fills), level 1 as
// snapshots only, and kline.{interval} with its closing candles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RestClientV5 } from 'bybit-api';
import WebSocket from 'ws';
import { manualSim, restClient, waitFor, WsRecorder, type WsMessage } from './helpers.ts';

/** A client-side book: Bybit's rules for snapshot and delta (size "0" deletes a level). */
class LocalBook {
  bids = new Map<string, string>();
  asks = new Map<string, string>();
  u = -1;
  readonly problems: string[] = [];
  apply(m: WsMessage): void {
    const d = m.data as { s: string; b: string[][]; a: string[][]; u: number; seq: number };
    if (m.type === 'snapshot') {
      this.bids = new Map(d.b.map(([p, q]) => [p!, q!]));
      this.asks = new Map(d.a.map(([p, q]) => [p!, q!]));
    } else {
      if (d.u !== this.u + 1) this.problems.push(`delta u ${d.u} after ${this.u}`);
      for (const [side, levels] of [[this.bids, d.b], [this.asks, d.a]] as const) {
        for (const [p, q] of levels) {
          if (q === '0') side.delete(p!);
          else side.set(p!, q!);
        }
      }
    }
    this.u = d.u;
  }
  sorted(): { b: string[][]; a: string[][] } {
    const b = [...this.bids].sort((x, y) => Number(y[0]) - Number(x[0]));
    const a = [...this.asks].sort((x, y) => Number(x[0]) - Number(y[0]));
    return { b, a };
  }
}

/** Feed every message of `topic` received so far into a book; returns it. */
function rebuild(ws: WsRecorder, topic: string): LocalBook {
  const book = new LocalBook();
  for (const m of ws.of(topic)) book.apply(m);
  return book;
}

/** Wait until the book rebuilt from `topic` equals the simulator's (REST reads the same view). */
async function sameAsSimulator(ws: WsRecorder, c: RestClientV5, topic: string, category: 'spot' | 'linear', symbol: string, limit: number): Promise<LocalBook> {
  const rest = (await c.getOrderbook({ category, symbol, limit })).result;
  const want = JSON.stringify({ b: rest.b, a: rest.a });
  let last = '';
  return waitFor(() => {
    const book = rebuild(ws, topic);
    last = JSON.stringify(book.sorted());
    return last === want ? book : undefined;
  }, `the book rebuilt from ${topic} to equal the simulator's (last: ${last.slice(0, 120)}, want: ${want.slice(0, 120)})`);
}

test('orderbook.50 / .200: a snapshot, then deltas that rebuild the simulator\'s book through steps and fills', async () => {
  const sim = await manualSim();
  const lin = new WsRecorder(sim);
  const spot = new WsRecorder(sim, { wsUrl: `ws://${sim.host}:${sim.port}/v5/public/spot` });
  try {
    const c = restClient(sim);
    await lin.subscribe(['orderbook.50.BTCUSDT', 'orderbook.200.ETHUSDT'], 'linear');
    await spot.subscribe(['orderbook.50.BTCUSDT'], 'spot');
    await waitFor(() => lin.of('orderbook.50.BTCUSDT').length && lin.of('orderbook.200.ETHUSDT').length && spot.of('orderbook.50.BTCUSDT').length, 'snapshots');
    const first = lin.of('orderbook.50.BTCUSDT')[0]!;
    assert.equal(first.type, 'snapshot');
    assert.equal(first.data.b.length, 50);
    assert.equal(first.data.u, 1, 'a feed starts at u=1');

    for (let round = 0; round < 3; round++) {
      sim.tick(1 + round);
      // A fill takes liquidity: the next taker sees less, and so does the feed.
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.900' })).retCode, 0);
      assert.equal((await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.200000' })).retCode, 0);
      const b1 = await sameAsSimulator(lin, c, 'orderbook.50.BTCUSDT', 'linear', 'BTCUSDT', 50);
      const b2 = await sameAsSimulator(lin, c, 'orderbook.200.ETHUSDT', 'linear', 'ETHUSDT', 200);
      const b3 = await sameAsSimulator(spot, c, 'orderbook.50.BTCUSDT', 'spot', 'BTCUSDT', 50);
      for (const b of [b1, b2, b3]) assert.deepEqual(b.problems, []);
    }
    const msgs = lin.of('orderbook.50.BTCUSDT');
    assert.ok(msgs.slice(1).every((m) => m.type === 'delta'), 'after the snapshot: deltas only');
    assert.ok(msgs.some((m) => m.data.b.some((l: string[]) => l[1] === '0')), 'levels that leave the book are sent with size 0');
    const seqs = msgs.map((m) => m.data.seq as number);
    assert.ok(seqs.every((s, k) => k === 0 || s > seqs[k - 1]!), 'seq increases');
    assert.ok(msgs.every((m) => typeof m.ts === 'number' && typeof (m as unknown as { cts: number }).cts === 'number' && m.data.s === 'BTCUSDT'));

    // A second subscriber joins a live feed: its snapshot is the feed's state, the same deltas follow.
    const late = new WsRecorder(sim);
    try {
      await late.subscribe(['orderbook.50.BTCUSDT'], 'linear');
      sim.tick(2);
      await sameAsSimulator(late, c, 'orderbook.50.BTCUSDT', 'linear', 'BTCUSDT', 50);
      assert.deepEqual(rebuild(late, 'orderbook.50.BTCUSDT').problems, []);
    } finally {
      late.close();
    }
  } finally {
    lin.close();
    spot.close();
    await sim.close();
  }
});

test('orderbook.1: snapshots only, the same one again (same u) after 3 s without a change', async () => {
  const sim = await manualSim({ priceProcess: { volatility: 0 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(['orderbook.1.SOLUSDT'], 'linear');
    await waitFor(() => ws.of('orderbook.1.SOLUSDT').length, 'snapshot');
    const u0 = ws.of('orderbook.1.SOLUSDT')[0]!.data.u;
    sim.tick(2);
    await ws.subscribe(['tickers.SOLUSDT'], 'linear'); // the answer follows anything sent before it
    assert.equal(ws.of('orderbook.1.SOLUSDT').length, 1, 'an unchanged book sends nothing within 3 s');
    sim.tick(1);
    await waitFor(() => ws.of('orderbook.1.SOLUSDT').length === 2, 'the resent snapshot');
    const again = ws.of('orderbook.1.SOLUSDT')[1]!;
    assert.equal(again.type, 'snapshot');
    assert.equal(again.data.u, u0, 'a resent snapshot keeps u');
    sim.setPrice('SOLUSDT', 151);
    await waitFor(() => ws.of('orderbook.1.SOLUSDT').length === 3, 'the changed book');
    const moved = ws.of('orderbook.1.SOLUSDT')[2]!;
    assert.equal(moved.type, 'snapshot');
    assert.equal(moved.data.u, u0 + 1);
    assert.equal(moved.data.b.length, 1);
    assert.ok(Number(moved.data.b[0][0]) < 151 && Number(moved.data.a[0][0]) > 151);
  } finally {
    ws.close();
    await sim.close();
  }
});

test('kline.{interval}: the current candle at every step, the closed one (confirm true) when its interval ends', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    const c = restClient(sim);
    await ws.subscribe(['kline.1.BTCUSDT', 'kline.5.ETHUSDT'], 'linear');
    await waitFor(() => ws.of('kline.1.BTCUSDT').length && ws.of('kline.5.ETHUSDT').length, 'current candles');
    const k0 = ws.of('kline.1.BTCUSDT')[0]!;
    assert.equal(k0.type, 'snapshot');
    const start = k0.data[0].start as number;
    assert.equal(start, Math.floor(sim.exchange.prices.time / 60_000) * 60_000);
    assert.equal(k0.data[0].end, start + 59_999);
    assert.equal(k0.data[0].confirm, false);
    sim.tick(10);
    await waitFor(() => ws.of('kline.1.BTCUSDT').length >= 2, 'an update');
    sim.tick(60);
    await waitFor(() => ws.items('kline.1.BTCUSDT').some((k) => k.confirm === true), 'the closed candle');
    const closed = ws.items('kline.1.BTCUSDT').find((k) => k.confirm === true)!;
    const row = (await c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', start: closed.start, end: closed.start })).result.list[0]!;
    assert.deepEqual([String(closed.start), closed.open, closed.high, closed.low, closed.close], row.slice(0, 5), 'the closed candle is the kline endpoint\'s');
    assert.equal(closed.interval, '1');
    const after = ws.items('kline.1.BTCUSDT').at(-1)!;
    assert.equal(after.confirm, false);
    assert.equal(after.start, closed.start + 60_000);
    const five = ws.items('kline.5.ETHUSDT').at(-1)!;
    assert.equal(five.start % 300_000, 0);
    assert.equal(five.end, five.start + 299_999);
    // Topics Bybit does not have are refused (read raw: bybit-api keeps such answers to itself).
    const raw = new WebSocket(`ws://${sim.host}:${sim.port}/v5/public/linear`);
    try {
      await new Promise((r, j) => raw.once('open', r).once('error', j));
      for (const topic of ['kline.7.BTCUSDT', 'orderbook.25.BTCUSDT', 'kline.1.PEPEUSDT']) {
        const reply = new Promise<Record<string, unknown>>((r) => raw.once('message', (m) => r(JSON.parse(String(m)))));
        raw.send(JSON.stringify({ op: 'subscribe', args: [topic] }));
        const r = await reply;
        assert.equal(r.success, false, topic);
        assert.equal(r.ret_msg, `error:handler not found,topic:${topic}`);
      }
    } finally {
      raw.close();
    }
  } finally {
    ws.close();
    await sim.close();
  }
});
