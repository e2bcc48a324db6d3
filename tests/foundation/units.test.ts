// The units' declarations (runtime/unit.ts) read as a whole: every topic is produced and, unless it
// is a dead-letter sink, consumed; every RabbitMQ endpoint names a queue setting of its unit; every
// table of the migrated schema has one writer per column group, and docs/orders.md says who.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { TOPICS } from '../../runtime/topics.ts';
import { settingsTable } from '../../runtime/config.ts';
import { sql } from '../../runtime/db.ts';
import { ROOT } from '../../runtime/paths.ts';
import { ALL_UNITS, SERVICES, UNIT_SERVICES, UNIT_SCHEMAS } from '../../stack/services.ts';
import { assertDeclared } from '../../pipelines/stage-unit.ts';
import { migratedDatabase } from '../helpers.ts';

/** Topics nobody in the system reads: dead letters, for operators (`npm run cli -- tail`). */
const SINKS = new Set(['signals.dlq', 'orders.dlq', 'exchange.dlq']);

/**
 * Topics written for audit and replay that no unit of the default deployment reads: signals.valid,
 * since validation and risk & sizing run as one stage (pipelines/signal-decide.ts) that writes the
 * valid signal and its decision in one transaction. (Its upgrade drain reads what a two-stage
 * release left there once, under the old risk group; it is no consumer of the fused stage's copies.)
 */
const AUDIT = new Set(['signals.valid']);

/**
 * Tables written by a shared module rather than by one unit's own SQL (docs/orders.md says which):
 * the runner records conflicts for every stage; trading_state moves through one module (the kill
 * switch, the runner's halt) besides the risk stage's daily-loss evaluation.
 */
const SHARED = new Set(['stage_conflicts', 'trading_state', 'trading_state_transitions']);

test('every topic has a producer among the units, and a consumer unless it is a dead-letter sink or an audit topic', () => {
  const produced = new Set(ALL_UNITS.flatMap((u) => u.outputs));
  const consumed = new Set(ALL_UNITS.flatMap((u) => u.inputs));
  for (const t of TOPICS) {
    assert.ok(produced.has(t.name), `${t.name}: no unit declares it as an output`);
    if (!SINKS.has(t.name) && !AUDIT.has(t.name)) assert.ok(consumed.has(t.name), `${t.name}: no unit declares it as an input`);
  }
  for (const s of SINKS) assert.ok(!consumed.has(s as never), `${s} is declared a sink but a unit reads it`);
  for (const a of AUDIT) assert.ok(!consumed.has(a as never), `${a} is declared an audit topic but a unit reads it`);
  // The order manager as deployed: one stage takes a raw signal to its intents.
  const om = SERVICES['order-manager']!.units;
  assert.ok(!om.some((u) => u.inputs.includes('signals.valid')), 'nothing in the default order manager consumes signals.valid');
  const fused = om.find((u) => u.inputs.includes('signals.raw'));
  assert.ok(fused && fused.outputs.includes('signals.valid') && fused.outputs.includes('orders.intents'), 'the stage reading signals.raw writes both signals.valid and orders.intents');
});

test('every RabbitMQ endpoint names a queue setting of its own unit', () => {
  for (const u of ALL_UNITS) {
    const own = new Set(settingsTable(u.settings).map((r) => r.name));
    for (const e of [...u.inputs, ...u.outputs]) {
      if (!e.startsWith('rabbitmq:')) continue;
      const setting = e.slice('rabbitmq:'.length);
      assert.match(setting, /QUEUE$/, `${u.name}: ${e} does not name a queue setting`);
      assert.ok(own.has(setting), `${u.name}: ${setting} is not among its settings`);
    }
  }
});

test('units have distinct names; the per-process services split the order manager without leaving a unit out', () => {
  const names = ALL_UNITS.map((u) => u.name);
  assert.equal(new Set(names).size, names.length, `duplicate unit names: ${names.join(', ')}`);
  const om = new Set(SERVICES['order-manager']!.units);
  const split = Object.values(UNIT_SERVICES).flatMap((s) => s.units);
  assert.deepEqual(new Set(split), om, 'UNIT_SERVICES holds exactly the order manager\'s units');
  assert.equal(split.length, om.size, 'each in one process only');
  // The config loader parses every unit's settings: a schema missing here would go unvalidated.
  for (const u of ALL_UNITS) for (const s of u.settings) assert.ok(UNIT_SCHEMAS.includes(s), `${u.name}: a settings schema the loader does not get`);
});

test('one writer per table (or per column group), every table of the schema accounted for and documented', async (t) => {
  const { pool, drop } = await migratedDatabase('units');
  t.after(drop);
  const tables = await pool.anyFirst(sql.type(z.object({ table_name: z.string() }))`
    SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`);
  const writers = new Map<string, string[]>();
  for (const u of ALL_UNITS) for (const w of u.writes) writers.set(w, [...(writers.get(w) ?? []), u.name]);
  for (const [w, who] of writers) assert.equal(who.length, 1, `${w} has several writers: ${who.join(', ')}`);
  const written = new Set([...writers.keys()].map((w) => w.replace(/\(.*\)$/, '')));
  for (const w of written) assert.ok(tables.includes(w), `units declare writes to ${w}, which the schema does not have`);
  // A table split into column groups has no writer of the whole row.
  for (const w of writers.keys()) if (w.includes('(')) assert.ok(!writers.has(w.replace(/\(.*\)$/, '')), `${w}: both a whole-row writer and column groups`);
  const doc = readFileSync(`${ROOT}/docs/orders.md`, 'utf8');
  const section = doc.slice(doc.indexOf('## Who writes which table'));
  const bookkeeping = new Set(['schema_migrations']);
  for (const table of tables) {
    if (bookkeeping.has(table)) continue;
    assert.ok(written.has(table) || SHARED.has(table), `${table}: no unit declares it written, and it is not a shared module's`);
    assert.match(section, new RegExp(`\`${table}\``), `docs/orders.md "Who writes which table" does not name ${table}`);
  }
});

test('a stage whose declaration disagrees with what it consumes refuses to start', () => {
  const stage = { name: 'copy', input: ['p.signals.raw'], dlq: 'p.signals.dlq' };
  const decl = { name: 'copy', inputs: ['signals.raw'], outputs: ['signals.valid', 'signals.dlq'] } as const;
  assertDeclared(decl, stage, 'p.');
  assert.throws(() => assertDeclared({ ...decl, inputs: ['signals.valid'] }, stage, 'p.'), /consumes \[p\.signals\.raw\], declared \[p\.signals\.valid\]/);
  assert.throws(() => assertDeclared({ ...decl, outputs: ['signals.valid'] }, stage, 'p.'), /dead-letter topic p\.signals\.dlq/);
  assert.throws(() => assertDeclared({ ...decl, name: 'other' }, stage, 'p.'), /named copy/);
});
