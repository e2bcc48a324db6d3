// P&L, fees, funding and exposure as Prometheus gauges, read from the books (pnl-sql.ts readBooks)
// when Prometheus scrapes, so every process that serves them shows the same figures the CLI and the
// loss ladder read, with no second copy of the arithmetic. Registered by the tracking stage's unit:
// the books' only writer, present in every deployment that books fills.
import { Gauge, type Registry } from 'prom-client';
import type { CommonQueryMethods } from '../runtime/db.ts';
import type { Clock } from '../runtime/clock.ts';
import { readDayPnl } from './pnl-sql.ts';

export const PNL_METRICS = {
  net: 'pnl_realised_net_quote',
  realised: 'pnl_realised_quote',
  fees: 'pnl_fees_quote',
  funding: 'pnl_funding_quote',
  unrealised: 'pnl_unrealised_quote',
  exposure: 'pnl_exposure_quote',
  dayNet: 'pnl_day_realised_net_quote',
  dayPnl: 'pnl_day_quote',
} as const;

const LABELS = ['category', 'symbol', 'strategy'] as const;

/** Register the P&L gauges on `registry`, read from `db` on every scrape. */
export function registerPnlMetrics(registry: Registry, db: CommonQueryMethods, clock: Clock): void {
  if (registry.getSingleMetric(PNL_METRICS.net)) return;
  // One read per scrape, shared by every gauge's collect (prom-client collects them one by one).
  let pending: Promise<void> | null = null;
  const collect = (): Promise<void> =>
    (pending ??= (async () => {
      try {
        const d = await readDayPnl(db, clock.now());
        const books = d.books;
        for (const x of Object.values(g)) x.reset();
        for (const b of books) {
          const l = { category: b.category, symbol: b.symbol, strategy: b.strategy };
          g.net.set(l, Number(b.net));
          g.realised.set(l, Number(b.realised));
          g.fees.set(l, Number(b.fees));
          g.funding.set(l, Number(b.funding));
          g.unrealised.set(l, Number(b.unrealised));
          g.exposure.set(l, Number(b.exposure));
        }
        day.net.set(d.dayNet.toNumber());
        day.pnl.set(d.dayPnl.toNumber());
      } catch {
        // PostgreSQL unreachable: no figures rather than stale ones; the scrape still answers.
        for (const x of [...Object.values(g), ...Object.values(day)]) x.reset();
      } finally {
        setImmediate(() => (pending = null));
      }
    })());
  const per = (name: string, help: string) => new Gauge({ name, help, labelNames: [...LABELS], registers: [registry], collect });
  const g = {
    net: per(PNL_METRICS.net, 'Realised P&L after fees and funding since the books began, quote coin, per book'),
    realised: per(PNL_METRICS.realised, 'Realised P&L before fees and funding, quote coin, per book'),
    fees: per(PNL_METRICS.fees, 'Fees paid (negative: rebates), quote coin, per book'),
    funding: per(PNL_METRICS.funding, 'Funding received (negative: paid), quote coin, per book'),
    unrealised: per(PNL_METRICS.unrealised, 'Unrealised P&L of the open position or holding at the latest mark (linear) or last (spot) price, quote coin'),
    exposure: per(PNL_METRICS.exposure, 'Open position or holding |qty| × latest price, quote coin'),
  };
  const day = {
    net: new Gauge({ name: PNL_METRICS.dayNet, help: 'Realised P&L after fees and funding of the current UTC day, quote coin, all books', registers: [registry], collect }),
    pnl: new Gauge({ name: PNL_METRICS.dayPnl, help: "The P&L the daily loss limit reads: the day's net realised plus the open unrealised loss, quote coin", registers: [registry], collect }),
  };
}
