// The replay's accounting: average cost per strategy and symbol, fees in USDT at the execution price.

export const round = (x: number, d = 8): number => {
  if (!Number.isFinite(x)) return 0;
  const f = 10 ** d;
  const r = Math.round(x * f) / f;
  return Object.is(r, -0) ? 0 : r;
};

export interface Book {
  qty: number;
  avg: number;
  realised: number;
}

export function applyFill(b: Book, signedQty: number, price: number, feeUsdt: number): void {
  b.realised -= feeUsdt;
  if (b.qty === 0 || Math.sign(b.qty) === Math.sign(signedQty)) {
    const q = b.qty + signedQty;
    b.avg = (b.avg * Math.abs(b.qty) + price * Math.abs(signedQty)) / Math.abs(q);
    b.qty = q;
    return;
  }
  const closed = Math.min(Math.abs(signedQty), Math.abs(b.qty));
  b.realised += closed * (price - b.avg) * Math.sign(b.qty);
  const q = b.qty + signedQty;
  if (Math.abs(q) < 1e-12) {
    b.qty = 0;
    b.avg = 0;
  } else if (Math.sign(q) !== Math.sign(b.qty)) {
    b.qty = q;
    b.avg = price;
  } else b.qty = q;
}

export const unrealised = (b: Book, mark: number): number => (b.qty === 0 ? 0 : b.qty * (mark - b.avg));

