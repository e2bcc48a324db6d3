// Decimal helpers. The simulator keeps quantities and prices as JS numbers but snaps every value to
// its instrument step before storing it, and formats with the step's decimals, so responses carry
// Bybit-style decimal strings ("0.100", "60000.10") and float noise never reaches a client.

/** Number of decimals of a step such as "0.001" (3) or "1" (0). */
export function decimalsOf(step: string | number): number {
  const s = typeof step === 'number' ? String(step) : step;
  if (/e-/i.test(s)) return Number(s.split(/e-/i)[1]);
  const dot = s.indexOf('.');
  return dot < 0 ? 0 : s.length - dot - 1;
}

const EPS = 1e-9;

/** Snap x to a multiple of step. */
export function toStep(x: number, step: number, mode: 'floor' | 'ceil' | 'round' = 'round'): number {
  const n = x / step;
  const k = mode === 'floor' ? Math.floor(n + EPS) : mode === 'ceil' ? Math.ceil(n - EPS) : Math.round(n);
  return roundTo(k * step, decimalsOf(step) + 2);
}

/** Decimals of a number as JS prints it: 8.03 → 2, 1.5e-7 → 8, 100 → 0. */
function printedDecimals(x: number): number {
  const [mantissa, exp] = String(Math.abs(x)).toLowerCase().split('e');
  const dot = mantissa!.indexOf('.');
  const d = (dot < 0 ? 0 : mantissa!.length - dot - 1) - Number(exp ?? 0);
  return Math.max(0, d);
}

/**
 * True when x is an integer multiple of step, as decimals: both scaled to integers by the larger of
 * their printed decimals. A float quotient (x / step) is not enough: with a step of 1e-8 an amount
 * of 8.03 is 803,000,000.0000001 steps, which a fixed tolerance refused as "decimal too long".
 */
export function isMultiple(x: number, step: number): boolean {
  const d = Math.max(printedDecimals(x), printedDecimals(step));
  const xi = Math.round(x * 10 ** d);
  const si = Math.round(step * 10 ** d);
  if (si > 0 && Number.isSafeInteger(xi) && Number.isSafeInteger(si)) return xi % si === 0;
  // Beyond 2^53 once scaled: the float quotient, within its own rounding (relative to its size).
  const n = x / step;
  return Math.abs(n - Math.round(n)) < Math.max(1e-7, Math.abs(n) * 4 * Number.EPSILON);
}

export function roundTo(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round((x + Number.EPSILON * Math.sign(x)) * f) / f;
}

/** Fixed decimals, as Bybit prints qty/price fields. */
export function fix(x: number, decimals: number): string {
  const v = roundTo(x, decimals);
  return (Object.is(v, -0) ? 0 : v).toFixed(decimals);
}

/** Up to `decimals` decimals with trailing zeros removed, as Bybit prints fees and values. */
export function trim(x: number, decimals = 8): string {
  const s = fix(x, decimals);
  if (!s.includes('.')) return s;
  const t = s.replace(/0+$/, '').replace(/\.$/, '');
  return t === '-0' ? '0' : t;
}

/** Parse a Bybit numeric parameter (string or number). NaN when it is not a plain decimal. */
export function parseNum(v: unknown): number {
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v !== 'string' || !/^-?(\d+\.?\d*|\.\d+)$/.test(v.trim())) return NaN;
  return Number(v);
}
