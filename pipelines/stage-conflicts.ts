// Records a stage could not apply to the state it keeps (see the runner's header): their row in
// stage_conflicts, written only by the runner through this sink, and the halt some stages ask for.
// One PostgreSQL transaction, idempotent by (group, source), so a chunk run again after a crash
// records the conflict once and moves the trading state once.
import { z } from 'zod';
import { sql, type DatabasePool, type CommonQueryMethods } from '../runtime/db.ts';
import { transition } from './trading-state.ts';
import { moveTradingState } from './trading-state-store.ts';

/** What a conflict does besides the dead letter: nothing more, or trading HALTED with its reason. */
export type ConflictAction = 'dead_letter' | 'halt';

export interface StageConflict {
  stage: string;
  groupId: string;
  /** topic/partition/offset of the input record. */
  source: string;
  key: string | null;
  /** state_conflict | invalid_record | record_too_large (the dead letter's reason code). */
  reason: string;
  action: ConflictAction;
  pgCode: string | null;
  constraint: string | null;
  detail: string;
  at: number;
}

export interface ConflictSink {
  record(c: StageConflict): Promise<void>;
}

export function conflictSink(db: DatabasePool): ConflictSink {
  return {
    record: (c) =>
      db.transaction(async (tx) => {
        const fresh = await tx.maybeOneFirst(sql.type(z.object({ id: z.number() }))`
          INSERT INTO stage_conflicts (stage, group_id, source, record_key, reason, action, pg_code, constraint_name, detail, at)
          VALUES (${c.stage}, ${c.groupId}, ${c.source}, ${c.key}, ${c.reason}, ${c.action}, ${c.pgCode}, ${c.constraint}, ${c.detail.slice(0, 2000)}, ${sql.timestamp(new Date(c.at))})
          ON CONFLICT (group_id, source) DO NOTHING RETURNING id`);
        if (fresh === null || c.action !== 'halt') return;
        await moveTradingState(tx, (cur) => ({ to: transition(cur.state, 'state_conflict'), killSwitch: cur.killSwitch, cause: 'state_conflict' }), {
          reason: `${c.stage} could not record ${c.source} (${c.reason}${c.constraint ? ` on ${c.constraint}` : ''}); see stage_conflicts ${fresh}`,
          actor: `stage:${c.stage}`,
          at: c.at,
          details: { conflict_id: fresh, source: c.source, detail: c.detail.slice(0, 500) },
        });
      }),
  };
}

const conflictRow = z.object({ stage: z.string(), reason: z.string(), action: z.string(), n: z.number(), last_at: z.number(), last_source: z.string(), last_detail: z.string() });
export type ConflictSummary = z.infer<typeof conflictRow>;

/** Conflicts of the last `sinceMs`, per stage and reason, newest first (for `cli status`). */
export async function recentConflicts(db: CommonQueryMethods, now: number, sinceMs = 86_400_000): Promise<readonly ConflictSummary[]> {
  return db.any(sql.type(conflictRow)`
    SELECT DISTINCT ON (stage, reason, action) stage, reason, action,
           (count(*) OVER (PARTITION BY stage, reason, action))::int AS n,
           (extract(epoch FROM at) * 1000)::float8 AS last_at, source AS last_source, detail AS last_detail
    FROM stage_conflicts WHERE at >= ${sql.timestamp(new Date(now - sinceMs))}
    ORDER BY stage, reason, action, at DESC`);
}
