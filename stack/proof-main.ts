// `npm run proof -- --regime=learnable|noise|trend-revert [--max-wait-s=N] [--after-switch-s=N] [--seed=N] [--keep-db]`:
// the model's proof in the running loop (stack/learning-proof.ts). JSON lines while it runs, the
// result as the last line; exit 0 when the verdict holds (learnable: switched to the model and its P&L
// after costs over the period above the control arm's; noise: never left warm-up), 1 otherwise.
import { runLearningProof } from './learning-proof.ts';
import { PATTERN_REGIMES, type PatternRegime } from '../sim/regimes.ts';

const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const regime = (arg('regime') ?? 'learnable') as PatternRegime;
if (!PATTERN_REGIMES.includes(regime)) {
  console.error(`--regime must be one of ${PATTERN_REGIMES.join(', ')}`);
  process.exit(2);
}
const r = await runLearningProof({
  regime,
  seed: arg('seed') ? Number(arg('seed')) : undefined,
  maxWaitS: Number(arg('max-wait-s') ?? 600),
  afterSwitchS: Number(arg('after-switch-s') ?? 180),
  log: (l) => console.log(JSON.stringify(l)),
  keepDatabase: process.argv.includes('--keep-db'),
});
const { snapshots: _s, ...summary } = r;
const holds = regime === 'noise' ? r.switchedAtS === null : r.switchedAtS !== null && Number(r.modelPeriod) > Number(r.controlPeriod);
console.log(JSON.stringify({ verdict: holds ? 'holds' : 'fails', ...summary }));
process.exit(holds ? 0 : 1);
