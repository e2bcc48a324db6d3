// Which units make up each service. A unit is a stage under the runner or a connector; the order
// is the start order (downstream first, so nothing is produced before its consumer exists).
import type { UnitFactory } from '../runtime/service.ts';
import { stageUnit } from '../runtime/service.ts';
import { createValidateStage, parseConfig as validateConfig } from '../pipelines/validate.ts';
import { createSignalBridge, parseConfig as bridgeConfig } from '../connectors/signal-bridge.ts';
import { createSizeRiskStage, parseConfig as riskConfig } from '../pipelines/size-risk.ts';

const signalBridge: UnitFactory = async (rt) => {
  const bridge = createSignalBridge({ kafka: rt.kafka, logger: rt.logger.child({ unit: 'signal-bridge' }), metrics: rt.metrics, config: bridgeConfig(rt.cfg), clock: rt.clock });
  await bridge.start();
  return { name: 'signal-bridge', ready: () => bridge.ready(), stop: () => bridge.stop() };
};

const sizeRisk = stageUnit((rt) => createSizeRiskStage({ config: riskConfig(rt.cfg), db: rt.db, clock: rt.clock, logger: rt.logger.child({ stage: 'size-risk' }) }));

const validate = stageUnit((rt) => createValidateStage({ config: validateConfig(rt.cfg), db: rt.db, clock: rt.clock, logger: rt.logger.child({ stage: 'validate' }) }));

export const SERVICES: Record<string, { doc: string; units: UnitFactory[] }> = {
  'order-manager': {
    doc: 'signal bridge, validation, risk & sizing, placement',
    units: [sizeRisk, validate, signalBridge],
  },
};
