// A funding execution as the simulator reports it (execType Funding, execFee < 0 when received,
// empty orderLinkId, orderType UNKNOWN) through the order manager's two readers of executions: the
// stream parser both websocket connectors run (the direct connector and the ws-gateway bridge,
// connectors/bybit-stream-format.ts) and the REST mapping of the reconciler
// (connectors/exchange-records.ts executionOf). Both keep it as Bybit sent it, and the record fits
// the exchange.executions Avro schema. A short on a positive rate, so the fee is a received one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseStreamMessage, TickerBook, unwrap } from '../../connectors/bybit-stream-format.ts';
import { executionOf } from '../../connectors/exchange-records.ts';
import { invalidPaths } from '../../schemas/codecs.ts';
import type { Execution } from '../../schemas/types.ts';
import { executionRest, executionWs } from '../../sim/views.ts';
import { manualSim } from '../sim/helpers.ts';

test('a funding execution passes the stream parser and the REST mapping unchanged: execType, execFee sign, empty orderLinkId', async () => {
  const sim = await manualSim({ priceProcess: { volatility: 0, stepMs: 60_000 }, fundingRate: () => 0.0002 });
  try {
    sim.setPrice('ETHUSDT', 3000);
    sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '2.00' });
    sim.advance(4 * 3600_000); // 16:00 UTC
    const e = sim.exchange.allExecutions().find((x) => x.execType === 'Funding')!;
    assert.ok(e && e.execFee < 0, 'the short received funding: execFee < 0');
    const inst = sim.exchange.instruments.get('linear', 'ETHUSDT')!;
    const ws = executionWs(e, inst);
    const rest = executionRest(e, inst);

    const u = unwrap({ id: 'm1', topic: 'execution', creationTime: e.execTime, data: [ws] });
    assert.ok(u.ok, JSON.stringify(u));
    const p = parseStreamMessage(u.message, { source: 'ws', observedAt: e.execTime + 5, tickerCategory: 'linear', tickers: new TickerBook() });
    assert.ok(p.ok && p.records.length === 1 && p.problems.length === 0, JSON.stringify(p));
    const fromStream = p.records[0]!.value as Execution;
    const fromRest = executionOf(rest, 'linear', e.execTime + 5);
    for (const [name, r] of [['stream', fromStream], ['rest', fromRest]] as const) {
      assert.deepEqual(
        [r.execId, r.execType, r.orderLinkId, r.orderId, r.side, r.execFee, r.execQty, r.execPrice, r.feeRate, r.execTime, r.orderType, r.category],
        [e.execId, 'Funding', '', ws.orderId, 'Sell', ws.execFee, ws.execQty, ws.execPrice, ws.feeRate, e.execTime, 'UNKNOWN', 'linear'],
        name,
      );
      assert.equal(r.execFee.startsWith('-'), true, `${name}: a received fee stays negative`);
      assert.deepEqual(invalidPaths('Execution', r), [], `${name}: fits the Avro schema`);
    }
  } finally {
    await sim.close();
  }
});
