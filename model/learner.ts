// The learner: a small MLP (features -> 2 hidden ReLU layers -> sigmoid) giving P(market up over
// the horizon). Full training on a time-ordered sample set with a held-out tail, online fine-tuning
// on new samples, and (de)serialisation of the tf.js artifacts for model_versions. Deterministic for
// a given seed and data: seeded initialisers, our own seeded shuffling, CPU kernels.
import type * as tfTypes from '@tensorflow/tfjs';
import { FEATURE_NAMES, FEATURE_SPEC_ID, IGNORED_FEATURES, fitNormaliser, normalise, type FeatureSpec } from './features.ts';
import { invalidateForward, mlpForward, mlpPlan, trainMlp } from './mlp-train.ts';
import { SeededRng } from './rng.ts';
import type { Tf } from './tf.ts';

export interface LearnerConfig {
  hiddenUnits: number;
  /** L2 penalty on every kernel (keeps a small model from fitting noise). */
  l2: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  lookback: number;
  horizonMs: number;
  /** 'auto' (default): the allocation-free MLP trainer (model/mlp-train.ts) when the model is the learner's MLP; 'tfjs': tf.js ops (reference). */
  trainer?: 'auto' | 'tfjs';
}

export interface LabelledRow {
  features: number[];
  label: 0 | 1;
  market_return_bps: number;
  ts: number;
  /** For costs per asset (model/money.ts); absent in synthetic rows. */
  asset?: string;
  /** The window's own execution when something filled: side, stored reward, fee and slippage it paid (bps). */
  exec?: { side: 1 | -1; reward_bps: number; fee_bps: number | null; slippage_bps: number | null } | null;
}

export interface TrainedModel {
  spec: FeatureSpec;
  model: tfTypes.LayersModel;
  predict(rows: readonly number[][]): number[];
}

export interface ModelArtifacts {
  topology: unknown;
  weightSpecs: unknown[];
  weights: Buffer;
  featureSpec: FeatureSpec;
}

function build(tf: Tf, cfg: LearnerConfig): tfTypes.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.dense({ units: cfg.hiddenUnits, activation: 'relu', inputShape: [FEATURE_NAMES.length], kernelInitializer: tf.initializers.glorotUniform({ seed: cfg.seed }), kernelRegularizer: tf.regularizers.l2({ l2: cfg.l2 }), biasInitializer: 'zeros' }));
  m.add(tf.layers.dense({ units: cfg.hiddenUnits, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: cfg.seed + 1 }), kernelRegularizer: tf.regularizers.l2({ l2: cfg.l2 }), biasInitializer: 'zeros' }));
  m.add(tf.layers.dense({ units: 1, activation: 'sigmoid', kernelInitializer: tf.initializers.glorotUniform({ seed: cfg.seed + 2 }), kernelRegularizer: tf.regularizers.l2({ l2: cfg.l2 }), biasInitializer: 'zeros' }));
  compile(tf, m, cfg.learningRate);
  return m;
}

function compile(tf: Tf, m: tfTypes.LayersModel, lr: number): void {
  m.compile({ optimizer: tf.train.adam(lr), loss: 'binaryCrossentropy' });
}

function wrap(tf: Tf, model: tfTypes.LayersModel, spec: FeatureSpec): TrainedModel {
  return {
    spec,
    model,
    predict: (rows) => {
      if (rows.length === 0) return [];
      // The learner's MLP in plain JS (model/mlp-train.ts); any other model through tf.js.
      const forward = mlpForward(model);
      if (forward) return rows.map((r) => forward(normalise(r, spec)));
      return tf.tidy(() => {
        const x = tf.tensor2d(rows.map((r) => normalise(r, spec)), [rows.length, FEATURE_NAMES.length]);
        return Array.from((model.predict(x) as tfTypes.Tensor).dataSync());
      });
    },
  };
}

/** Longest stretch of synchronous training before yielding to the event loop (Kafka heartbeats, timers). */
const YIELD_EVERY_MS = 20;
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Mini-batch training, the same computation as `model.fit(x, y, { batchSize, shuffle: false })`
 * per epoch (mean binary cross-entropy of the batch plus the kernels' L2 penalties, one Adam step
 * per batch, batches in our seeded shuffled order), without its per-batch overhead: the samples
 * are normalised once into one Float32Array, each epoch's order is copied into a second one that
 * is reused. The learner's MLP trains in model/mlp-train.ts (no tensors per batch); any other
 * model (or trainer 'tfjs') with tf.js ops, every batch's tensors inside a tidy. Memory is
 * O(samples x features) floats instead of JS arrays of arrays rebuilt every epoch plus fit's
 * per-batch garbage.
 */
async function fitEpochs(tf: Tf, model: tfTypes.LayersModel, rows: readonly LabelledRow[], spec: FeatureSpec, epochs: number, batchSize: number, rng: SeededRng, onEpoch?: (epoch: number, loss: number) => void, trainer: 'auto' | 'tfjs' = 'auto'): Promise<void> {
  const n = rows.length;
  const d = FEATURE_NAMES.length;
  const x = new Float32Array(n * d);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x.set(normalise(rows[i]!.features, spec), i * d);
    y[i] = rows[i]!.label;
  }
  const idx = rows.map((_, i) => i);
  // Each epoch: our seeded shuffle, the samples copied in that order.
  const order = (_epoch: number, xe: Float32Array, ye: Float32Array) => {
    rng.shuffle(idx);
    for (let k = 0; k < n; k++) {
      const i = idx[k]!;
      xe.set(x.subarray(i * d, i * d + d), k * d);
      ye[k] = y[i]!;
    }
  };
  let lastYield = performance.now();
  const pause = () => {
    if (performance.now() - lastYield < YIELD_EVERY_MS) return undefined;
    return yieldToLoop().then(() => void (lastYield = performance.now()));
  };
  const plan = trainer === 'auto' ? mlpPlan(model) : null;
  if (plan) {
    await trainMlp(tf, model, plan, n, epochs, batchSize, order, pause, onEpoch);
    return;
  }
  invalidateForward(model);
  // Any other model: the same loop on tf.js ops.
  const xe = new Float32Array(n * d);
  const ye = new Float32Array(n);
  const optimizer = model.optimizer;
  const vars = model.trainableWeights.map((w) => w.read() as tfTypes.Variable);
  const bs = Math.max(1, Math.floor(batchSize));
  for (let e = 0; e < epochs; e++) {
    order(e, xe, ye);
    let lossSum = 0;
    for (let start = 0; start < n; start += bs) {
      const end = Math.min(n, start + bs);
      const size = end - start;
      const cost = tf.tidy(() => {
        const xb = tf.tensor2d(xe.subarray(start * d, end * d), [size, d]);
        const yb = tf.tensor2d(ye.subarray(start, end), [size, 1]);
        return optimizer.minimize(
          () => {
            const p = model.apply(xb, { training: true }) as tfTypes.Tensor;
            let loss = tf.mean(tf.metrics.binaryCrossentropy(yb, p)) as tfTypes.Scalar;
            for (const r of model.calculateLosses()) loss = tf.add(loss, r);
            return loss;
          },
          onEpoch !== undefined,
          vars,
        ) ?? undefined;
      });
      if (cost) {
        lossSum += cost.dataSync()[0]! * size;
        cost.dispose();
      }
      const wait = pause();
      if (wait) await wait;
    }
    onEpoch?.(e + 1, lossSum / n);
    invalidateForward(model);
  }
}

/** Train a fresh model on `rows` (normalisation fitted on them). */
export async function train(tf: Tf, rows: readonly LabelledRow[], cfg: LearnerConfig, onEpoch?: (epoch: number, loss: number) => void): Promise<TrainedModel> {
  if (rows.length === 0) throw new Error('no training rows');
  const norm = fitNormaliser(rows.map((r) => r.features));
  const spec: FeatureSpec = { id: FEATURE_SPEC_ID, names: [...FEATURE_NAMES], lookback: cfg.lookback, horizonMs: cfg.horizonMs, ...norm, ignored: [...IGNORED_FEATURES] };
  const model = build(tf, cfg);
  await fitEpochs(tf, model, rows, spec, cfg.epochs, cfg.batchSize, new SeededRng(cfg.seed), onEpoch, cfg.trainer);
  return wrap(tf, model, spec);
}

/** Online update: one epoch over new rows, in place (normalisation unchanged). */
export async function fineTune(tf: Tf, m: TrainedModel, rows: readonly LabelledRow[], cfg: Pick<LearnerConfig, 'batchSize' | 'seed' | 'trainer'>): Promise<void> {
  if (rows.length === 0) return;
  await fitEpochs(tf, m.model, rows, m.spec, 1, cfg.batchSize, new SeededRng(cfg.seed ^ rows.length), undefined, cfg.trainer);
}

/**
 * Chronological split: the newest `holdoutFraction` held out. With `purgeMs` (the label horizon),
 * training rows whose label reaches the first held-out window (ts + purgeMs >= its ts) are dropped:
 * their labels are the market's move over time the held-out windows are judged on, and a candidate
 * trained on them would be scored on a future it saw.
 */
export function timeSplit<T extends { ts: number }>(rows: readonly T[], holdoutFraction: number, purgeMs = 0): { train: T[]; holdout: T[] } {
  const sorted = [...rows].sort((a, b) => a.ts - b.ts);
  const cut = Math.floor(sorted.length * (1 - holdoutFraction));
  const holdout = sorted.slice(cut);
  const first = holdout[0]?.ts ?? Infinity;
  let end = cut;
  while (purgeMs > 0 && end > 0 && sorted[end - 1]!.ts + purgeMs >= first) end--;
  return { train: sorted.slice(0, end), holdout };
}

export async function toArtifacts(tf: Tf, m: TrainedModel): Promise<ModelArtifacts> {
  let saved: tfTypes.io.ModelArtifacts | null = null;
  await m.model.save(
    tf.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  const a = saved as tfTypes.io.ModelArtifacts | null;
  if (!a || !a.weightData) throw new Error('model save produced no weights');
  const wd = a.weightData;
  const buf = Array.isArray(wd) ? tf.io.concatenateArrayBuffers(wd) : wd;
  return { topology: a.modelTopology, weightSpecs: a.weightSpecs ?? [], weights: Buffer.from(new Uint8Array(buf)), featureSpec: m.spec };
}

export async function fromArtifacts(tf: Tf, a: ModelArtifacts, learningRate: number): Promise<TrainedModel> {
  const weightData = a.weights.buffer.slice(a.weights.byteOffset, a.weights.byteOffset + a.weights.byteLength) as ArrayBuffer;
  const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: a.topology as object, weightSpecs: a.weightSpecs as tfTypes.io.WeightsManifestEntry[], weightData }));
  compile(tf, model, learningRate);
  return wrap(tf, model, a.featureSpec);
}
