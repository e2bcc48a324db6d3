// The allocation-free MLP trainer computes what tf.js computes: the same data, seed and settings
// trained with it and with tf.js's own ops (optimizer.minimize on the model, the 'tfjs' trainer)
// give the same epoch losses and predictions up to float32 rounding; fine-tuning continues Adam;
// the plain-JS forward pass used by predict equals tf.js's model.predict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTf } from '../../model/tf.ts';
import type * as tfTypes from '@tensorflow/tfjs';
import { fineTune, train, type LabelledRow, type LearnerConfig } from '../../model/learner.ts';
import { FEATURE_NAMES, normalise } from '../../model/features.ts';
import { SeededRng } from '../../model/rng.ts';

function rows(n: number, seed: number): LabelledRow[] {
  const rng = new SeededRng(seed);
  return Array.from({ length: n }, (_, i) => {
    const f = FEATURE_NAMES.map(() => rng.next() * 4 - 2);
    const up = f[0]! - 0.5 * f[5]! + (rng.next() - 0.5) > 0;
    return { features: f, label: up ? 1 : 0, market_return_bps: up ? 3 : -3, ts: i };
  });
}

test('the MLP trainer matches tf.js (losses, predictions, fine-tuning)', async () => {
  const { tf } = await loadTf(false);
  const cfg: LearnerConfig = { hiddenUnits: 8, l2: 0.003, epochs: 3, batchSize: 50, learningRate: 0.01, seed: 3, lookback: 20, horizonMs: 1000 };
  const data = rows(1_030, 5); // a last partial batch too
  const losses = { auto: [] as number[], tfjs: [] as number[] };
  const fast = await train(tf, data, cfg, (_, l) => losses.auto.push(l));
  const ref = await train(tf, data, { ...cfg, trainer: 'tfjs' }, (_, l) => losses.tfjs.push(l));
  assert.equal(losses.auto.length, 3);
  for (let e = 0; e < 3; e++) assert.ok(Math.abs(losses.auto[e]! - losses.tfjs[e]!) < 1e-4, `epoch ${e + 1}: ${losses.auto[e]} vs ${losses.tfjs[e]}`);
  assert.ok(losses.auto[2]! < losses.auto[0]!, 'it learns');
  const probe = rows(200, 9).map((r) => r.features);
  const close = (a: number[], b: number[], tol: number) => a.every((x, i) => Math.abs(x - b[i]!) < tol);
  assert.ok(close(fast.predict(probe), ref.predict(probe), 1e-3), 'same predictions');
  // Fine-tuning continues from the same weights and Adam state in both.
  const more = rows(300, 11);
  await fineTune(tf, fast, more, cfg);
  await fineTune(tf, ref, more, { ...cfg, trainer: 'tfjs' });
  assert.ok(close(fast.predict(probe), ref.predict(probe), 2e-3), 'same after fine-tuning');
  // predict (plain-JS forward pass of the MLP) equals tf.js's own model.predict on the same weights.
  for (const m of [fast, ref]) {
    const viaTf = tf.tidy(() => Array.from((m.model.predict(tf.tensor2d(probe.map((r) => normalise(r, m.spec)))) as tfTypes.Tensor).dataSync()));
    assert.ok(close(m.predict(probe), viaTf, 1e-6), 'forward pass equals tf.js predict');
  }
});
