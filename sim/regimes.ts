// Market regimes of the pattern mode, and what a trader can expect to earn in each.
//
// A model is worth its costs only where the market holds a move that is both predictable from the
// past and larger than a round trip's fees and spread. These regimes make that explicit:
//  - momentum-noise: the original planted pattern (AR(1) momentum on returns alternating with
//                    noise). Its predictable moves are about a basis point: direction is learnable,
//                    money after costs is not.
//  - learnable:      blocks of `blockSteps` steps, each with a constant drift of ±`drift` per step
//                    (sign drawn per block, independent of the others) under noise `volatility`.
//                    Over the model's horizon the planted move exceeds round-trip costs, and the
//                    recent returns reveal its sign.
//  - noise:          a random walk with the same variance over the horizon as `learnable` (so the
//                    same oracle P&L) and nothing to predict.
//  - trend-revert:   the blocks come in pairs: a trend of ±drift, then the same drift reversed
//                    (the price goes back where the trend began).
// Block signs are a hash of (seed, symbol, block index), not draws from the price stream: the
// stream is consumed exactly as in the other pattern regimes, and a restored process needs no
// extra state to continue.

export const PATTERN_REGIMES = ['momentum-noise', 'learnable', 'noise', 'trend-revert'] as const;
export type PatternRegime = (typeof PATTERN_REGIMES)[number];

export interface BlockRegimeParams {
  /** Planted log-drift per step while a block runs (fraction: 0.00006 = 0.6 bp). */
  drift: number;
  /** Stdev of the noise part of each step's log-return (fraction). */
  volatility: number;
  /** Steps per block. */
  blockSteps: number;
}

/**
 * The block regimes' parameters, tuned for the model's default horizon (60 s = 60 one-second steps)
 * and the simulator's costs (docs in sim/README.md, "Pattern regimes"). The noise regime's
 * volatility gives it the horizon variance of `learnable` (35.6 bps), so a look-ahead oracle earns
 * about the same in both and only the predictability differs.
 */
export const BLOCK_REGIMES: Record<'learnable' | 'noise' | 'trend-revert', BlockRegimeParams> = {
  learnable: { drift: 0.00006, volatility: 0.0001, blockSteps: 300 },
  noise: { drift: 0, volatility: 0.00046, blockSteps: 300 },
  'trend-revert': { drift: 0.00006, volatility: 0.0001, blockSteps: 300 },
};

/** Round-trip costs in the simulator, bps of notional: two taker fees plus the 2 bp spread (half on each side). */
export const ROUND_TRIP_COST_BPS = { spot: 2 * 10 + 2, linear: 2 * 5.5 + 2 } as const;

/** ±1 of a block, from the seed, the symbol's stream number and the block index (a 32-bit mix). */
export function blockSign(seed: number, stream: number, block: number): 1 | -1 {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(stream, 0x85ebca6b) ^ Math.imul(block + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h & 1) === 0 ? 1 : -1;
}

/**
 * Planted drift of step `index` (the log-return's mean for that step) in a block regime. `signOf`
 * gives a block's independent sign (blockSign bound to a seed and symbol).
 */
export function plantedDrift(regime: PatternRegime, index: number, signOf: (block: number) => 1 | -1): number {
  if (regime !== 'learnable' && regime !== 'trend-revert') return 0;
  const p = BLOCK_REGIMES[regime];
  const block = Math.floor(index / p.blockSteps);
  return p.drift * blockDirection(regime, block, signOf);
}

/** Direction of a block: its own sign (learnable); in trend-revert the even block's sign, reversed in the odd one. */
export function blockDirection(regime: PatternRegime, block: number, signOf: (block: number) => 1 | -1): number {
  if (regime === 'learnable') return signOf(block);
  if (regime === 'trend-revert') {
    const trend = block - (block % 2);
    return block % 2 === 0 ? signOf(trend) : -signOf(trend);
  }
  return 0;
}

/** Label of the regime at a step, for /sim/state and tests. */
export function regimeLabel(regime: PatternRegime, index: number, signOf: (block: number) => 1 | -1): string {
  if (regime === 'noise') return 'noise';
  const p = BLOCK_REGIMES[regime as 'learnable' | 'trend-revert'];
  const block = Math.floor(index / p.blockSteps);
  const dir = blockDirection(regime, block, signOf) > 0 ? 'up' : 'down';
  if (regime === 'learnable') return `learnable-${dir}`;
  return `${block % 2 === 0 ? 'trend' : 'revert'}-${dir}`;
}

/**
 * What the price has told a trader about the planted drift of `block` once step `known` is done:
 * the blocks that have begun, and in trend-revert the reversal of a trend that has begun. Returns
 * the direction, or 0 when it is still a coin flip.
 */
export function knownDirection(regime: PatternRegime, block: number, knownBlock: number, signOf: (block: number) => 1 | -1): number {
  if (regime === 'learnable') return block <= knownBlock ? signOf(block) : 0;
  if (regime === 'trend-revert') {
    const trend = block - (block % 2);
    return trend <= knownBlock ? blockDirection(regime, block, signOf) : 0;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Expected P&L per trade, analytically

/** erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
function erf(x: number): number {
  const s = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

/** E|X| for X ~ N(m, s²): the mean of a folded normal. */
export function foldedNormalMean(m: number, s: number): number {
  if (s <= 0) return Math.abs(m);
  return s * Math.sqrt(2 / Math.PI) * Math.exp(-(m * m) / (2 * s * s)) + m * erf(m / (s * Math.SQRT2));
}

export interface ExpectedPnl {
  /** Knows the sign of the next horizon's move (a look-ahead oracle). */
  perfect: number;
  /** Knows the planted drift as far as the past reveals it (blocks begun), trades its sign (a coin flip on 0). */
  informed: number;
  /** A coin flip. */
  random: number;
  /** Stdev of the horizon's log-return, bps. */
  horizonStdBps: number;
  /** Signal-to-noise: stdev of the planted part of the horizon's move over the noise part's. */
  snr: number;
}

/**
 * Expected P&L per round trip, bps of notional, of a trader who enters after a step and exits
 * `h` steps later (h ≤ blockSteps), paying `costBps` (fees + spread) per round trip; entry steps
 * uniform over the block cycle. In log-returns: the simulator's simple-return P&L differs by
 * O(move²), under 0.2 bp here.
 */
export function expectedPnlBps(regime: Exclude<PatternRegime, 'momentum-noise'>, h: number, costBps: number): ExpectedPnl {
  const p = BLOCK_REGIMES[regime];
  const B = p.blockSteps;
  if (h > B) throw new Error(`horizon ${h} longer than a block (${B})`);
  const mu = p.drift * 1e4;
  const s = p.volatility * 1e4 * Math.sqrt(h);
  let perfect = 0, informed = 0, n = 0, m2 = 0;
  // A cycle of two blocks covers both regimes' structure (in learnable the pair is just two blocks).
  for (let t = 0; t < 2 * B; t++) {
    const first = Math.floor((t + 1) / B); // block of the first step held
    const n1 = Math.min(h, (first + 1) * B - (t + 1));
    const n2 = h - n1;
    const known = Math.floor(t / B); // block of the step just done
    // Every sign combination of the blocks involved, equally likely: blocks 0..3 of the cycle.
    for (let combo = 0; combo < 4; combo++) {
      const signs = [combo & 1 ? -1 : 1, combo & 2 ? -1 : 1] as const;
      // Block k's sign: learnable, independent per block (k=0,1 take the two bits, k=2 = pattern of k=0
      // shifted: independence only matters for the two blocks a horizon touches).
      const signOf = (k: number): 1 | -1 => (regime === 'learnable' ? (signs[k % 2]!) : (signs[Math.floor(k / 2) % 2]!));
      const d1 = blockDirection(regime, first, signOf) * mu;
      const d2 = blockDirection(regime, first + 1, signOf) * mu;
      const m = regime === 'noise' ? 0 : d1 * n1 + d2 * n2;
      const e1 = knownDirection(regime, first, known, signOf) * mu;
      const e2 = knownDirection(regime, first + 1, known, signOf) * mu;
      const mhat = regime === 'noise' ? 0 : e1 * n1 + e2 * n2;
      perfect += foldedNormalMean(m, s);
      informed += Math.sign(mhat) * m; // a coin flip on 0: expected 0
      m2 += m * m;
      n++;
    }
  }
  return {
    perfect: perfect / n - costBps,
    informed: informed / n - costBps,
    random: -costBps,
    horizonStdBps: Math.sqrt(s * s + m2 / n),
    snr: Math.sqrt(m2 / n) / s,
  };
}
