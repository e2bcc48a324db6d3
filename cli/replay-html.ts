// The replay's HTML chart (self-contained: inline SVG and CSS, no external assets).

import type { BacktestReport } from './replay-types.ts';
import { round } from './replay-pnl.ts';

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function renderHtml(r: BacktestReport): string {
  const W = 800, H = 320, L = 70, R = 20, T = 20, B = 40;
  // Every strategy's curve on one chart (the recorded one alone when there is no comparison).
  const COLORS = ['#1565c0', '#2e7d32', '#ef6c00', '#8e24aa'];
  const series = r.strategies.length
    ? r.strategies.map((s, k) => ({ name: s.strategy, color: COLORS[k % COLORS.length]!, ys: s.equity_curve }))
    : [{ name: 'recorded', color: COLORS[0]!, ys: r.equity_curve.map((p) => p.equity) }];
  const all = series.flatMap((s) => s.ys);
  const xMax = Math.max(1, ...series.map((s) => s.ys.length - 1));
  let yMin = Math.min(0, ...all), yMax = Math.max(0, ...all);
  if (yMax - yMin < 1e-9) {
    yMin -= 1;
    yMax += 1;
  }
  const x = (v: number) => L + (v / xMax) * (W - L - R);
  const y = (v: number) => T + (1 - (v - yMin) / (yMax - yMin)) * (H - T - B);
  const lines = series
    .map((s) => `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.ys.map((v, i) => `${x(i).toFixed(2)},${y(v).toFixed(2)}`).join(' ')}"><title>${esc(s.name)}</title></polyline>`)
    .join('\n');
  const legend = series.map((s, k) => `<rect x="${L + 10 + k * 150}" y="${T + 2}" width="12" height="12" fill="${s.color}"/><text x="${L + 26 + k * 150}" y="${T + 12}" font-size="12">${esc(s.name)}</text>`).join('');
  const ticks = [yMin, (yMin + yMax) / 2, yMax]
    .map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(2)}" y2="${y(v).toFixed(2)}" stroke="#ddd"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(2)}" text-anchor="end" font-size="11">${esc(round(v, 2))}</text>`)
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="equity curves">
<rect width="${W}" height="${H}" fill="#fff"/>${ticks}
<line x1="${L}" x2="${W - R}" y1="${y(0).toFixed(2)}" y2="${y(0).toFixed(2)}" stroke="#888" stroke-dasharray="4 3"/>
${lines}
${legend}
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">signal #</text>
<text x="${L}" y="${H - 24}" font-size="11">0</text><text x="${W - R}" y="${H - 24}" text-anchor="end" font-size="11">${xMax}</text>
</svg>`;
  const cmp = r.strategies
    .map((s) => `<tr><td>${esc(s.strategy)}</td><td>${s.signals}</td><td>${s.fills}</td><td>${s.fees}</td><td>${s.pnl}</td><td>${s.hit_rate ?? '-'}</td><td>${s.turnover}</td><td>${s.max_drawdown}</td><td>${s.sharpe_per_signal ?? '-'}</td></tr>`)
    .join('\n');
  const strat = r.per_strategy
    .map((s) => `<tr><td>${esc(s.strategy_id)}</td><td>${s.signals}</td><td>${s.orders}</td><td>${s.fills}</td><td>${s.fees}</td><td>${s.pnl}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest ${esc(r.name)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}</style>
</head><body>
<h1>Backtest ${esc(r.name)}</h1>
<p>Input: ${esc(r.input.source)} ${esc(r.input.what)} (${r.input.records} records), seed ${r.seed}.</p>
<h2>Equity curves (PnL after fees, marked to mid, USDT)</h2>
${svg}
<h2>Strategies compared</h2>
<p>Same recorded market, signal times, assets and amounts; each strategy in its own world. Capital ${r.comparison.capital} USDT (total amount of the recorded signals); coin seed ${r.comparison.coin_seed}; warm-up heuristic ${esc(r.comparison.heuristic)}.</p>
<table><tr><th>Strategy</th><th>Signals</th><th>Fills</th><th>Fees</th><th>PnL after costs</th><th>Hit rate</th><th>Turnover</th><th>Max drawdown</th><th>Sharpe per signal</th></tr>
${cmp}
</table>
<h2>Summary</h2>
<table>
<tr><th>Signals</th><td>${r.signals.total} (placed ${r.signals.placed}, rejected ${r.signals.rejected}, invalid ${r.signals.invalid}, timeouts ${r.signals.timeouts})</td></tr>
<tr><th>Orders / fills</th><td>${r.orders} / ${r.fills}</td></tr>
<tr><th>Volume (USDT)</th><td>${r.volume}</td></tr>
<tr><th>Fees (USDT)</th><td>${r.fees}</td></tr>
<tr><th>Slippage (bps, value-weighted / mean / worst)</th><td>${r.slippage_bps.avg_weighted} / ${r.slippage_bps.avg} / ${r.slippage_bps.worst}</td></tr>
<tr><th>PnL (realised + unrealised = total)</th><td>${r.pnl.realised} + ${r.pnl.unrealised} = ${r.pnl.total}</td></tr>
<tr><th>Max drawdown (USDT)</th><td>${r.max_drawdown.amount} (signal ${r.max_drawdown.peak_index} → ${r.max_drawdown.trough_index})</td></tr>
</table>
<h2>Per strategy</h2>
<table><tr><th>Strategy</th><th>Signals</th><th>Orders</th><th>Fills</th><th>Fees</th><th>PnL</th></tr>
${strat}
</table>
</body></html>
`;
}

