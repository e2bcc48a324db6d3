// P&L books against tables computed by hand (docs/pnl.md shows the same two sequences), and against
// the cash-flow identity: what the system paid and received plus what it still holds at a price
// equals realised − fees + funding + unrealised at that price, whatever the sequence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyFill, dayPnl, emptyBook, netRealised, splitFunding, unrealised, type PnlBook, type PnlFill } from '../../pipelines/pnl.ts';
import { Dec } from '../../runtime/decimal.ts';

type Row = [side: 'Buy' | 'Sell', execType: string | null, qty: string, price: string, fee: string, feeCurrency: string | null, expect: { qty: string; avgEntry: string; realised: string; fees: string; funding: string }];

function run(book: PnlBook, rows: Row[]): PnlBook {
  rows.forEach(([side, execType, qty, price, fee, feeCurrency, want], i) => {
    book = applyFill(book, { category: book.category, symbol: book.symbol, side, execType, qty, price, fee, feeCurrency }).book;
    const got = { qty: book.qty, avgEntry: book.avgEntry, realised: book.realised, fees: book.fees, funding: book.funding };
    const norm = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Dec.of(v).toString()]));
    assert.deepEqual(norm(got), norm(want), `row ${i + 1}: ${side} ${qty} @ ${price}`);
  });
  return book;
}

test('linear: add, average up, funding paid, flip through zero, close the short (taker 0.055 %)', () => {
  const b = run(emptyBook('linear', 'BTCUSDT', 's1'), [
    ['Buy', 'Trade', '0.02', '60000', '0.66', 'USDT', { qty: '0.02', avgEntry: '60000', realised: '0', fees: '0.66', funding: '0' }],
    ['Buy', 'Trade', '0.01', '63000', '0.3465', 'USDT', { qty: '0.03', avgEntry: '61000', realised: '0', fees: '1.0065', funding: '0' }],
    // Funding: execFee is what the position paid (positive), booked as funding, not as a fee.
    ['Sell', 'Funding', '0.03', '61500', '0.9', 'USDT', { qty: '0.03', avgEntry: '61000', realised: '0', fees: '1.0065', funding: '-0.9' }],
    // Sell 0.04: closes 0.03 at +1,000 each (30), opens a 0.01 short at 62,000.
    ['Sell', 'Trade', '0.04', '62000', '1.364', 'USDT', { qty: '-0.01', avgEntry: '62000', realised: '30', fees: '2.3705', funding: '-0.9' }],
    ['Buy', 'Trade', '0.01', '61500', '0.33825', 'USDT', { qty: '0', avgEntry: '0', realised: '35', fees: '2.70875', funding: '-0.9' }],
  ]);
  assert.equal(netRealised(b).toString(), '31.39125');
});

test('spot: fees in the coin received, a sale beyond what the system bought realises only what it bought (0.1 %)', () => {
  let b = run(emptyBook('spot', 'ETHUSDT', 's1'), [
    // The buy's fee is 0.002 ETH: the holding is 1.998, the fee is worth 6 USDT.
    ['Buy', 'Trade', '2', '3000', '0.002', 'ETH', { qty: '1.998', avgEntry: '3000', realised: '0', fees: '6', funding: '0' }],
    ['Sell', 'Trade', '1', '3300', '3.3', 'USDT', { qty: '0.998', avgEntry: '3000', realised: '300', fees: '9.3', funding: '0' }],
    // Entry (0.998 × 3,000 + 1.002 × 3,100) / 2 = 3,050.1; the fee coins leave at 3,100: +49.9 × 0.001002.
    ['Buy', 'Trade', '1.002', '3100', '0.001002', 'ETH', { qty: '1.998998', avgEntry: '3050.1', realised: '300.0499998', fees: '12.4062', funding: '0' }],
  ]);
  assert.equal(unrealised(b, '3000').toString(), '-100.1497998', 'unrealised at 3,000: (3,000 − 3,050.1) × 1.998998');
  b = run(b, [
    // 2.5 sold, 1.998998 of them bought here: (3,200 − 3,050.1) × 1.998998 = 299.6498002 realised.
    ['Sell', 'Trade', '2.5', '3200', '8', 'USDT', { qty: '0', avgEntry: '0', realised: '599.6998', fees: '20.4062', funding: '0' }],
  ]);
  // Cash identity: paid 6,000 + 3,106.2, received 3,296.7 + 7,992, ETH −0.501002 (starting coins) at 3,200.
  const cash = Dec.of('3296.7').add('7992').sub('6000').sub('3106.2').sub(Dec.of('0.501002').mul('3200'));
  assert.equal(netRealised(b).toString(), cash.toString());
  assert.equal(netRealised(b).toString(), '579.2936');
});

test('cash identity on random sequences: net realised + unrealised = cash flow + holdings at the price', () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const category of ['linear', 'spot'] as const) {
    for (let run = 0; run < 50; run++) {
      let book = emptyBook(category, 'SOLUSDT', 's');
      let cash = Dec.ZERO; // quote coin paid (−) and received (+), fees included
      let coins = Dec.ZERO; // linear: position; spot: base coin change of the account
      let starting = Dec.ZERO; // spot: coins sold that the system did not buy, valued when sold
      for (let i = 0; i < 30; i++) {
        const side = rnd() < 0.5 ? 'Buy' : 'Sell';
        const qty = Dec.of((1 + Math.floor(rnd() * 300)) / 100);
        const price = Dec.of((9000 + Math.floor(rnd() * 2000)) / 100);
        const rate = Dec.of('0.001');
        const f: PnlFill = { category, symbol: 'SOLUSDT', side, execType: 'Trade', qty: qty.toString(), price: price.toString(), fee: '0', feeCurrency: 'USDT' };
        if (category === 'linear') {
          f.fee = qty.mul(price).mul(rate).toString();
          cash = cash.sub(f.fee);
          // Linear settles in USDT: the position's value at a price is what closing it would realise.
          coins = side === 'Buy' ? coins.add(qty) : coins.sub(qty);
          cash = side === 'Buy' ? cash.sub(qty.mul(price)) : cash.add(qty.mul(price));
        } else if (side === 'Buy') {
          f.fee = qty.mul(rate).toString();
          f.feeCurrency = 'SOL';
          cash = cash.sub(qty.mul(price));
          coins = coins.add(qty).sub(f.fee);
        } else {
          f.fee = qty.mul(price).mul(rate).toString();
          const held = Dec.of(book.qty);
          if (qty.gt(held)) starting = starting.add(qty.sub(held).mul(price));
          cash = cash.add(qty.mul(price)).sub(f.fee);
          coins = coins.sub(qty);
        }
        book = applyFill(book, f).book;
      }
      const mark = Dec.of('100.5');
      // Spot: coins the system sold without having bought them are inventory turned into cash at
      // their sale price, not P&L; what it still holds of its own buys is worth the mark.
      const expected = category === 'linear' ? cash.add(coins.mul(mark)) : cash.sub(starting).add(Dec.of(book.qty).mul(mark));
      const got = netRealised(book).add(unrealised(book, mark.toString()));
      assert.ok(got.sub(expected).abs().lt('0.000000001'), `${category} run ${run}: books ${got} vs cash ${expected}`);
    }
  }
});

test('the day\'s P&L for the loss ladder: unrealised losses count at once, unrealised gains never offset a realised loss', () => {
  assert.equal(dayPnl(Dec.of('-150'), Dec.of('-60')).toString(), '-210');
  assert.equal(dayPnl(Dec.of('-150'), Dec.of('400')).toString(), '-150');
  assert.equal(dayPnl(Dec.of('20'), Dec.of('-60')).toString(), '-40');
});

test('funding is split over the books that hold the position, by size, adding up to the fee exactly', () => {
  const b = (strategy: string, qty: string) => ({ ...emptyBook('linear', 'BTCUSDT', strategy), qty, avgEntry: '60000' });
  assert.deepEqual(splitFunding([b('a', '0.01'), b('flat', '0'), b('b', '-0.03')], '1'), [{ strategy: 'a', fee: '0.25' }, { strategy: 'b', fee: '0.75' }]);
  const thirds = splitFunding([b('a', '1'), b('b', '1'), b('c', '1')], '1');
  assert.equal(thirds.reduce((s, x) => s.add(x.fee), Dec.ZERO).toString(), '1', 'the rounding rest goes to the last share');
  assert.deepEqual(splitFunding([b('flat', '0')], '0.5'), [{ strategy: 'unattributed', fee: '0.5' }]);
});
