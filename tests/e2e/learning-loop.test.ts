// The model's proof in the running loop, shortened (stack/learning-proof.ts; `npm run proof` is the
// long form): the simulator in a pattern regime with 100 ms steps, the order manager and the model
// service as `npm start` runs them, on the real Kafka, PostgreSQL and RabbitMQ. The P&L compared is
// the order manager's own books: the model's strategy from the switch on, against the control arm
// (warm-up trading beside it under its own strategy_id) over the same period.
//
// What would make it pass wrongly, and what closes it: a model that never trades after the switch
// (its fees over the period must grow), a control arm that never trades (its fees must be > 0), a
// promotion on something other than money (the active version's recorded reason), a model that
// "wins" in a market with nothing to learn (the noise run must never leave warm-up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runLearningProof } from '../../stack/learning-proof.ts';

const brief = (r: Awaited<ReturnType<typeof runLearningProof>>) => JSON.stringify({ ...r, snapshots: r.snapshots.slice(-3) });

test('learnable market: the model leaves warm-up, promoted on money, and over the same period its P&L after costs beats warm-up trading beside it', async () => {
  const r = await runLearningProof({ regime: 'learnable', maxWaitS: 600, afterSwitchS: 60 });
  assert.notEqual(r.switchedAtS, null, `never left warm-up: ${brief(r)}`);
  const active = r.versions.filter((v) => v.status === 'active');
  assert.equal(active.length, 1, brief(r));
  assert.match(active[0]!.reason ?? '', /beats warmup on money/, 'promoted on P&L after costs');
  assert.ok(Number(r.modelPeriodFees) > 0, `the model traded after the switch: ${brief(r)}`);
  assert.ok(Number(r.controlPeriodFees) > 0, `the control arm traded: ${brief(r)}`);
  assert.ok(Number(r.modelPeriod) > Number(r.controlPeriod), `model ${r.modelPeriod} vs warm-up ${r.controlPeriod} USDT over ${r.elapsedS - r.switchedAtS!} s: ${brief(r)}`);
});

test('noise: the model never leaves warm-up (no candidate pays after costs)', async () => {
  const r = await runLearningProof({ regime: 'noise', maxWaitS: 240, afterSwitchS: 0 });
  assert.equal(r.switchedAtS, null, brief(r));
  assert.ok(r.versions.length >= 3, `candidates were trained and refused: ${brief(r)}`);
  assert.ok(r.versions.every((v) => v.status === 'candidate'), brief(r));
  assert.ok(r.samples >= 400, 'enough samples to train on');
});
