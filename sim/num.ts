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

/** True when x is (within float noise) an integer multiple of step. */
export function isMultiple(x: number, step: number): boolean {
  const n = x / step;
  return Math.abs(n - Math.round(n)) < 1e-7;
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
