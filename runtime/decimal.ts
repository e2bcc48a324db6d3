// Exact decimals (bigint-scaled), for money and quantities from the database strings to the
// strings that reach Bybit: no float ever touches a quantity or a price sent to the exchange. One
// module for every layer (risk rules, tracking, the reconciler, the chaos checks).
const DEC_RE = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const POW10: bigint[] = Array.from({ length: 64 }, (_, i) => 10n ** BigInt(i));
const pow10 = (n: number): bigint => POW10[n] ?? 10n ** BigInt(n);

function divRound(a: bigint, b: bigint, mode: 'floor' | 'ceil'): bigint {
  if (b === 0n) throw new RangeError('division by zero');
  const q = a / b;
  const r = a % b;
  if (r === 0n) return q;
  const negative = a < 0n !== b < 0n;
  if (mode === 'floor') return negative ? q - 1n : q;
  return negative ? q : q + 1n;
}

const PARSED = new Map<string, Dec>();
const PARSED_MAX = 50_000;
const NORM_STEPS = [16, 4, 1] as const;

/** An exact decimal: mantissa × 10^-scale. Immutable. */
export class Dec {
  private constructor(readonly m: bigint, readonly s: number) {}

  static readonly ZERO = new Dec(0n, 0);
  static readonly ONE = new Dec(1n, 0);

  /** From a decimal string (exponents allowed), a finite number (its shortest round-trip form) or a bigint. */
  static of(v: string | number | bigint | Dec): Dec {
    if (v instanceof Dec) return v;
    if (typeof v === 'bigint') return new Dec(v, 0);
    // Decs are immutable: the same decimal string (order qty, prices, filters read per record and
    // per open order) is parsed once. Bounded; cleared when full.
    if (typeof v === 'number' && !Number.isFinite(v)) throw new RangeError(`not a finite number: ${v}`);
    const key = typeof v === 'string' ? v : String(v); // a number parses as its shortest round-trip form
    const hit = PARSED.get(key);
    if (hit) return hit;
    const d = Dec.parse(key);
    if (PARSED.size >= PARSED_MAX) PARSED.clear();
    PARSED.set(key, d);
    return d;
  }

  private static parse(v: string): Dec {
    const str = v.trim();
    const m = DEC_RE.exec(str);
    if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new RangeError(`not a decimal: ${JSON.stringify(v)}`);
    const frac = m[3] ?? '';
    let mant = BigInt((m[2] || '0') + frac);
    let scale = frac.length - Number(m[4] ?? 0);
    if (scale < 0) {
      mant *= pow10(-scale);
      scale = 0;
    }
    return new Dec(m[1] === '-' ? -mant : mant, scale).norm();
  }

  static maybe(v: string | number | null | undefined): Dec | null {
    if (v === null || v === undefined || v === '') return null;
    try {
      return Dec.of(v);
    } catch {
      return null;
    }
  }

  private norm(): Dec {
    let { m, s } = this;
    if (m === 0n) return s === 0 ? this : Dec.ZERO;
    if (s === 0 || m % 10n !== 0n) return this;
    // Strip trailing zeros in big steps first (products of scaled values carry dozens of them).
    for (const k of NORM_STEPS) {
      const p = POW10[k]!;
      while (s >= k && m % p === 0n) {
        m /= p;
        s -= k;
      }
    }
    return m === this.m ? this : new Dec(m, s);
  }

  private static align(a: Dec, b: Dec): [bigint, bigint, number] {
    const s = Math.max(a.s, b.s);
    return [a.m * pow10(s - a.s), b.m * pow10(s - b.s), s];
  }

  add(o: Dec | string | number): Dec {
    const [a, b, s] = Dec.align(this, Dec.of(o));
    return new Dec(a + b, s).norm();
  }
  sub(o: Dec | string | number): Dec {
    const [a, b, s] = Dec.align(this, Dec.of(o));
    return new Dec(a - b, s).norm();
  }
  mul(o: Dec | string | number): Dec {
    const d = Dec.of(o);
    return new Dec(this.m * d.m, this.s + d.s).norm();
  }
  /** this / o, to `scale` decimals, rounded toward -∞ (floor) or +∞ (ceil). */
  div(o: Dec | string | number, scale = 18, mode: 'floor' | 'ceil' = 'floor'): Dec {
    const d = Dec.of(o);
    return new Dec(divRound(this.m * pow10(scale + d.s), d.m * pow10(this.s), mode), scale).norm();
  }
  /** The largest multiple of `step` ≤ this. */
  floorTo(step: Dec | string): Dec {
    const st = Dec.of(step);
    if (st.m <= 0n) throw new RangeError(`step must be > 0, got ${st}`);
    const [a, b] = Dec.align(this, st);
    return new Dec(divRound(a, b, 'floor') * st.m, st.s).norm();
  }
  /** The smallest multiple of `step` ≥ this. */
  ceilTo(step: Dec | string): Dec {
    const st = Dec.of(step);
    if (st.m <= 0n) throw new RangeError(`step must be > 0, got ${st}`);
    const [a, b] = Dec.align(this, st);
    return new Dec(divRound(a, b, 'ceil') * st.m, st.s).norm();
  }
  cmp(o: Dec | string | number): -1 | 0 | 1 {
    const [a, b] = Dec.align(this, Dec.of(o));
    return a < b ? -1 : a > b ? 1 : 0;
  }
  lt(o: Dec | string | number): boolean {
    return this.cmp(o) < 0;
  }
  lte(o: Dec | string | number): boolean {
    return this.cmp(o) <= 0;
  }
  gt(o: Dec | string | number): boolean {
    return this.cmp(o) > 0;
  }
  gte(o: Dec | string | number): boolean {
    return this.cmp(o) >= 0;
  }
  isZero(): boolean {
    return this.m === 0n;
  }
  isPos(): boolean {
    return this.m > 0n;
  }
  neg(): Dec {
    return new Dec(-this.m, this.s);
  }
  abs(): Dec {
    return this.m < 0n ? this.neg() : this;
  }
  static min(a: Dec, b: Dec): Dec {
    return a.lte(b) ? a : b;
  }
  static max(a: Dec, b: Dec): Dec {
    return a.gte(b) ? a : b;
  }
  /** Plain decimal notation, no exponent, no trailing zeros ("0.05", "12", "-3.1"). */
  toString(): string {
    const neg = this.m < 0n;
    const digits = (neg ? -this.m : this.m).toString().padStart(this.s + 1, '0');
    const int = digits.slice(0, digits.length - this.s);
    const frac = this.s > 0 ? `.${digits.slice(digits.length - this.s)}` : '';
    return `${neg ? '-' : ''}${int}${frac}`;
  }
  toJSON(): string {
    return this.toString();
  }
  /** For logs and ratios only; never for a quantity or price that is sent anywhere. */
  toNumber(): number {
    return Number(this.toString());
  }
}

