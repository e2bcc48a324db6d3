// A unit of a service (a stage under the runner, a bridge, a connector), declared one way: what it
// is called, which settings it reads, what it consumes and produces, which tables it writes, and a
// factory that takes one deps object (the runtime) and returns the running unit. The composition
// root (stack/services.ts) lists the definitions per service; the config loader gets their settings
// from there, and tests/foundation/units.test.ts reads the declarations (every topic has a producer,
// one writer per table or column group) so that the wiring can be checked without starting it.
import type { z } from 'zod';
import type { Runtime } from './service.ts';
import type { TopicName } from './topics.ts';

/** A running unit: readiness for /readyz and a graceful stop. */
export interface Unit {
  name: string;
  ready(): boolean | Promise<boolean>;
  /** Shown in /readyz next to the unit's readiness. */
  detail?(): unknown;
  stop(): Promise<void>;
}

/**
 * Where a unit reads or writes besides PostgreSQL: a Kafka topic by its logical name (runtime/topics.ts),
 * a RabbitMQ queue by the setting that names it, or Bybit.
 */
export type Endpoint = TopicName | `rabbitmq:${string}` | 'bybit:rest' | 'bybit:ws';

/**
 * A table the unit writes with its own SQL; `table(group)` when several stages own column groups of
 * one row (docs/orders.md, "Who writes which table").
 */
export type TableWrite = string;

export interface UnitDefinition {
  /** The unit's name in /readyz, logs and metrics. */
  name: string;
  /** One line for the README and `service-main` help. */
  doc: string;
  /** Its settings schemas (zod objects); the config loader parses them with the shared settings. */
  settings: readonly z.ZodTypeAny[];
  inputs: readonly Endpoint[];
  outputs: readonly Endpoint[];
  writes: readonly TableWrite[];
  /** Start the unit on this runtime (its settings are already parsed into `rt.cfg`). */
  create(rt: Runtime): Promise<Unit>;
}

/** Declares a unit; a function so that a literal is checked against the definition where it is written. */
export function defineUnit(def: UnitDefinition): UnitDefinition {
  return def;
}

/** Every settings schema of these units, each once, for the config loader (runtime/config.ts). */
export function settingsOf(units: readonly UnitDefinition[]): z.ZodTypeAny[] {
  return [...new Set(units.flatMap((u) => u.settings))];
}

/** Physical topic names of a unit's Kafka endpoints (TOPIC_PREFIX applied). */
export function topicsOf(endpoints: readonly Endpoint[], prefix: string): string[] {
  return endpoints.filter((e) => !e.includes(':')).map((e) => prefix + e);
}
