// The tracking stage's writes (persist): executions, order rows, events, invalid transitions, and
// the position and balance projections (tickers: pipelines/ticker-projection.ts).
//
// Every statement takes the chunk's rows as one jsonb array (`rowsOf`: one bind parameter whatever
// the number of rows, typed by jsonb_to_recordset's column list) and keeps the rows' order where it
// shows (identity ids of events, history and invalid transitions follow the emission order: a replay
// re-emits a record's events ORDER BY id).
import { z } from 'zod';
import { sql, type CommonQueryMethods } from '../runtime/db.ts';
import { InvalidInputError } from 'slonik';
import { RetriableError } from '../runtime/errors.ts';
import type { Execution, Position, WalletBalance } from '../schemas/types.ts';
import { Dec } from '../runtime/decimal.ts';
import { UUID_RE } from './record-guards.ts';
import type { EmittedEvent, InvalidRecord, TrackState } from './track-state.ts';
import { orderKey, type PartialSignalContext, type TrackedOrder } from './order-state.ts';

/** Epoch ms → timestamptz exactly as `sql.timestamp(new Date(ms))` (to_timestamp(ms / 1000)). */
const TS = (col: ReturnType<typeof sql.identifier>) => sql.fragment`to_timestamp(${col}::float8 / 1000)`;
/** The rows of a multi-row statement as one jsonb parameter (undefined fields become NULL columns). */
const rowsOf = (rows: readonly object[]) => sql.fragment`${JSON.stringify(rows)}::jsonb`;
const pos = (v: string | null): string | null => (Dec.maybe(v)?.isPos() ? Dec.of(v!).toString() : null);

export async function insertExecutions(tx: CommonQueryMethods, execs: readonly Execution[]): Promise<void> {
  if (execs.length === 0) return;
  const rows = execs.map((e, i) => ({
    i,
    exec_id: e.execId,
    order_link_id: e.orderLinkId || null,
    order_id: e.orderId,
    category: e.category,
    symbol: e.symbol,
    side: e.side,
    exec_type: e.execType ?? 'Trade',
    exec_qty: e.execQty,
    exec_price: e.execPrice,
    exec_value: e.execValue || null /* '' (as Bybit writes "none") is not a numeric: fuzzing found it */,
    exec_fee: e.execFee || '0',
    fee_currency: e.feeCurrency,
    is_maker: e.isMaker,
    exec_time: e.execTime,
    source: e.source === 'reconciler' ? 'reconcile' : e.source,
    raw: JSON.parse(JSON.stringify(e ?? {})) as unknown,
  }));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO executions (exec_id, order_link_id, order_id, category, symbol, side, exec_type, exec_qty, exec_price, exec_value, exec_fee,
                            fee_currency, is_maker, exec_time, source, raw)
    SELECT v.exec_id, v.order_link_id, v.order_id, v.category, v.symbol, v.side, v.exec_type, v.exec_qty, v.exec_price, v.exec_value, v.exec_fee,
           v.fee_currency, v.is_maker, ${TS(sql.identifier(['v', 'exec_time']))}, v.source, v.raw
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, exec_id text, order_link_id text, order_id text, category text, symbol text, side text, exec_type text,
                                                  exec_qty numeric, exec_price numeric, exec_value numeric, exec_fee numeric, fee_currency text, is_maker boolean,
                                                  exec_time bigint, source text, raw jsonb)
    ORDER BY v.i
    ON CONFLICT (exec_id) DO NOTHING`);
}

const versionRow = z.object({ id: z.number(), cum_exec_qty: z.string(), last_exchange_update_ms: z.number().nullable(), seq: z.number() });
const insertedRow = z.object({ id: z.number(), order_link_id: z.string().nullable(), order_id: z.string().nullable() });

const timeInForceOf = (o: TrackedOrder) => (o.timeInForce && ['GTC', 'IOC', 'FOK', 'PostOnly'].includes(o.timeInForce) ? o.timeInForce : null);
const marketUnitOf = (o: TrackedOrder) => (o.marketUnit === 'baseCoin' || o.marketUnit === 'quoteCoin' ? o.marketUnit : null);
const storableSignalId = (ctx: PartialSignalContext) => (ctx.signal_id && /^[0-9a-f-]{36}$/i.test(ctx.signal_id) ? ctx.signal_id : null);

/** An order's state as stored in `orders` (jsonb_to_recordset rows of the update and the insert). */
function stateColumns(o: TrackedOrder) {
  return {
    order_id: o.orderId,
    status: o.status,
    qty: o.qty,
    price: pos(o.price),
    cum_exec_qty: o.cum.qty,
    cum_exec_value: o.cum.value,
    cum_exec_fee: o.cum.fee,
    avg_price: pos(o.avgPrice),
    leaves_qty: o.leavesQty,
    last_exchange_update_ms: o.lastUpdateMs,
    terms_update_ms: o.termsUpdateMs,
    submitted_at: o.submittedAt,
    acknowledged_at: o.acknowledgedAt,
    first_fill_at: o.firstFillAt,
    final_at: o.finalAt,
    reject_ret_code: o.rejectRetCode,
    reject_reason: o.rejectReason,
    context: o.context,
  };
}
/**
 * Write the order rows of every slot the chunk changed (dirty or with an event); returns slot → row
 * id. Rows already stored: one statement locks them (`SELECT … FOR UPDATE` ordered by id, the order
 * concurrent writers lock them in) and updates them (`UPDATE … FROM`); the versions it locked are
 * checked against those `load` read (RetriableError on a concurrent change or a vanished row,
 * which rolls the update back). New orders: one multi-row insert (a row some other writer inserted
 * meanwhile is a RetriableError too).
 */
export async function saveOrders(tx: CommonQueryMethods, state: TrackState): Promise<Map<number, number>> {
  const rowIds = new Map<number, number>();
  const slots = [...new Set([...state.dirty, ...state.events.map((e) => e.slot)])].sort((a, b) => a - b);
  const existing: Array<{ slot: number; o: TrackedOrder & { rowId: number } }> = [];
  const fresh: Array<{ slot: number; o: TrackedOrder }> = [];
  for (const slot of slots) {
    const o = state.orders[slot]!;
    if (o.rowId === null) fresh.push({ slot, o });
    else existing.push({ slot, o: o as TrackedOrder & { rowId: number } });
  }

  if (existing.length > 0) {
    const ids = existing.map((x) => x.o.rowId);
    const rows = existing.map(({ o }) => ({ id: o.rowId, ...stateColumns(o) }));
    const col = (c: string) => TS(sql.identifier(['v', c]));
    // One statement: `cur` locks the rows (ordered by id) and reads their versions before the
    // update (its count is the update's one-time filter, evaluated before the first row is
    // updated; as a CTE read twice it is materialised once); the versions are checked after it. A
    // failed check throws, and the transaction takes the update back with everything else.
    const cur = new Map(
      (
        await tx.any(sql.type(versionRow)`
          WITH cur AS MATERIALIZED (
            SELECT o.id, o.cum_exec_qty, o.last_exchange_update_ms, COALESCE((SELECT max(sequence) FROM order_events e WHERE e.order_row_id = o.id), 0)::int AS seq
            FROM orders o WHERE o.id = ANY(${sql.array(ids, 'int8')}) ORDER BY o.id FOR UPDATE
          ), up AS (
            UPDATE orders SET
              order_id = COALESCE(orders.order_id, v.order_id),
              status = v.status,
              qty = v.qty,
              price = COALESCE(v.price, orders.price),
              cum_exec_qty = v.cum_exec_qty, cum_exec_value = v.cum_exec_value, cum_exec_fee = v.cum_exec_fee,
              avg_price = v.avg_price,
              leaves_qty = v.leaves_qty,
              last_exchange_update_ms = v.last_exchange_update_ms,
              terms_update_ms = v.terms_update_ms,
              submitted_at = COALESCE(orders.submitted_at, ${col('submitted_at')}),
              acknowledged_at = COALESCE(orders.acknowledged_at, ${col('acknowledged_at')}),
              first_fill_at = ${col('first_fill_at')},
              final_at = COALESCE(orders.final_at, ${col('final_at')}),
              reject_ret_code = COALESCE(orders.reject_ret_code, v.reject_ret_code),
              reject_reason = COALESCE(orders.reject_reason, v.reject_reason),
              context = CASE WHEN orders.context ? 'signal_id' THEN orders.context ELSE orders.context || v.context END,
              updated_at = now()
            FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(id bigint, order_id text, status text, qty numeric, price numeric, cum_exec_qty numeric, cum_exec_value numeric,
                                                          cum_exec_fee numeric, avg_price numeric, leaves_qty numeric, last_exchange_update_ms bigint, terms_update_ms bigint, submitted_at bigint,
                                                          acknowledged_at bigint, first_fill_at bigint, final_at bigint, reject_ret_code integer, reject_reason text, context jsonb)
            WHERE orders.id = v.id AND (SELECT count(*) FROM cur) >= 0
          )
          SELECT id, cum_exec_qty, last_exchange_update_ms, seq FROM cur`)
      ).map((r) => [r.id, r]),
    );
    for (const { slot, o } of existing) {
      const c = cur.get(o.rowId);
      if (!c) throw new RetriableError('order_row_gone', `order row ${o.rowId} (${orderKey(o)}) disappeared; reloading`);
      const v = state.versions.get(slot);
      if (v && (c.seq !== v.sequence || Dec.of(c.cum_exec_qty).cmp(v.cumQty) !== 0 || c.last_exchange_update_ms !== v.lastUpdateMs)) {
        throw new RetriableError('order_changed_concurrently', `order ${orderKey(o)} changed since it was loaded; reloading`);
      }
    }
    for (const { slot, o } of existing) rowIds.set(slot, o.rowId);
  }

  if (fresh.length > 0) {
    const rows = fresh.map(({ o }, i) => {
      const signalId = storableSignalId(o.context);
      if (signalId !== null && !UUID_RE.test(signalId)) throw new InvalidInputError('UUID parameter value must be a valid UUID.'); // what sql.uuid did
      return {
        i,
        order_link_id: o.orderLinkId,
        signal_id: signalId,
        strategy_id: o.context.strategy_id,
        category: o.category,
        symbol: o.symbol,
        side: o.side,
        order_type: o.orderType,
        time_in_force: timeInForceOf(o),
        market_unit: marketUnitOf(o),
        reduce_only: o.reduceOnly,
        external: o.external,
        ...stateColumns(o),
      };
    });
    const col = (c: string) => TS(sql.identifier(['v', c]));
    const inserted = await tx.any(sql.type(insertedRow)`
      INSERT INTO orders (order_link_id, order_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, market_unit, reduce_only,
                          qty, price, status, cum_exec_qty, cum_exec_value, cum_exec_fee, avg_price, leaves_qty, external, last_exchange_update_ms, terms_update_ms,
                          submitted_at, acknowledged_at, first_fill_at, final_at, reject_ret_code, reject_reason, context)
      SELECT v.order_link_id, v.order_id, v.signal_id, v.strategy_id, v.category, v.symbol, v.side, v.order_type, v.time_in_force, v.market_unit, v.reduce_only,
             v.qty, v.price, v.status, v.cum_exec_qty, v.cum_exec_value, v.cum_exec_fee, v.avg_price, v.leaves_qty, v.external, v.last_exchange_update_ms, v.terms_update_ms,
             ${col('submitted_at')}, ${col('acknowledged_at')}, ${col('first_fill_at')}, ${col('final_at')}, v.reject_ret_code, v.reject_reason, v.context
      FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, order_link_id text, order_id text, signal_id uuid, strategy_id text, category text, symbol text, side text,
                                                    order_type text, time_in_force text, market_unit text, reduce_only boolean, qty numeric, price numeric, status text,
                                                    cum_exec_qty numeric, cum_exec_value numeric, cum_exec_fee numeric, avg_price numeric, leaves_qty numeric,
                                                    external boolean, last_exchange_update_ms bigint, terms_update_ms bigint, submitted_at bigint, acknowledged_at bigint, first_fill_at bigint,
                                                    final_at bigint, reject_ret_code integer, reject_reason text, context jsonb)
      ORDER BY v.i
      ON CONFLICT DO NOTHING
      RETURNING id, order_link_id, order_id`);
    // A new order has an orderLinkId, or else an orderId (the table's check): either identifies the row.
    const byLink = new Map(inserted.filter((r) => r.order_link_id !== null).map((r) => [r.order_link_id!, r.id]));
    const byId = new Map(inserted.filter((r) => r.order_link_id === null && r.order_id !== null).map((r) => [r.order_id!, r.id]));
    for (const { slot, o } of fresh) {
      const id = o.orderLinkId !== null ? byLink.get(o.orderLinkId) : o.orderId !== null ? byId.get(o.orderId) : undefined;
      if (id === undefined) throw new RetriableError('order_inserted_concurrently', `order ${orderKey(o)} was inserted by someone else meanwhile; reloading`);
      rowIds.set(slot, id);
    }
  }
  return rowIds;
}

/** The chunk's events in emission order, and the state history of those that changed the status. */
export async function insertEvents(tx: CommonQueryMethods, events: readonly EmittedEvent[], rowIds: ReadonlyMap<number, number>): Promise<void> {
  if (events.length === 0) return;
  const rows = events.map((ev, i) => {
    const e = ev.event;
    const c = ev.change;
    return {
      i,
      event_id: e.event_id,
      order_row_id: rowIds.get(ev.slot)!,
      order_link_id: e.order_link_id,
      order_id: e.order_id,
      sequence: c.sequence,
      event_type: e.event_type,
      from_status: c.from,
      status: c.to,
      cause: c.cause,
      cause_id: c.causeId,
      source_record: ev.source,
      occurred_at: c.occurredAt,
      payload: e,
    };
  });
  const insertEventsSql = sql.fragment`
    INSERT INTO order_events (event_id, order_row_id, order_link_id, order_id, sequence, event_type, status, cause, cause_id, source_record, occurred_at, payload)
    SELECT v.event_id, v.order_row_id, v.order_link_id, v.order_id, v.sequence, v.event_type, v.status, v.cause, v.cause_id, v.source_record, v.occurred_at, v.payload
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, event_id text, order_row_id bigint, order_link_id text, order_id text, sequence integer, event_type text,
                                                  status text, cause text, cause_id text, source_record text, occurred_at bigint, payload jsonb)
    ORDER BY v.i
    ON CONFLICT DO NOTHING`;
  // A report without a status change (amend/cancel refused) has no history row.
  const history = rows
    .filter((r) => r.from_status !== r.status)
    .map((r) => ({
      i: r.i,
      order_row_id: r.order_row_id,
      order_link_id: r.order_link_id,
      order_id: r.order_id,
      from_status: r.from_status,
      to_status: r.status,
      cause: r.cause,
      event_id: r.event_id,
      exchange_update_ms: r.cause === 'submission' ? null : r.occurred_at,
      details: { event_type: r.event_type, filled_qty: r.payload.filled_qty, fees: r.payload.fees, source: r.payload.source, cause_id: r.cause_id, source_record: r.source_record },
    }));
  if (history.length === 0) {
    await tx.query(sql.typeAlias('void')`${insertEventsSql}`);
    return;
  }
  // The events and their history in one statement (no key joins the two tables).
  await tx.query(sql.typeAlias('void')`
    WITH ev AS (${insertEventsSql})
    INSERT INTO order_state_history (order_row_id, order_link_id, order_id, from_status, to_status, cause, event_id, exchange_update_ms, details)
    SELECT v.order_row_id, v.order_link_id, v.order_id, v.from_status, v.to_status, v.cause, v.event_id, v.exchange_update_ms, v.details
    FROM jsonb_to_recordset(${rowsOf(history)}) AS v(i int, order_row_id bigint, order_link_id text, order_id text, from_status text, to_status text, cause text,
                                                     event_id text, exchange_update_ms bigint, details jsonb)
    ORDER BY v.i
    ON CONFLICT DO NOTHING`);
}

/** Refused facts, once per source record and cause (a replayed chunk adds none again). */
export async function insertInvalids(tx: CommonQueryMethods, invalids: ReadonlyArray<{ inv: InvalidRecord; rowId: number | null }>): Promise<void> {
  if (invalids.length === 0) return;
  // The NOT EXISTS below does not see rows of the same statement: keep the first of a (source, cause).
  const seen = new Set<string>();
  const rows: object[] = [];
  for (const { inv, rowId } of invalids) {
    const k = JSON.stringify([inv.source, inv.invalid.cause]);
    if (seen.has(k)) continue;
    seen.add(k);
    const i = inv.invalid;
    rows.push({ i: rows.length, order_row_id: rowId, order_link_id: inv.orderLinkId, order_id: inv.orderId, from_status: i.from, to_status: i.to, cause: i.cause, event_id: inv.source, reason: i.reason, payload: JSON.parse(JSON.stringify(inv.payload ?? {})) as unknown });
  }
  await tx.query(sql.typeAlias('void')`
    INSERT INTO invalid_transitions (order_row_id, order_link_id, order_id, from_status, to_status, cause, event_id, reason, payload)
    SELECT v.order_row_id, v.order_link_id, v.order_id, v.from_status, v.to_status, v.cause, v.event_id, v.reason, v.payload
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, order_row_id bigint, order_link_id text, order_id text, from_status text, to_status text, cause text,
                                                  event_id text, reason text, payload jsonb)
    WHERE NOT EXISTS (SELECT 1 FROM invalid_transitions t WHERE t.event_id = v.event_id AND t.cause = v.cause)
    ORDER BY v.i`);
}

const dec = (v: string | null | undefined): string | null => (v === null || v === undefined || v === '' ? null : (Dec.maybe(v)?.toString() ?? null));

/** Latest position per (category, symbol) of the chunk (one row per key), applied only when newer. */
export async function upsertPositions(tx: CommonQueryMethods, positions: readonly Position[]): Promise<void> {
  if (positions.length === 0) return;
  const rows = positions.map((p) => ({
    category: p.category,
    symbol: p.symbol,
    side: p.side === 'Buy' || p.side === 'Sell' ? p.side : '',
    size: dec(p.size) ?? '0',
    avg_price: dec(p.avgPrice),
    mark_price: dec(p.markPrice),
    position_value: dec(p.positionValue),
    leverage: dec(p.leverage),
    liq_price: dec(p.liqPrice),
    unrealised_pnl: dec(p.unrealisedPnl) ?? '0',
    cum_realised_pnl: dec(p.cumRealisedPnl) ?? '0',
    updated_ms: p.updatedTime,
  }));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO positions (category, symbol, side, size, avg_price, mark_price, position_value, leverage, liq_price, unrealised_pnl, cum_realised_pnl, updated_ms)
    SELECT v.category, v.symbol, v.side, v.size, v.avg_price, v.mark_price, v.position_value, v.leverage, v.liq_price, v.unrealised_pnl, v.cum_realised_pnl, v.updated_ms
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(category text, symbol text, side text, size numeric, avg_price numeric, mark_price numeric, position_value numeric,
                                                  leverage numeric, liq_price numeric, unrealised_pnl numeric, cum_realised_pnl numeric, updated_ms bigint)
    ON CONFLICT (category, symbol) DO UPDATE SET
      side = EXCLUDED.side, size = EXCLUDED.size, avg_price = EXCLUDED.avg_price, mark_price = EXCLUDED.mark_price,
      position_value = EXCLUDED.position_value, leverage = EXCLUDED.leverage, liq_price = EXCLUDED.liq_price,
      unrealised_pnl = EXCLUDED.unrealised_pnl, cum_realised_pnl = EXCLUDED.cum_realised_pnl, updated_ms = EXCLUDED.updated_ms, updated_at = now()
    WHERE positions.updated_ms <= EXCLUDED.updated_ms`);
}

/** Latest balance per coin of the chunk (one row per coin), applied only when newer. */
export async function upsertBalances(tx: CommonQueryMethods, balances: ReadonlyArray<{ coin: WalletBalance['coin'][number]; updatedTime: number }>): Promise<void> {
  if (balances.length === 0) return;
  const rows = balances.map(({ coin: c, updatedTime }) => {
    const wallet = dec(c.walletBalance) ?? '0';
    const locked = dec(c.locked) ?? '0';
    // What is free to trade is balance - locked (or `free` when the exchange says it).
    const available = dec(c.free) ?? Dec.of(wallet).sub(locked).toString();
    return { coin: c.coin, wallet_balance: wallet, available, locked, equity: dec(c.equity), usd_value: dec(c.usdValue), updated_ms: updatedTime };
  });
  await tx.query(sql.typeAlias('void')`
    INSERT INTO balances (coin, wallet_balance, available, locked, equity, usd_value, updated_ms)
    SELECT v.coin, v.wallet_balance, v.available, v.locked, v.equity, v.usd_value, v.updated_ms
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(coin text, wallet_balance numeric, available numeric, locked numeric, equity numeric, usd_value numeric, updated_ms bigint)
    ON CONFLICT (coin) DO UPDATE SET
      wallet_balance = EXCLUDED.wallet_balance, available = EXCLUDED.available, locked = EXCLUDED.locked,
      equity = EXCLUDED.equity, usd_value = EXCLUDED.usd_value, updated_ms = EXCLUDED.updated_ms, updated_at = now()
    WHERE balances.updated_ms <= EXCLUDED.updated_ms`);
}
