// The trading_state row's one way to move outside the risk stage's own evaluation: lock the row,
// let the transition table (pipelines/trading-state.ts) decide, write the new state and one
// trading_state_transitions row when anything changed, all in the caller's transaction. Used by the
// kill switch (engage / release) and by the stage runner's conflict handling (halt).
import { z } from 'zod';
import { sql, type CommonQueryMethods } from '../runtime/db.ts';
import type { TradingStateName, TransitionCause } from './trading-state.ts';

export interface TradingStateChange {
  from: TradingStateName;
  to: TradingStateName;
  killSwitchBefore: boolean;
  killSwitch: boolean;
  changed: boolean;
}

const stateRow = z.object({ state: z.enum(['ACTIVE', 'REDUCING', 'HALTED']), kill_switch: z.boolean(), reason: z.string().nullable() });

/**
 * `decide` gets the locked row and returns where it goes (it throws InvalidStateTransition for a move
 * the table does not have). The stored reason is `<cause>: <reason>`, so a state a conflict or the
 * kill switch caused is never taken for one the daily loss limit caused.
 */
export async function moveTradingState(
  tx: CommonQueryMethods,
  decide: (row: { state: TradingStateName; killSwitch: boolean }) => { to: TradingStateName; killSwitch: boolean; cause: TransitionCause },
  opts: { reason: string; actor: string; at: number; details?: Record<string, unknown> },
): Promise<TradingStateChange> {
  const row = await tx.one(sql.type(stateRow)`SELECT state, kill_switch, reason FROM trading_state WHERE id FOR UPDATE`);
  const d = decide({ state: row.state, killSwitch: row.kill_switch });
  const changed = d.to !== row.state || d.killSwitch !== row.kill_switch;
  if (changed) {
    const at = sql.timestamp(new Date(opts.at));
    const why = `${d.cause}: ${opts.reason}`;
    await tx.query(sql.typeAlias('void')`
      UPDATE trading_state SET state = ${d.to}, kill_switch = ${d.killSwitch}, reason = ${why}, updated_by = ${opts.actor}, updated_at = ${at} WHERE id`);
    await tx.query(sql.typeAlias('void')`
      INSERT INTO trading_state_transitions (from_state, to_state, kill_switch, reason, actor, details, at)
      VALUES (${row.state}, ${d.to}, ${d.killSwitch}, ${why}, ${opts.actor},
              ${sql.jsonb({ cause: d.cause, kill_switch_before: row.kill_switch, previous_reason: row.reason, ...opts.details } as Parameters<typeof sql.jsonb>[0])}, ${at})`);
  }
  return { from: row.state, to: d.to, killSwitchBefore: row.kill_switch, killSwitch: d.killSwitch, changed };
}
