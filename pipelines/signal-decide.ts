// Validation and risk & sizing as one stage: signals.raw → signals.valid (audit copy) + orders.intents
// / orders.events / signals.dlq / orders.dlq, every output of a chunk in ONE Kafka transaction with
// the chunk's signals.raw offsets (issue 17, "fewer transactional hops": the two stages share key
// and partitioning, and each hop costs a transaction per chunk and per partition).
//
// It is a composition, not a copy: each record is validated by pipelines/validate.ts (its load,
// process and persist) and, when valid, decided by pipelines/size-risk.ts (its load, process,
// persist, exclusive mutex and cross-instance advisory lock) on the very Signal validation put on
// signals.valid. What each stage does with a record is unchanged, and so are its tests.
//
//   load     validation's reads and risk's in one statement (for every signal id of the chunk);
//            validation's verdict on every record of the chunk (pure, so taken once here); risk's
//            state from its reads.
//   process  validation's outputs (signals.valid with header decided_by, or the refusal with its
//            signals.dlq dead letter and signal_rejected event), then risk's outputs for a valid
//            signal (intents, or a signal_rejected event; an unstorable signal is dead-lettered on
//            orders.dlq as before).
//   persist  validation's rows (signals identity and verdict), then risk's (decisions, orders,
//            signals outcome, trading_state): the `signals` row exists before risk writes its
//            outcome columns, as with two stages. Both in one transaction, the one that holds
//            risk's cross-instance lock for the chunk (size-risk.ts `write`).
//
// Replays. The runner persists before the Kafka commit; a crash in between brings the chunk back.
// Validation, meeting its row already 'decided' from this very record, says "went through" and
// emits nothing: with two stages that was only possible after a group reset, since risk only saw
// committed records. Here it is the ordinary crash replay, and risk's recorded outputs must go out
// again: such a record is validated once more as if its row were still 'valid' (at the signal's own
// time if the present one would call it stale: what was decided is not judged again) and handed to
// risk, which finds its decisions and emits them verbatim. Validation's persist is not asked to
// record it again.
//
// Consumer group and transactional ids are validation's (`validate`): an upgraded order manager goes
// on where validation stopped, and fences an old validation process on every partition it takes.
// docs/deployment.md "Upgrading to the fused stage" has the procedure; `drainRisk` below decides what
// an old risk stage left on signals.valid before the first raw record is read.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Stage, StageRecord, StageResult, Output, RunnerDeps } from './runner.ts';
import { ok, runStage } from './runner.ts';
import { readParts } from '../runtime/db.ts';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import type { DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Registry } from 'prom-client';
import { topicName } from '../runtime/topics.ts';
import type { Signal } from '../schemas/types.ts';
import type { Codec } from '../runtime/codec.ts';
import { createValidateStage, firstOccurrences, inspect, sourceOf, validationReads, type ValidateConfig, type ValidateState, type KnownSignal } from './validate.ts';
import { createSizeRiskStage, riskReads, type SizeRiskConfig, type SizeRiskState } from './size-risk.ts';
import { parseSignalJson } from './signal-format.ts';

export const name = 'signal-decide';

/** The consumer group (and transactional-id prefix) the stage continues: validation's. */
export const GROUP = 'validate';
/** The group of the two-stage risk stage on signals.valid, which `drainRisk` finishes. */
export const RISK_GROUP = 'size-risk';

/** Header on the signals.valid copies this stage writes: decided in the same transaction, not to be decided again. */
export const DECIDED_HEADER = 'decided_by';
/** Header of the end markers `drainRisk` appends to signals.valid. */
export const DRAIN_MARKER_HEADER = 'drain_marker';

/** Input and output record kinds (house style 8). */
export const inputSchema = { topic: 'signals.raw', record: 'raw' } as const;
export const outputSchemas = [
  { topic: 'signals.valid', record: 'Signal' },
  { topic: 'orders.intents', record: 'OrderIntent' },
  { topic: 'orders.events', record: 'OrderEvent' },
  { topic: 'signals.dlq', record: 'DeadLetter' },
  { topic: 'orders.dlq', record: 'DeadLetter' },
] as const;

interface Checked {
  /** Validation's result, as its persist must see it. */
  verdict: StageResult;
  /** What goes out for validation (the verdict, or the replay's new validation of a decided record). */
  out: StageResult;
  /** The signal risk decides, when validation let one through. */
  signal: StageRecord<Signal> | null;
}

export interface SignalDecideState {
  validation: ValidateState;
  risk: SizeRiskState;
  /** Per raw record (topic/partition/offset): validation's part. */
  checked: Map<string, Checked>;
  /** Per raw record: risk's result (persist hands it to risk's persist). */
  decided: Map<string, StageResult>;
}

export interface SignalDecideDeps {
  validate: ValidateConfig;
  risk: SizeRiskConfig;
  /**
   * The topic codec: risk decides on the Signal as signals.valid carries it (encoded and decoded
   * again), as it did reading the topic. The round trip is not a no-op: a lone UTF-16 surrogate
   * that validation lets through becomes U+FFFD, and risk would refuse the raw form as unstorable.
   */
  codec: Codec;
  db?: DatabasePool;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
}

export function createSignalDecideStage(deps: SignalDecideDeps): Stage<Buffer, SignalDecideState> {
  const clock = deps.clock ?? systemClock;
  const log = deps.logger?.child({ stage: name });
  const risk = createSizeRiskStage({ config: deps.risk, db: deps.db, clock, logger: deps.logger, registry: deps.registry });
  // Validation's rows of a chunk are written in risk's transaction (its lock's while the runner
  // holds it): one database transaction per chunk for both stages.
  const validation = createValidateStage({ config: deps.validate, db: deps.db, clock, logger: deps.logger, write: risk.write });
  const topics = {
    raw: topicName('signals.raw', deps.validate.TOPIC_PREFIX),
    valid: topicName('signals.valid', deps.validate.TOPIC_PREFIX),
    signalsDlq: topicName('signals.dlq', deps.validate.TOPIC_PREFIX),
    ordersDlq: topicName('orders.dlq', deps.risk.TOPIC_PREFIX),
  };

  const signalOf = (r: StageResult): Signal | null => (r.kind === 'ok' ? ((r.outputs.find((o) => o.topic === topics.valid)?.value as Signal | undefined) ?? null) : null);

  /** Validation again of a record whose row is 'decided' from this very record (see the header). */
  const revalidate = (rec: StageRecord<Buffer>, state: ValidateState, id: string, row: KnownSignal): StageResult => {
    const known = new Map(state.known);
    known.set(id, { ...row, status: 'valid' });
    const asValid: ValidateState = { ...state, known };
    const now = validation.process(rec, { state: asValid, clock });
    if (now.kind === 'ok') return now;
    const p = inspect(rec, deps.validate.SIGNAL_MAX_BYTES);
    const parsed = p.kind === 'parsed' ? parseSignalJson(p.json) : null;
    if (!parsed?.ok) return now;
    const then: Clock = { now: () => parsed.signal.timestamp };
    return validation.process(rec, { state: asValid, clock: then });
  };

  /** The Signal as a reader of signals.valid gets it. */
  const carried = async (sig: Signal | null): Promise<Signal | null> => (sig ? ((await deps.codec.decode(topics.valid, await deps.codec.encode(topics.valid, sig))) as Signal) : null);
  const withSignal = (r: StageResult, sig: Signal): StageResult => ({ ...r, outputs: (r.outputs ?? []).map((o) => (o.topic === topics.valid ? { ...o, value: sig } : o)) }) as StageResult;

  const load = async (records: StageRecord<Buffer>[]): Promise<SignalDecideState> => {
    // Validation's reads and risk's in one statement (runtime/db.ts readParts): risk's for every
    // signal id of the chunk, a superset of the valid signals it decides (the rows of the others are
    // never looked at), so nothing waits for validation's verdicts.
    const firstInChunk = firstOccurrences(records, deps.validate.SIGNAL_MAX_BYTES);
    const ids = [...firstInChunk.keys()];
    if (!deps.db) throw new Error('signal-decide stage: load needs deps.db');
    const rows = await readParts(deps.db, { ...validationReads(ids), ...riskReads(ids, clock.now()) });
    const v = validation.stateFrom(rows, firstInChunk);
    const checked = new Map<string, Checked>();
    for (const rec of records) {
      const src = sourceOf(rec);
      const verdict = validation.process(rec, { state: v, clock });
      let out: StageResult = verdict;
      if (verdict.kind === 'ok' && verdict.outputs.length === 0) {
        const p = inspect(rec, deps.validate.SIGNAL_MAX_BYTES);
        const id = p.kind === 'parsed' ? p.signalId : null;
        const row = id ? v.known.get(id) : undefined;
        if (id && row) {
          out = revalidate(rec, v, id, row);
          if (!signalOf(out)) log?.warn({ signal_id: id, source: src, reason: out.kind === 'reject' ? out.code : null }, 'decided signal replayed but no longer valid: its recorded outputs are not emitted again');
        }
      }
      const sig = await carried(signalOf(out));
      if (sig) out = withSignal(out, sig);
      const signal: StageRecord<Signal> | null = sig
        ? { value: sig, key: sig.asset, headers: { ...rec.headers, signal_id: sig.signal_id }, topic: topics.valid, partition: rec.partition, offset: rec.offset, timestamp: rec.timestamp, traceId: rec.traceId }
        : null;
      checked.set(src, { verdict, out: sig ? out : verdict, signal });
    }
    return { validation: v, risk: risk.stateFrom(rows), checked, decided: new Map() };
  };

  const processRecord = (rec: StageRecord<Buffer>, ctx: { state: SignalDecideState; clock: Clock }): StageResult => {
    const src = sourceOf(rec);
    const c = ctx.state.checked.get(src);
    if (!c) return validation.process(rec, { state: ctx.state.validation, clock: ctx.clock }); // not loaded: cannot happen; validation alone
    if (!c.signal) return c.out;
    const audit: Output[] = (c.out.outputs ?? []).map((o) => (o.topic === topics.valid ? { ...o, headers: { ...o.headers, [DECIDED_HEADER]: name } } : o));
    const r = risk.process(c.signal, { state: ctx.state.risk, clock: ctx.clock });
    ctx.state.decided.set(src, r);
    const outputs = [...audit, ...(r.outputs ?? [])];
    // Risk's refusals of data (an unstorable signal) keep their own dead-letter topic.
    if (r.kind === 'reject') return { kind: 'reject', code: r.code, detail: r.detail, outputs, signalId: r.signalId ?? null, dlq: topics.ordersDlq };
    return ok(...outputs);
  };

  const persist = async (items: Array<{ rec: StageRecord<Buffer>; result: StageResult }>, state: SignalDecideState): Promise<void> => {
    const checks = items.map(({ rec }) => ({ rec, c: state.checked.get(sourceOf(rec)) }));
    await validation.persist!(
      checks.filter((x) => x.c).map(({ rec, c }) => ({ rec, result: c!.verdict })),
      state.validation,
    );
    const decided: Array<{ rec: StageRecord<Signal>; result: StageResult }> = [];
    for (const { rec, c } of checks) {
      const r = state.decided.get(sourceOf(rec));
      if (c?.signal && r) decided.push({ rec: c.signal, result: r });
    }
    await risk.persist!(decided, state.risk);
  };

  return {
    name,
    input: topics.raw,
    inputFormat: 'raw',
    dlq: topics.signalsDlq,
    load,
    process: processRecord,
    persist,
    exclusive: true,
    // Every signal has an output (its decision, or its rejection): see the runner.
    eagerTransaction: true,
    ...(risk.lockAcross ? { lockAcross: risk.lockAcross } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// The drain of the two-stage risk group

export interface DrainDeps extends Omit<RunnerDeps, 'groupId'> {
  /** The risk stage (pipelines/size-risk.ts) to decide with. */
  risk: Stage<Signal, SizeRiskState>;
  /** Physical signals.valid. */
  topic: string;
  /** The two-stage risk group, prefixed (RISK_GROUP). */
  groupId: string;
  /** How often the committed offsets are read while draining. */
  pollMs?: number;
}

export interface DrainResult {
  /** false: the group had nothing (a new install, or drained and deleted at an earlier start). */
  drained: boolean;
  /** The group was deleted after draining (refused while an old risk process is still a member). */
  deleted: boolean;
}

/**
 * Decide, exactly once, what the two-stage risk group had not consumed of signals.valid, before the
 * fused stage reads its first raw record. It runs risk itself in that group (its offsets, its
 * transactional ids: an old risk process still running shares the partitions and is fenced on those
 * it loses), skipping the copies the fused stage wrote (decided in their own transaction), until the
 * group has committed past an end marker appended to each partition at the start: everything before
 * a marker, committed transactions and aborted ones alike, is then behind the group. Then the group
 * is deleted, so later starts skip all this; while an old member remains the broker refuses, and the
 * next start drains again (cheap: the fused copies are skipped before decoding).
 */
export async function drainRisk(deps: DrainDeps): Promise<DrainResult> {
  const log = deps.logger.child({ drain: deps.groupId });
  const admin = deps.kafka.admin();
  await admin.connect();
  try {
    const committed = await admin.groupOffsets(deps.groupId, deps.topic);
    if (!committed.some((c) => BigInt(c.offset) >= 0n)) return { drained: false, deleted: false };
    const ends = await admin.topicOffsets(deps.topic);
    const behind = ends.filter((e) => {
      const c = BigInt(committed.find((x) => x.partition === e.partition)?.offset ?? '-1');
      return (c < 0n ? BigInt(e.low) : c) < BigInt(e.high);
    });
    if (behind.length > 0) {
      const token = randomUUID();
      const producer = deps.kafka.producer();
      await producer.connect();
      const marks = new Map<number, bigint>();
      try {
        for (const e of behind) {
          const at = await producer.sendAt(deps.topic, [{ key: null, value: Buffer.alloc(0), partition: e.partition, headers: { [DRAIN_MARKER_HEADER]: token } }]);
          marks.set(e.partition, BigInt(at[0]!.offset));
        }
      } finally {
        await producer.disconnect().catch(() => {});
      }
      log.info({ partitions: [...marks.keys()], token }, 'draining what the two-stage risk group left on signals.valid');
      const stage: Stage<Signal, SizeRiskState> = { ...deps.risk, skip: (msg) => msg.headers[DRAIN_MARKER_HEADER] !== undefined || msg.headers[DECIDED_HEADER] !== undefined };
      const running = await runStage(stage, { ...deps, groupId: deps.groupId });
      try {
        for (;;) {
          const now = await admin.groupOffsets(deps.groupId, deps.topic);
          const left = [...marks].filter(([p, m]) => BigInt(now.find((c) => c.partition === p)?.offset ?? '-1') <= m);
          if (left.length === 0) break;
          await sleep(deps.pollMs ?? 200);
        }
      } finally {
        await running.stop();
      }
      log.info('signals.valid drained');
    }
    try {
      await admin.deleteGroup(deps.groupId);
      log.info('two-stage risk group deleted: later starts have nothing to drain');
      return { drained: true, deleted: true };
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'two-stage risk group not deleted (an old risk process still a member?): drained again at the next start');
      return { drained: true, deleted: false };
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
