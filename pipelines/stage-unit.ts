// A pipeline stage as a unit of a service: the runner (pipelines/runner.ts) driven with the
// runtime's Kafka port, codec, metrics and settings, its conflicts recorded in stage_conflicts.
import type { Runtime } from '../runtime/service.ts';
import { defineUnit, topicsOf, type UnitDefinition } from '../runtime/unit.ts';
import { runStage, type RunnerDeps, type Stage } from './runner.ts';
import { conflictSink } from './stage-conflicts.ts';

/** A stage's definition: the unit's declaration, and how to build the stage on a runtime. */
export type StageUnitSpec<I, S> = Omit<UnitDefinition, 'create'> & {
  make: (rt: Runtime) => Stage<I, S> | Promise<Stage<I, S>>;
  /** Consumer group and transactional-id prefix, before TOPIC_PREFIX; default the stage's name. */
  group?: string;
};

/** The runner's dependencies on this runtime, for the consumer group `group` (before TOPIC_PREFIX). */
export function runnerDeps(rt: Runtime, group: string): RunnerDeps {
  return {
    kafka: rt.kafka,
    codec: rt.codec,
    logger: rt.logger,
    metrics: rt.metrics,
    clock: rt.clock,
    groupId: rt.group(group),
    batchMax: rt.cfg.STAGE_BATCH_MAX,
    retryMaxMs: rt.cfg.STAGE_RETRY_MAX_MS,
    sessionTimeoutMs: rt.cfg.KAFKA_SESSION_TIMEOUT_MS,
    onFatal: rt.fatal,
    conflicts: conflictSink(rt.db),
  };
}

/**
 * A unit that runs a pipeline stage under the runner with this runtime's Kafka, codecs, metrics and
 * settings. The declaration is checked against the stage it builds (name, input topics, dead-letter
 * topic among the outputs), so what the composition root says a stage reads is what it reads.
 */
export function stageUnit<I, S>(spec: StageUnitSpec<I, S>): UnitDefinition {
  const { make, group, ...decl } = spec;
  return defineUnit({
    ...decl,
    create: async (rt) => {
      const stage = await make(rt);
      assertDeclared(decl, stage, rt.cfg.TOPIC_PREFIX);
      const running = await runStage(stage, runnerDeps(rt, group ?? stage.name));
      // Conflicts since start in /readyz: the stage is still consuming (ready), but someone should look.
      return { name: stage.name, ready: running.joined, detail: () => (running.conflicts().total ? { conflicts: running.conflicts() } : undefined), stop: running.stop };
    },
  });
}

/** A declaration that disagrees with its stage is a wiring bug: refuse to start with both lists. */
export function assertDeclared(decl: Pick<UnitDefinition, 'name' | 'inputs' | 'outputs'>, stage: Pick<Stage<unknown, unknown>, 'name' | 'input' | 'dlq'>, prefix: string): void {
  const declared = topicsOf(decl.inputs, prefix).sort();
  const actual = [...new Set(Array.isArray(stage.input) ? stage.input : [stage.input])].sort();
  const problems: string[] = [];
  if (stage.name !== decl.name) problems.push(`the stage is named ${stage.name}`);
  if (declared.join() !== actual.join()) problems.push(`it consumes [${actual.join(', ')}], declared [${declared.join(', ')}]`);
  if (!topicsOf(decl.outputs, prefix).includes(stage.dlq)) problems.push(`its dead-letter topic ${stage.dlq} is not among the declared outputs`);
  if (problems.length) throw new Error(`unit ${decl.name}: ${problems.join('; ')}`);
}
