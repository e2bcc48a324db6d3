// Mini-batch training of the learner's MLP (dense ReLU -> dense ReLU -> dense sigmoid, L2 on the
// kernels, binary cross-entropy, Adam) on plain Float64Arrays: the same computation tf.js performs
// in `model.fit` / `optimizer.minimize` for this model (forward pass, the clipped cross-entropy's
// gradient, ReLU masks, the L2 penalty's 2·l2·W, Adam with tf.js's bias correction and epsilon),
// without allocating a tensor, a tape or a closure per operation. For this tiny model tf.js's
// per-op overhead dominated a retraining (seconds per epoch) and its per-batch garbage grew the
// heap by ~25 MB per epoch of 75k samples before V8 collected it; here a batch allocates nothing.
// Weights are read from and written back to the tf.js model (which keeps serving predictions and
// (de)serialisation); Adam's moments live with the model object across calls, as tf.js's do.
import type * as tfTypes from '@tensorflow/tfjs';
import type { Tf } from './tf.ts';

interface AdamState {
  accBeta1: number;
  accBeta2: number;
  m: Float64Array[];
  v: Float64Array[];
}

export interface MlpPlan {
  /** Layer widths: input, hidden 1, hidden 2, output (1). */
  dims: [number, number, number, number];
  /** L2 factor of each layer's kernel. */
  l2: [number, number, number];
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

const adamStates = new WeakMap<tfTypes.LayersModel, AdamState>();

/** Widths and L2 factors when the model is exactly the learner's MLP (dense ReLU, ReLU, sigmoid), else null. */
export function mlpShape(model: tfTypes.LayersModel): Pick<MlpPlan, 'dims' | 'l2'> | null {
  const layers = model.layers;
  if (layers.length !== 3) return null;
  const acts = ['relu', 'relu', 'sigmoid'];
  const l2: number[] = [];
  const dims: number[] = [];
  for (const [i, layer] of layers.entries()) {
    const c = layer.getConfig() as Record<string, unknown>;
    if (layer.getClassName() !== 'Dense' || c.activation !== acts[i] || c.useBias === false) return null;
    if (c.biasRegularizer || c.activityRegularizer || c.kernelConstraint || c.biasConstraint) return null;
    const reg = c.kernelRegularizer as { className?: string; config?: { l1?: number; l2?: number } } | null | undefined;
    if (reg && (reg.className !== 'L1L2' || (reg.config?.l1 ?? 0) !== 0)) return null;
    l2.push(reg ? (reg.config?.l2 ?? 0) : 0);
    const w = layer.getWeights();
    if (w.length !== 2 || w[0]!.shape.length !== 2) return null;
    if (i === 0) dims.push(w[0]!.shape[0]!);
    else if (w[0]!.shape[0] !== dims[i]) return null;
    dims.push(w[0]!.shape[1]!);
  }
  if (dims[3] !== 1) return null;
  return { dims: dims as MlpPlan['dims'], l2: l2 as MlpPlan['l2'] };
}

/** The plan when the model is exactly the learner's MLP with an Adam optimizer, else null (use tf.js). */
export function mlpPlan(model: tfTypes.LayersModel): MlpPlan | null {
  const shape = mlpShape(model);
  if (!shape) return null;
  const opt = model.optimizer as (tfTypes.Optimizer & { getConfig(): Record<string, unknown> }) | undefined;
  if (!opt || opt.getClassName() !== 'Adam') return null;
  const oc = opt.getConfig();
  return { ...shape, lr: Number(oc.learningRate), beta1: Number(oc.beta1), beta2: Number(oc.beta2), epsilon: Number(oc.epsilon) };
}

interface Forward {
  dims: MlpPlan['dims'];
  P: Float64Array[];
  z1: Float64Array;
  z2: Float64Array;
}
const forwards = new WeakMap<tfTypes.LayersModel, Forward | null>();

/** Forget the cached weights of a model (after its weights changed). */
export function invalidateForward(model: tfTypes.LayersModel): void {
  forwards.delete(model);
}

/**
 * P(up) of one normalised feature row by the learner's MLP, computed in plain JS from the model's
 * weights (cached until invalidateForward): a few microseconds instead of tf.js's tensor set-up per
 * call; the result is rounded to float32 as tf.js's output is. Null when the model is another shape.
 */
export function mlpForward(model: tfTypes.LayersModel): ((x: readonly number[]) => number) | null {
  let f = forwards.get(model);
  if (f === undefined) {
    const shape = mlpShape(model);
    f = shape ? { dims: shape.dims, P: model.getWeights().map((w) => Float64Array.from(w.dataSync() as Float32Array)), z1: new Float64Array(shape.dims[1]), z2: new Float64Array(shape.dims[2]) } : null;
    forwards.set(model, f);
  }
  if (!f) return null;
  const { dims, P, z1, z2 } = f;
  const [d, h1, h2] = dims;
  const [k1, b1, k2, b2, k3, b3] = P as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  return (x) => {
    for (let o = 0; o < h1; o++) {
      let s = b1[o]!;
      for (let i = 0; i < d; i++) s += Math.fround(x[i]!) * k1[i * h1 + o]!;
      z1[o] = s;
    }
    for (let o = 0; o < h2; o++) {
      let s = b2[o]!;
      for (let i = 0; i < h1; i++) if (z1[i]! > 0) s += z1[i]! * k2[i * h2 + o]!;
      z2[o] = s;
    }
    let z3 = b3[0]!;
    for (let i = 0; i < h2; i++) if (z2[i]! > 0) z3 += z2[i]! * k3[i]!;
    return Math.fround(1 / (1 + Math.exp(-z3)));
  };
}

/**
 * Trains `model` in place: for each epoch, `order(epoch, xe, ye)` fills xe (rows x inputs) and ye
 * with that epoch's samples in order; batches of `batchSize` consecutive rows. Yields to the event
 * loop through `pause` (called after every batch, it decides when to actually yield).
 */
export async function trainMlp(
  tf: Tf,
  model: tfTypes.LayersModel,
  plan: MlpPlan,
  n: number,
  epochs: number,
  batchSize: number,
  order: (epoch: number, xe: Float32Array, ye: Float32Array) => void,
  pause: () => Promise<void> | undefined,
  onEpoch?: (epoch: number, loss: number) => void,
): Promise<void> {
  const [d, h1, h2] = plan.dims;
  const weights = model.getWeights();
  const shapes = weights.map((w) => w.shape);
  const P = weights.map((w) => Float64Array.from(w.dataSync() as Float32Array));
  const [k1, b1, k2, b2, k3, b3] = P as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  let st = adamStates.get(model);
  if (!st) adamStates.set(model, (st = { accBeta1: plan.beta1, accBeta2: plan.beta2, m: P.map((p) => new Float64Array(p.length)), v: P.map((p) => new Float64Array(p.length)) }));
  const G = P.map((p) => new Float64Array(p.length));
  const [g1, gb1, g2, gb2, g3, gb3] = G as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  const bs = Math.max(1, Math.floor(batchSize));
  const z1 = new Float64Array(bs * h1);
  const z2 = new Float64Array(bs * h2);
  const dz1 = new Float64Array(h1);
  const dz2 = new Float64Array(h2);
  const xe = new Float32Array(n * d);
  const ye = new Float32Array(n);
  const eps = plan.epsilon;
  const kernels: Array<[Float64Array, Float64Array, number]> = [[k1, g1, plan.l2[0]], [k2, g2, plan.l2[1]], [k3, g3, plan.l2[2]]];
  for (let e = 0; e < epochs; e++) {
    order(e, xe, ye);
    let lossSum = 0;
    for (let start = 0; start < n; start += bs) {
      const m = Math.min(n, start + bs) - start;
      for (const g of G) g.fill(0);
      let loss = 0;
      for (let r = 0; r < m; r++) {
        const xo = (start + r) * d;
        // Forward.
        const o1 = r * h1;
        for (let o = 0; o < h1; o++) {
          let s = b1[o]!;
          for (let i = 0; i < d; i++) s += xe[xo + i]! * k1[i * h1 + o]!;
          z1[o1 + o] = s;
        }
        const o2 = r * h2;
        for (let o = 0; o < h2; o++) {
          let s = b2[o]!;
          for (let i = 0; i < h1; i++) {
            const a = z1[o1 + i]!;
            if (a > 0) s += a * k2[i * h2 + o]!;
          }
          z2[o2 + o] = s;
        }
        let z3 = b3[0]!;
        for (let i = 0; i < h2; i++) {
          const a = z2[o2 + i]!;
          if (a > 0) z3 += a * k3[i]!;
        }
        const p = 1 / (1 + Math.exp(-z3));
        const y = ye[start + r]!;
        // Binary cross-entropy on the clipped probability (tf.js: clip to [eps, 1 - eps], logits, sigmoid CE).
        const pc = Math.min(1 - eps, Math.max(eps, p));
        const l = Math.log(pc / (1 - pc));
        loss += Math.max(l, 0) - l * y + Math.log1p(Math.exp(-Math.abs(l)));
        // d(mean loss)/dz3: (p - y) / m inside the clip range, 0 where the clip is active.
        const dz3 = p >= eps && p <= 1 - eps ? (p - y) / m : 0;
        if (dz3 === 0) continue;
        // Backward.
        gb3[0]! += dz3;
        for (let i = 0; i < h2; i++) {
          const a = z2[o2 + i]!;
          if (a > 0) {
            g3[i]! += a * dz3;
            dz2[i] = dz3 * k3[i]!;
          } else dz2[i] = 0;
        }
        for (let o = 0; o < h2; o++) gb2[o]! += dz2[o]!;
        for (let i = 0; i < h1; i++) {
          const a = z1[o1 + i]!;
          if (a > 0) {
            let s = 0;
            const row = i * h2;
            for (let o = 0; o < h2; o++) {
              const g = dz2[o]!;
              g2[row + o]! += a * g;
              s += g * k2[row + o]!;
            }
            dz1[i] = s;
          } else dz1[i] = 0;
        }
        for (let o = 0; o < h1; o++) {
          const g = dz1[o]!;
          if (g === 0) continue;
          gb1[o]! += g;
          for (let i = 0; i < d; i++) g1[i * h1 + o]! += xe[xo + i]! * g;
        }
      }
      loss /= m;
      // L2 penalties: l2 * sum(W^2) in the loss, 2 * l2 * W in the gradient.
      for (const [k, g, l2] of kernels) {
        if (l2 === 0) continue;
        let s = 0;
        for (let i = 0; i < k.length; i++) {
          s += k[i]! * k[i]!;
          g[i]! += 2 * l2 * k[i]!;
        }
        loss += l2 * s;
      }
      // Adam (tf.js's form: bias-corrected moments, epsilon added to the root).
      const c1 = 1 - st.accBeta1;
      const c2 = 1 - st.accBeta2;
      for (let j = 0; j < P.length; j++) {
        const w = P[j]!;
        const g = G[j]!;
        const mj = st.m[j]!;
        const vj = st.v[j]!;
        for (let i = 0; i < w.length; i++) {
          const gi = g[i]!;
          mj[i] = plan.beta1 * mj[i]! + (1 - plan.beta1) * gi;
          vj[i] = plan.beta2 * vj[i]! + (1 - plan.beta2) * gi * gi;
          w[i]! -= (plan.lr * (mj[i]! / c1)) / (Math.sqrt(vj[i]! / c2) + eps);
        }
      }
      st.accBeta1 *= plan.beta1;
      st.accBeta2 *= plan.beta2;
      lossSum += loss * m;
      const wait = pause();
      if (wait) await wait;
    }
    onEpoch?.(e + 1, lossSum / n);
  }
  const next = P.map((p, j) => tf.tensor(Float32Array.from(p), shapes[j]!));
  try {
    model.setWeights(next);
    invalidateForward(model);
  } finally {
    next.forEach((t) => t.dispose());
  }
}
