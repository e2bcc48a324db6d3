// A pipeline stage as a unit of a service: the runner (pipelines/runner.ts) driven with the
// runtime's Kafka port, codec, metrics and settings, its conflicts recorded in stage_conflicts.
import type { Runtime, UnitFactory } from '../runtime/service.ts';
import { runStage, type Stage } from './runner.ts';
import { conflictSink } from './stage-conflicts.ts';

/** Run a pipeline stage under the runner with this runtime's Kafka, codecs, metrics and settings. */
export function stageUnit<I, S>(make: (rt: Runtime) => Stage<I, S> | Promise<Stage<I, S>>): UnitFactory {
  return async (rt) => {
    const stage = await make(rt);
    const running = await runStage(stage, {
      kafka: rt.kafka,
      codec: rt.codec,
      logger: rt.logger,
      metrics: rt.metrics,
      clock: rt.clock,
      groupId: rt.group(stage.name),
      batchMax: rt.cfg.STAGE_BATCH_MAX,
      retryMaxMs: rt.cfg.STAGE_RETRY_MAX_MS,
      sessionTimeoutMs: rt.cfg.KAFKA_SESSION_TIMEOUT_MS,
      onFatal: rt.fatal,
      conflicts: conflictSink(rt.db),
    });
    // Conflicts since start in /readyz: the stage is still consuming (ready), but someone should look.
    return { name: stage.name, ready: running.joined, detail: () => (running.conflicts().total ? { conflicts: running.conflicts() } : undefined), stop: running.stop };
  };
}
