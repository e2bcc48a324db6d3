// `npm run study -- [--seeds=1,2,3,4,5] [--steps=24000] [--regimes=learnable,noise,...] [--out=reports/regime-study.json]`:
// the regime study (stack/regime-study.ts). Progress on stderr, the markdown table on stdout, the
// whole result (conditions, per-seed runs, summaries) as JSON in --out. Needs no running stack.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { execFileSync } from 'node:child_process';
import { PATTERN_REGIMES, type PatternRegime } from '../sim/regimes.ts';
import { runStudy, studyMarkdown, STUDY_REGIMES } from './regime-study.ts';

const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const seeds = (arg('seeds') ?? '1,2,3,4,5').split(',').map(Number);
const steps = Number(arg('steps') ?? 24000);
const regimes = (arg('regimes')?.split(',') ?? STUDY_REGIMES) as PatternRegime[];
const out = arg('out') ?? 'reports/regime-study.json';
for (const r of regimes) if (!PATTERN_REGIMES.includes(r)) throw new Error(`--regimes: ${r} is not one of ${PATTERN_REGIMES.join(', ')}`);
if (!seeds.every((s) => Number.isInteger(s)) || !(Number.isInteger(steps) && steps > 0)) throw new Error('--seeds must be integers and --steps a positive integer');

// The commit the figures belong to (and whether the tree differed from it).
const git = (...a: string[]) => {
  try {
    return execFileSync('git', a, { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
};
const commit = git('rev-parse', '--short', 'HEAD');
const dirty = (git('status', '--porcelain', '--untracked-files=no') ?? '') !== '';

const result = await runStudy({ regimes, seeds, steps, log: (l) => console.error(l) });
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ commit, dirty, node: process.version, ...result }, null, 2)}\n`);
const c = result.conditions;
console.log(`Regime study at ${commit}${dirty ? ' (with uncommitted changes)' : ''}: seeds ${c.seeds.join(', ')}; ${c.steps} steps of ${c.step_ms} ms per seed; horizon ${c.horizon_steps} steps; a signal per asset every ${c.signal_every_steps} steps (${c.assets.join(', ')}); held out the newest ${c.holdout_fraction * 100} %; linear taker fee ${c.taker_fee_bps_per_side} bps per side + half spread; buy-and-hold at ${c.exposure_units_buy_and_hold} units; bootstrap ${c.bootstrap.resamples} resamples, blocks of ${c.bootstrap.block} windows, two-sided 95 %.\n`);
console.log(studyMarkdown(result));
console.log(`\n${result.seconds.toFixed(0)} s in all; JSON in ${out}`);
