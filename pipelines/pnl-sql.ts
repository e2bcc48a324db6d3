// The P&L books in PostgreSQL (sql/012_pnl.sql): what the tracking stage loads and writes for a
// chunk, the rebuild from stored executions (a database upgraded from a release without books), and
// the read side (the daily loss limit, metrics, `npm run cli -- status`). The rules are in pnl.ts.
import { z } from 'zod';
import { readParts, sql, type CommonQueryMethods, type DatabasePool, type PartRows } from '../runtime/db.ts';
import { Dec } from '../runtime/decimal.ts';
import { RetriableError } from '../runtime/errors.ts';
import { applyFill, dayPnl, emptyBook, netRealised, splitFunding, splitPositionClose, unrealised, type PnlBook, type PnlCategory, type PnlDelta, type PnlFill } from './pnl.ts';
import { utcDay } from './trading-state.ts';

/** A book as loaded, with the version its write must still find. */
export interface LoadedBook {
  book: PnlBook;
  version: number | null;
}

/** What a chunk booked per (day, category, symbol, strategy). */
export interface DaySums {
  day: string;
  category: PnlCategory;
  symbol: string;
  strategy: string;
  realised: Dec;
  fees: Dec;
  funding: Dec;
  fills: number;
}

export const bookKey = (category: string, symbol: string, strategy: string): string => `${category}\u0000${symbol}\u0000${strategy}`;

/** A book as stored (`pnl_books`), numerics as exact text. */
export const bookRow = z.object({ category: z.enum(['spot', 'linear']), symbol: z.string(), strategy_id: z.string(), qty: z.string(), avg_entry: z.string(), realised: z.string(), fees: z.string(), funding: z.string(), version: z.number() });

const toBook = (r: z.infer<typeof bookRow>): PnlBook => ({ category: r.category, symbol: r.symbol, strategy: r.strategy_id, qty: r.qty, avgEntry: r.avg_entry, realised: r.realised, fees: r.fees, funding: r.funding });

/** The books of these symbols (every strategy), as a part of a caller's one-statement load (tracking's; runtime/db.ts readParts). */
export const booksOf = (symbols: readonly string[]) => ({
  rows: bookRow,
  query: sql.fragment`
    SELECT category, symbol, strategy_id, qty::text AS qty, avg_entry::text AS avg_entry, realised::text AS realised, fees::text AS fees,
           funding::text AS funding, version::int AS version
    FROM pnl_books WHERE symbol = ANY(${sql.array([...symbols], 'text')})`,
});

/** The books as loaded, keyed by bookKey. */
export function loadedBooks(rows: ReadonlyArray<z.infer<typeof bookRow>>): Map<string, LoadedBook> {
  return new Map(rows.map((r) => [bookKey(r.category, r.symbol, r.strategy_id), { book: toBook(r), version: r.version }]));
}

/**
 * Book one fill into `books` (in memory) and `days`. The caller applies fills in the order the
 * exchange reported them; `at` is the execution time (its UTC day is the day that books it).
 */
export function bookFill(books: Map<string, LoadedBook>, days: Map<string, DaySums>, strategy: string, fill: PnlFill, at: number): PnlDelta {
  const k = bookKey(fill.category, fill.symbol, strategy);
  const cur = books.get(k) ?? { book: emptyBook(fill.category, fill.symbol, strategy), version: null };
  const { book, delta } = applyFill(cur.book, fill);
  books.set(k, { book, version: cur.version });
  const day = utcDay(at);
  const dk = `${day}\u0000${k}`;
  const d = days.get(dk) ?? { day, category: fill.category, symbol: fill.symbol, strategy, realised: Dec.ZERO, fees: Dec.ZERO, funding: Dec.ZERO, fills: 0 };
  days.set(dk, { ...d, realised: d.realised.add(delta.realised), fees: d.fees.add(delta.fees), funding: d.funding.add(delta.funding), fills: d.fills + 1 });
  return delta;
}

/**
 * Book one execution: a trade under `strategy` (its order's), a funding execution split over the
 * books that hold the position (pnl.ts splitFunding). Returns the keys of the books it touched.
 */
export function bookExecution(books: Map<string, LoadedBook>, days: Map<string, DaySums>, strategy: string, fill: PnlFill, at: number, opts: { positionStop?: boolean } = {}): string[] {
  if (opts.positionStop && fill.category === 'linear' && fill.execType !== 'Funding') {
    // A fill of the exchange's TP/SL order closes the position the strategies' books hold.
    const held = [...books.values()].map((b) => b.book).filter((b) => b.category === fill.category && b.symbol === fill.symbol);
    return splitPositionClose(held, fill).map((share) => {
      bookFill(books, days, share.strategy, { ...fill, qty: share.qty, fee: share.fee }, at);
      return bookKey(fill.category, fill.symbol, share.strategy);
    });
  }
  if (fill.execType !== 'Funding') {
    bookFill(books, days, strategy, fill, at);
    return [bookKey(fill.category, fill.symbol, strategy)];
  }
  const held = [...books.values()].map((b) => b.book).filter((b) => b.category === fill.category && b.symbol === fill.symbol);
  return splitFunding(held, fill.fee).map((share) => {
    bookFill(books, days, share.strategy, { ...fill, fee: share.fee }, at);
    return bookKey(fill.category, fill.symbol, share.strategy);
  });
}

/** A book's key as a statement returns it (the one-statement writes check which rows they wrote). */
const bookKeyRow = z.object({ category: z.string(), symbol: z.string(), strategy_id: z.string() });
type BookKey = z.infer<typeof bookKeyRow>;
const keyOfRow = (r: BookKey) => `${r.category} ${r.symbol} ${r.strategy_id}`;
type BookRow = BookKey & { qty: string; avg_entry: string; realised: string; fees: string; funding: string };

/**
 * Write the touched books (each once) and add the day sums: one statement for the new books and one
 * for the stored ones, whatever their number. A book whose version moved since it was loaded (or
 * that another writer created meanwhile) was written by another tracker (a rebalance): the chunk is
 * retried on fresh state, and the transaction takes back what this one wrote.
 */
export async function saveBooks(tx: CommonQueryMethods, books: ReadonlyMap<string, LoadedBook>, touched: ReadonlySet<string>, days: ReadonlyMap<string, DaySums>): Promise<void> {
  const fresh: BookRow[] = [];
  const stored: Array<BookRow & { version: number }> = [];
  for (const k of touched) {
    const { book: b, version } = books.get(k)!;
    const row: BookRow = { category: b.category, symbol: b.symbol, strategy_id: b.strategy, qty: b.qty, avg_entry: b.avgEntry, realised: b.realised, fees: b.fees, funding: b.funding };
    if (version === null) fresh.push(row);
    else stored.push({ ...row, version });
  }
  /** The first book of `want` a statement did not write (its RETURNING rows are `got`). */
  const missing = (want: readonly BookKey[], got: readonly BookKey[]) => {
    const wrote = new Set(got.map(keyOfRow));
    return want.map(keyOfRow).find((k) => !wrote.has(k));
  };
  if (fresh.length > 0) {
    const inserted = await tx.any(sql.type(bookKeyRow)`
      INSERT INTO pnl_books (category, symbol, strategy_id, qty, avg_entry, realised, fees, funding, version)
      SELECT v.category, v.symbol, v.strategy_id, v.qty, v.avg_entry, v.realised, v.fees, v.funding, 1
      FROM jsonb_to_recordset(${sql.jsonb(fresh)}) AS v(category text, symbol text, strategy_id text, qty numeric, avg_entry numeric, realised numeric, fees numeric, funding numeric)
      ON CONFLICT (category, symbol, strategy_id) DO NOTHING
      RETURNING category, symbol, strategy_id`);
    const lost = missing(fresh, inserted);
    if (lost !== undefined) throw new RetriableError('pnl_book_race', `P&L book ${lost} was created by another writer meanwhile`);
  }
  if (stored.length > 0) {
    const updated = await tx.any(sql.type(bookKeyRow)`
      UPDATE pnl_books SET qty = v.qty, avg_entry = v.avg_entry, realised = v.realised, fees = v.fees, funding = v.funding,
             version = pnl_books.version + 1, updated_at = now()
      FROM jsonb_to_recordset(${sql.jsonb(stored)}) AS v(category text, symbol text, strategy_id text, qty numeric, avg_entry numeric, realised numeric, fees numeric, funding numeric, version bigint)
      WHERE pnl_books.category = v.category AND pnl_books.symbol = v.symbol AND pnl_books.strategy_id = v.strategy_id AND pnl_books.version = v.version
      RETURNING pnl_books.category, pnl_books.symbol, pnl_books.strategy_id`);
    const moved = missing(stored, updated);
    if (moved !== undefined) throw new RetriableError('pnl_book_race', `P&L book ${moved} moved since it was loaded`);
  }
  if (days.size === 0) return;
  const rows = [...days.values()].map((d) => ({ day: d.day, category: d.category, symbol: d.symbol, strategy_id: d.strategy, realised: d.realised.toString(), fees: d.fees.toString(), funding: d.funding.toString(), fills: d.fills }));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO pnl_days (day, category, symbol, strategy_id, realised, fees, funding, fills)
    SELECT v.day, v.category, v.symbol, v.strategy_id, v.realised, v.fees, v.funding, v.fills
    FROM jsonb_to_recordset(${sql.jsonb(rows)}) AS v(day date, category text, symbol text, strategy_id text, realised numeric, fees numeric, funding numeric, fills int)
    ON CONFLICT (day, category, symbol, strategy_id) DO UPDATE SET
      realised = pnl_days.realised + EXCLUDED.realised, fees = pnl_days.fees + EXCLUDED.fees,
      funding = pnl_days.funding + EXCLUDED.funding, fills = pnl_days.fills + EXCLUDED.fills`);
}

/** The strategy an execution books under: its order's, 'external' for adopted orders. */
export function strategyOf(context: { strategy_id: string | null } | null, external: boolean): string {
  if (external) return 'external';
  return context?.strategy_id ?? 'unattributed';
}

const execRow = z.object({
  category: z.enum(['spot', 'linear']),
  symbol: z.string(),
  side: z.enum(['Buy', 'Sell']),
  exec_type: z.string(),
  exec_qty: z.string(),
  exec_price: z.string(),
  exec_fee: z.string(),
  fee_currency: z.string().nullable(),
  exec_time: z.number(),
  strategy: z.string().nullable(),
  external: z.boolean().nullable(),
});

/**
 * Rebuild every book and day from the stored executions, when the books are empty and executions
 * exist (a database upgraded from a release without books). In execution time order (then seq, then
 * execId): the order the exchange reported them in, as far as the stored facts tell. Runs in one
 * transaction under an advisory lock, so two trackers starting together rebuild once.
 */
export async function rebuildBooks(db: DatabasePool): Promise<{ rebuilt: boolean; executions: number; books: number }> {
  return db.transaction(async (tx) => {
    await tx.query(sql.typeAlias('void')`SELECT pg_advisory_xact_lock(hashtext('pnl_books_rebuild'))`);
    const has = await tx.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM (SELECT 1 FROM pnl_books LIMIT 1) b`);
    if (has > 0) return { rebuilt: false, executions: 0, books: 0 };
    const execs = await tx.any(sql.type(execRow)`
      SELECT e.category, e.symbol, e.side, e.exec_type, e.exec_qty::text AS exec_qty, e.exec_price::text AS exec_price, e.exec_fee::text AS exec_fee,
             e.fee_currency, (extract(epoch FROM e.exec_time) * 1000)::float8 AS exec_time, o.context->>'strategy_id' AS strategy, o.external
      FROM executions e
      LEFT JOIN LATERAL (
        SELECT context, external FROM orders WHERE orders.order_id = e.order_id OR (e.order_link_id IS NOT NULL AND orders.order_link_id = e.order_link_id)
        ORDER BY id LIMIT 1
      ) o ON true
      ORDER BY e.exec_time, e.seq NULLS LAST, e.exec_id`);
    if (execs.length === 0) return { rebuilt: false, executions: 0, books: 0 };
    const books = new Map<string, LoadedBook>();
    const days = new Map<string, DaySums>();
    for (const e of execs) {
      const strategy = strategyOf({ strategy_id: e.strategy }, e.external ?? false);
      bookExecution(books, days, strategy, { category: e.category, symbol: e.symbol, side: e.side, execType: e.exec_type, qty: e.exec_qty, price: e.exec_price, fee: e.exec_fee, feeCurrency: e.fee_currency }, e.exec_time);
    }
    await saveBooks(tx, books, new Set(books.keys()), days);
    return { rebuilt: true, executions: execs.length, books: books.size };
  });
}

/** P&L of one book now, quote coin. */
export interface BookPnl {
  category: PnlCategory;
  symbol: string;
  strategy: string;
  qty: string;
  avgEntry: string;
  /** The price the unrealised P&L is at (mark for linear, last for spot); null when no ticker. */
  price: string | null;
  realised: string;
  fees: string;
  funding: string;
  net: string;
  unrealised: string;
  /** |qty| × price. */
  exposure: string;
}

const pnlRow = bookRow.omit({ version: true }).extend({ last: z.string().nullable(), mark_price: z.string().nullable() });

/** Every book with the latest ticker of its symbol, as a part of a one-statement load (runtime/db.ts readParts). */
const booksRead = {
  rows: pnlRow,
  query: sql.fragment`
    SELECT b.category, b.symbol, b.strategy_id, b.qty::text AS qty, b.avg_entry::text AS avg_entry, b.realised::text AS realised,
           b.fees::text AS fees, b.funding::text AS funding, t.last::text AS last, t.mark_price::text AS mark_price
    FROM pnl_books b LEFT JOIN tickers t ON t.category = b.category AND t.symbol = b.symbol`,
  orderBy: ['category', 'symbol', 'strategy_id'],
};

/** The reads of readDayPnl, for a caller that makes them part of its own one-statement load (runtime/db.ts readParts). */
export function dayPnlReads(now: number) {
  return {
    dayNet: {
      rows: z.object({ net: z.string() }),
      query: sql.fragment`SELECT COALESCE(sum(realised - fees + funding), 0)::text AS net FROM pnl_days WHERE day = ${utcDay(now)}::date`,
    },
    books: booksRead,
  };
}

export type DayPnl = { dayNet: Dec; unrealised: Dec; dayPnl: Dec; books: BookPnl[] };

function bookPnl(r: z.infer<typeof pnlRow>): BookPnl {
  const book = toBook({ ...r, version: 0 });
  const price = r.category === 'linear' ? (r.mark_price ?? r.last) : r.last;
  return {
    category: r.category,
    symbol: r.symbol,
    strategy: r.strategy_id,
    qty: r.qty,
    avgEntry: r.avg_entry,
    price,
    realised: r.realised,
    fees: r.fees,
    funding: r.funding,
    net: netRealised(book).toString(),
    unrealised: unrealised(book, price).toString(),
    exposure: price === null ? '0' : Dec.of(r.qty).abs().mul(price).toString(),
  };
}

/** The day's P&L from what dayPnlReads read. */
export function dayPnlFrom(rows: PartRows<ReturnType<typeof dayPnlReads>>): DayPnl {
  const books = rows.books.map(bookPnl);
  const dayNet = Dec.of(rows.dayNet[0]?.net ?? '0');
  const open = books.reduce((acc, b) => acc.add(b.unrealised), Dec.ZERO);
  return { dayNet, unrealised: open, dayPnl: dayPnl(dayNet, open), books };
}

/** Every book with its unrealised P&L at the latest ticker (the tracking stage's projection). */
export async function readBooks(db: CommonQueryMethods): Promise<BookPnl[]> {
  return (await readParts(db, { books: booksRead })).books.map(bookPnl);
}

/** The day's P&L the loss ladder reads (pnl.ts dayPnl), with its parts and the books it was read from (one read for every reader). */
export async function readDayPnl(db: CommonQueryMethods, now: number): Promise<DayPnl> {
  return dayPnlFrom(await readParts(db, dayPnlReads(now)));
}
