// The model service's PostgreSQL edge: versions (weights, feature spec, training range, metrics;
// lifecycle candidate -> active -> retired | rolled_back, at most one active), training samples
// (one per signal; a replay is "already done"), mode transitions, and what it reads of the order
// manager's tables: the exposure (positions) and the quantity filters (instruments). slonik `sql` tag only.
import { z } from 'zod';
import { sql, type CommonQueryMethods, type DatabasePool } from '../runtime/db.ts';
import type { FeatureSpec } from './features.ts';
import type { LabelledRow, ModelArtifacts } from './learner.ts';
import type { Mode, Transition } from './policy.ts';
import type { TrainingSample } from './windows.ts';
import { SPREAD_FEATURE, type CostObservation } from './money.ts';
import type { QtyFilter } from './exits.ts';

export interface VersionRecord {
  version: string;
  status: 'candidate' | 'active' | 'retired' | 'rolled_back';
  parent_version: string | null;
  artifacts: ModelArtifacts;
  sample_count: number;
  train_from_ts: number | null;
  train_to_ts: number | null;
  train_from_offsets: Record<string, string> | null;
  train_to_offsets: Record<string, string> | null;
  metrics: Record<string, unknown>;
  notes: string | null;
  promoted_at: number | null;
}

const versionRow = z.object({
  version: z.string(),
  status: z.enum(['candidate', 'active', 'retired', 'rolled_back']),
  parent_version: z.string().nullable(),
  topology: z.unknown(),
  weights: z.instanceof(Buffer),
  weight_specs: z.array(z.unknown()),
  feature_spec: z.unknown(),
  sample_count: z.number(),
  train_from_ts: z.number().nullable(),
  train_to_ts: z.number().nullable(),
  train_from_offsets: z.record(z.string()).nullable(),
  train_to_offsets: z.record(z.string()).nullable(),
  metrics: z.record(z.unknown()),
  notes: z.string().nullable(),
  promoted_at: z.number().nullable(),
});

const toRecord = (r: z.infer<typeof versionRow>): VersionRecord => ({
  version: r.version,
  status: r.status,
  parent_version: r.parent_version,
  artifacts: { topology: r.topology, weightSpecs: r.weight_specs, weights: r.weights, featureSpec: r.feature_spec as FeatureSpec },
  sample_count: r.sample_count,
  train_from_ts: r.train_from_ts,
  train_to_ts: r.train_to_ts,
  train_from_offsets: r.train_from_offsets,
  train_to_offsets: r.train_to_offsets,
  metrics: r.metrics,
  notes: r.notes,
  promoted_at: r.promoted_at,
});

const ts = (ms: number | null) => (ms === null ? null : sql.timestamp(new Date(ms)));

export async function saveVersion(db: CommonQueryMethods, v: Omit<VersionRecord, 'status' | 'promoted_at'>): Promise<void> {
  await db.query(sql.typeAlias('void')`
    INSERT INTO model_versions (version, status, parent_version, topology, weights, weight_specs, feature_spec, train_from_offsets, train_to_offsets,
                                train_from_ts, train_to_ts, sample_count, metrics, notes)
    VALUES (${v.version}, 'candidate', ${v.parent_version}, ${sql.jsonb(v.artifacts.topology as never)}, ${sql.binary(v.artifacts.weights)},
            ${sql.jsonb(v.artifacts.weightSpecs as never)}, ${sql.jsonb(v.artifacts.featureSpec as never)},
            ${v.train_from_offsets ? sql.jsonb(v.train_from_offsets) : null}, ${v.train_to_offsets ? sql.jsonb(v.train_to_offsets) : null},
            ${ts(v.train_from_ts)}, ${ts(v.train_to_ts)}, ${v.sample_count}, ${sql.jsonb(v.metrics as never)}, ${v.notes})
    ON CONFLICT (version) DO NOTHING`);
}

const selectVersion = sql.fragment`
  SELECT version, status, parent_version, topology, weights, weight_specs, feature_spec, sample_count, train_from_ts, train_to_ts,
         train_from_offsets, train_to_offsets, metrics, notes, promoted_at
  FROM model_versions`;

export async function loadVersion(db: CommonQueryMethods, version: string): Promise<VersionRecord | null> {
  const r = await db.maybeOne(sql.type(versionRow)`${selectVersion} WHERE version = ${version}`);
  return r ? toRecord(r) : null;
}

export async function loadActive(db: CommonQueryMethods): Promise<VersionRecord | null> {
  const r = await db.maybeOne(sql.type(versionRow)`${selectVersion} WHERE status = 'active'`);
  return r ? toRecord(r) : null;
}

export async function activeVersionName(db: CommonQueryMethods): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ version: z.string() }))`SELECT version FROM model_versions WHERE status = 'active'`);
}

/** The version to roll back to: the most recently promoted one that is retired (not rolled back). */
export async function previousVersion(db: CommonQueryMethods): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ version: z.string() }))`
    SELECT version FROM model_versions WHERE status = 'retired' AND promoted_at IS NOT NULL ORDER BY promoted_at DESC, version DESC LIMIT 1`);
}

/** Make `version` the active one; the current active becomes `demoteTo` (retired, or rolled_back). */
export async function activate(db: DatabasePool, version: string, now: number, demoteTo: 'retired' | 'rolled_back' = 'retired'): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(sql.typeAlias('void')`
      UPDATE model_versions SET status = ${demoteTo}, retired_at = ${sql.timestamp(new Date(now))} WHERE status = 'active' AND version <> ${version}`);
    await tx.query(sql.typeAlias('void')`
      UPDATE model_versions SET status = 'active', promoted_at = ${sql.timestamp(new Date(now))}, retired_at = NULL WHERE version = ${version}`);
  });
}

/** Demote the active version (fall back to warm-up). */
export async function deactivate(db: CommonQueryMethods, now: number, to: 'retired' | 'rolled_back'): Promise<void> {
  await db.query(sql.typeAlias('void')`UPDATE model_versions SET status = ${to}, retired_at = ${sql.timestamp(new Date(now))} WHERE status = 'active'`);
}

export async function saveLiveMetrics(db: CommonQueryMethods, version: string, live: Record<string, number>): Promise<void> {
  await db.query(sql.typeAlias('void')`UPDATE model_versions SET live_metrics = ${sql.jsonb(live)} WHERE version = ${version}`);
}

/** Store samples; one per signal_id, so a replay of the same offsets changes nothing. Returns how many were new. */
export async function saveSamples(db: CommonQueryMethods, samples: readonly TrainingSample[]): Promise<number> {
  return (await insertSamples(db, samples)).size;
}

/** Store samples (as saveSamples); returns the signal_ids that were new (a redelivered window is not counted twice by its readers). */
export async function insertSamples(db: CommonQueryMethods, samples: readonly TrainingSample[]): Promise<Set<string>> {
  const inserted = new Set<string>();
  for (let i = 0; i < samples.length; i += 500) {
    const rows = samples.slice(i, i + 500).map(
      (s) => sql.fragment`(${s.signal_id}, ${s.asset}, ${s.side}, ${sql.timestamp(new Date(s.ts))}, ${sql.array(s.features, 'float8')}, ${s.feature_spec}, ${s.label}, ${s.reward},
              ${s.outcome}, ${s.is_warmup}, ${s.model_version}, ${s.strategy_id}, ${s.source.topic}, ${s.source.partition}, ${s.source.offset},
              ${sql.jsonb(s.source_offsets as never)}, ${s.market_return_bps}, ${s.confidence}, ${sql.jsonb(s.details)})`,
    );
    const ids = await db.anyFirst(sql.type(z.object({ signal_id: z.string() }))`
      INSERT INTO training_samples (signal_id, asset, side, ts, features, feature_spec, label, reward, outcome, is_warmup, model_version, strategy_id,
                                    source_topic, source_partition, source_offset, source_offsets, market_return_bps, confidence, details)
      VALUES ${sql.join(rows, sql.fragment`, `)}
      ON CONFLICT (signal_id) DO NOTHING
      RETURNING signal_id::text AS signal_id`);
    for (const id of ids) inserted.add(id);
  }
  return inserted;
}

const sampleRow = z.object({
  signal_id: z.string(),
  asset: z.string(),
  side: z.enum(['buy', 'sell']),
  ts: z.number(),
  features: z.array(z.number()),
  feature_spec: z.string(),
  label: z.number().nullable(),
  reward: z.number().nullable(),
  market_return_bps: z.number().nullable(),
  outcome: z.string().nullable(),
  is_warmup: z.boolean(),
  model_version: z.string().nullable(),
  source_topic: z.string().nullable(),
  source_partition: z.number().nullable(),
  source_offset: z.number().nullable(),
});
export type StoredSample = z.infer<typeof sampleRow>;

/** The most recent `limit` samples of a feature spec, oldest first. */
export async function loadSamples(db: CommonQueryMethods, opts: { featureSpec: string; limit: number; fromTs?: number }): Promise<StoredSample[]> {
  const rows = await db.any(sql.type(sampleRow)`
    SELECT signal_id::text AS signal_id, asset, side, ts, features, feature_spec, label, reward, market_return_bps, outcome, is_warmup, model_version,
           source_topic, source_partition, source_offset
    FROM training_samples
    WHERE feature_spec = ${opts.featureSpec} AND ts >= ${sql.timestamp(new Date(opts.fromTs ?? 0))}
    ORDER BY ts DESC, signal_id DESC LIMIT ${opts.limit}`);
  return [...rows].reverse();
}

const trainingRow = z.object({
  ts: z.number(),
  features: z.array(z.number()),
  label: z.union([z.literal(0), z.literal(1)]),
  market_return_bps: z.number(),
  asset: z.string(),
  side: z.enum(['buy', 'sell']),
  reward: z.number().nullable(),
  filled_qty: z.number().nullable(),
  fee_bps: z.number().nullable(),
  slippage_bps: z.number().nullable(),
});

/** details.x as a number (null when absent or not numeric). */
const detail = (k: string) => sql.fragment`CASE WHEN jsonb_typeof(details -> ${k}) = 'number' THEN (details ->> ${k})::float8 END`;

const toLabelled = (r: z.infer<typeof trainingRow>): LabelledRow => ({
  ts: r.ts,
  features: r.features,
  label: r.label,
  market_return_bps: r.market_return_bps,
  asset: r.asset,
  exec: (r.filled_qty ?? 0) > 0 && r.reward !== null ? { side: r.side === 'buy' ? 1 : -1, reward_bps: r.reward, fee_bps: r.fee_bps, slippage_bps: r.slippage_bps } : null,
});

/**
 * What a retraining reads: of the most recent `limit` samples of a feature spec (as loadSamples),
 * the labelled ones with a market return, oldest first, reduced to what training and the money
 * evaluation use (features, label, market return; asset, and the fill's side, reward, fee and
 * slippage), not whole rows: a 50k-sample retraining then holds only what it needs.
 */
export async function loadTrainingRows(db: CommonQueryMethods, opts: { featureSpec: string; limit: number; fromTs?: number }): Promise<LabelledRow[]> {
  const rows = await db.any(sql.type(trainingRow)`
    SELECT ts, features, label, market_return_bps, asset, side, reward, filled_qty, fee_bps, slippage_bps FROM (
      SELECT signal_id, ts, features, label, market_return_bps, asset, side, reward,
             ${detail('filled_qty')} AS filled_qty, ${detail('fee_bps')} AS fee_bps, ${detail('slippage_bps')} AS slippage_bps
      FROM training_samples
      WHERE feature_spec = ${opts.featureSpec} AND ts >= ${sql.timestamp(new Date(opts.fromTs ?? 0))}
      ORDER BY ts DESC, signal_id DESC LIMIT ${opts.limit}) recent
    WHERE label IS NOT NULL AND market_return_bps IS NOT NULL
    ORDER BY ts, signal_id`);
  return rows.map(toLabelled);
}

const costRow = z.object({ asset: z.string(), market_return_bps: z.number(), spread_bps: z.number().nullable(), filled_qty: z.number().nullable(), fee_bps: z.number().nullable(), slippage_bps: z.number().nullable() });

/**
 * The newest `perAsset` samples of each asset with a market return, oldest first, as the cost book
 * observes them: a restart measures costs and moves from yesterday's windows, not from nothing.
 */
export async function loadCostObservations(db: CommonQueryMethods, perAsset: number): Promise<CostObservation[]> {
  const rows = await db.any(sql.type(costRow)`
    SELECT asset, market_return_bps, spread_bps, filled_qty, fee_bps, slippage_bps FROM (
      SELECT asset, ts, signal_id, market_return_bps, features[${SPREAD_FEATURE + 1}] AS spread_bps,
             ${detail('filled_qty')} AS filled_qty, ${detail('fee_bps')} AS fee_bps, ${detail('slippage_bps')} AS slippage_bps,
             row_number() OVER (PARTITION BY asset ORDER BY ts DESC, signal_id DESC) AS k
      FROM training_samples WHERE market_return_bps IS NOT NULL) recent
    WHERE k <= ${perAsset}
    ORDER BY ts, signal_id`);
  return rows.map((r) => ({ asset: r.asset, market_return_bps: r.market_return_bps, spread_bps: r.spread_bps ?? 0, fill: (r.filled_qty ?? 0) > 0 ? { fee_bps: r.fee_bps, slippage_bps: r.slippage_bps } : undefined }));
}

export async function recordTransition(db: CommonQueryMethods, t: Transition, at: number): Promise<void> {
  await db.query(sql.typeAlias('void')`
    INSERT INTO model_mode_transitions (from_mode, to_mode, model_version, reason, metrics, at)
    VALUES (${t.from}, ${t.to}, ${t.version}, ${t.reason}, ${sql.jsonb({ ...t.metrics, from_version: t.fromVersion })}, ${sql.timestamp(new Date(at))})`);
}

/** The mode the service was last in, and when warm-up first started (null: never ran). */
export async function lastMode(db: CommonQueryMethods): Promise<{ mode: Mode; version: string | null; firstAt: number | null } | null> {
  const last = await db.maybeOne(sql.type(z.object({ to_mode: z.enum(['warmup', 'model']), model_version: z.string().nullable() }))`
    SELECT to_mode, model_version FROM model_mode_transitions ORDER BY at DESC, id DESC LIMIT 1`);
  const first = await db.maybeOneFirst(sql.type(z.object({ at: z.number() }))`SELECT at FROM model_mode_transitions ORDER BY at, id LIMIT 1`);
  return last ? { mode: last.to_mode, version: last.model_version, firstAt: first } : null;
}

/** Signed position notional per symbol (linear positions; Sell counts negative). */
export async function exposures(db: CommonQueryMethods): Promise<Map<string, number>> {
  const rows = await db.any(sql.type(z.object({ symbol: z.string(), side: z.string(), notional: z.string().nullable() }))`
    SELECT symbol, side, (size * COALESCE(mark_price, avg_price, 0))::text AS notional FROM positions WHERE size > 0`);
  const out = new Map<string, number>();
  for (const r of rows) out.set(r.symbol, (out.get(r.symbol) ?? 0) + (r.side === 'Sell' ? -1 : 1) * Number(r.notional ?? 0));
  return out;
}

/** Quantity filters of the instruments, by `${category}:${symbol}` (the horizon exits round as the order manager does). */
export async function qtyFilters(db: CommonQueryMethods): Promise<Map<string, QtyFilter>> {
  const rows = await db.any(sql.type(z.object({ category: z.string(), symbol: z.string(), step: z.string(), min_qty: z.string(), min_value: z.string() }))`
    SELECT category, symbol, COALESCE(qty_step, base_precision)::text AS step, min_order_qty::text AS min_qty,
           COALESCE(CASE WHEN category = 'spot' THEN min_order_amt ELSE min_notional_value END, 0)::text AS min_value
      FROM instruments`);
  return new Map(rows.map((r) => [`${r.category}:${r.symbol}`, { qtyStep: Number(r.step), minQty: Number(r.min_qty), minValue: Number(r.min_value) }]));
}
