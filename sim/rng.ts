// Seeded pseudo-random numbers (sfc32 seeded through splitmix32). Separate streams are derived from
// one seed so the price path never depends on order flow or on fault draws. An optional key (four
// 32-bit words) is mixed into the whole 128-bit state: the id streams are keyed with a per-start
// instance nonce, so a restart from the same seed never hands out the same ids again.

function splitmix32(a: number): () => number {
  return () => {
    a |= 0;
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    t ^= t >>> 15;
    return t >>> 0;
  };
}

/** Everything needed to continue a stream exactly (persisted for the price process). */
export interface RngState {
  a: number;
  b: number;
  c: number;
  d: number;
  spare: number | null;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(seed: number, stream = 0, key?: readonly [number, number, number, number]) {
    const sm = splitmix32((seed * 0x2545f491) ^ (stream * 0x9e3779b1));
    this.a = sm() ^ (key?.[0] ?? 0);
    this.b = sm() ^ (key?.[1] ?? 0);
    this.c = sm() ^ (key?.[2] ?? 0);
    this.d = sm() ^ (key?.[3] ?? 0);
    for (let i = 0; i < 12; i++) this.u32();
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(0);
    Object.assign(r, { a: s.a, b: s.b, c: s.c, d: s.d, spare: s.spare });
    return r;
  }

  state(): RngState {
    return { a: this.a, b: this.b, c: this.c, d: this.d, spare: this.spare };
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Standard normal (Box-Muller, cached pair). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Deterministic RFC-4122-shaped id. */
  uuid(): string {
    const h = (n: number) => n.toString(16).padStart(8, '0');
    const s = h(this.u32()) + h(this.u32()) + h(this.u32()) + h(this.u32());
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-${'89ab'[this.u32() % 4]}${s.slice(17, 20)}-${s.slice(20, 32)}`;
  }
}
