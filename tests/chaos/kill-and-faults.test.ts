// The bounded form of `npm run chaos`: a steady flow of signals while the order manager process is
// killed with SIGKILL twice and the simulator loses answers, sends 5xx after executing, and drops,
// duplicates and reorders websocket pushes. Nothing may be lost and nothing placed twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../stack/chaos.ts';

test('kill -9 mid-flow plus exchange faults: every signal has one outcome, no order twice, PostgreSQL equals the exchange', async () => {
  const lines: string[] = [];
  const f = await runChaos({ signals: 36, ratePerSec: 6, kills: 2, answerLoss: 0.08, seed: 3, log: (l) => lines.push(l) });
  assert.equal(f.signals, 36);
  assert.ok(f.faults >= 2, `faults injected (${f.faults})`);
  assert.ok(lines.filter((l) => l.startsWith('killed')).length === 2, lines.join('\n'));
  assert.ok(f.orders > 0, 'orders were placed');
  assert.equal(f.duplicates, 0, 'no orderLinkId placed twice');
  assert.equal(f.losses, 0, `nothing lost: ${lines.join('; ')}`);
});
