// The .avsc files themselves, and their agreement with the TypeScript types (schemas/types.ts) through
// the typed samples (schemas/samples.ts). No registry needed here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import avro from 'avsc';
import {
  AVRO_NAMESPACE,
  DEFAULT_TOPIC_RECORDS,
  ORDER_EVENT_TYPES,
  RECORD_KINDS,
  RECORD_SCHEMAS,
  SCHEMA_FILES,
  invalidPaths,
  loadSchemas,
  type RecordKind,
} from '../../schemas/codecs.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import { TOPICS } from '../../runtime/topics.ts';

const dir = new URL('../../schemas/', import.meta.url);

test('every .avsc file parses, is a record of namespace trading.v1, and is in the catalogue', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
  assert.deepEqual(files, Object.values(SCHEMA_FILES).sort(), 'schemas/*.avsc and SCHEMA_FILES list the same files');
  for (const file of files) {
    const json = JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as { type: string; name: string; namespace: string; doc?: string };
    const type = avro.Type.forSchema(json as avro.Schema);
    assert.equal(json.type, 'record', file);
    assert.equal(json.namespace, AVRO_NAMESPACE, file);
    assert.ok(json.doc && json.doc.length > 10, `${file}: record doc`);
    const kind = (Object.entries(SCHEMA_FILES) as Array<[RecordKind, string]>).find(([, f]) => f === file)?.[0];
    assert.equal(type.name, `${AVRO_NAMESPACE}.${kind}`, `${file} defines record ${kind}`);
  }
  assert.equal(Object.keys(RECORD_SCHEMAS).length, RECORD_KINDS.length);
});

test('every field of every record (nested ones too) has a doc string', () => {
  const missing: string[] = [];
  const walk = (schema: unknown, where: string): void => {
    if (Array.isArray(schema)) return schema.forEach((s, i) => walk(s, `${where}|${i}`));
    if (!schema || typeof schema !== 'object') return;
    const s = schema as { type: unknown; name?: string; fields?: Array<{ name: string; doc?: string; type: unknown }>; items?: unknown; values?: unknown };
    if (s.type === 'record') {
      for (const f of s.fields ?? []) {
        if (!f.doc || f.doc.trim().length < 3) missing.push(`${where}.${f.name}`);
        walk(f.type, `${where}.${f.name}`);
      }
    } else if (s.type === 'array') walk(s.items, where);
    else if (s.type === 'map') walk(s.values, where);
    else if (typeof s.type === 'object') walk(s.type, where);
  };
  for (const [kind, loaded] of Object.entries(loadSchemas())) walk(loaded.json, kind);
  assert.deepEqual(missing, []);
});

test('optional fields are unions with null first and default null (BACKWARD-friendly evolution)', () => {
  const bad: string[] = [];
  const walk = (schema: unknown, where: string): void => {
    if (!schema || typeof schema !== 'object') return;
    if (Array.isArray(schema)) return schema.forEach((s) => walk(s, where));
    const s = schema as { type: unknown; fields?: Array<{ name: string; type: unknown; default?: unknown }>; items?: unknown; values?: unknown };
    if (s.type === 'record') {
      for (const f of s.fields ?? []) {
        if (Array.isArray(f.type)) {
          if (f.type[0] !== 'null' || !('default' in f) || f.default !== null) bad.push(`${where}.${f.name}`);
        }
        walk(f.type, `${where}.${f.name}`);
      }
    } else if (s.type === 'array') walk(s.items, where);
    else if (s.type === 'map') walk(s.values, where);
    else if (typeof s.type === 'object') walk(s.type, where);
  };
  for (const [kind, loaded] of Object.entries(loadSchemas())) walk(loaded.json, kind);
  assert.deepEqual(bad, []);
});

test('named types defined in several files (SignalContext, MarketDataSnapshot, enums) are identical everywhere', () => {
  const seen = new Map<string, { text: string; where: string }>();
  const clash: string[] = [];
  const walk = (schema: unknown, ns: string, where: string): void => {
    if (!schema || typeof schema !== 'object') return;
    if (Array.isArray(schema)) return schema.forEach((s) => walk(s, ns, where));
    const s = schema as { type: unknown; name?: string; namespace?: string; fields?: Array<{ type: unknown }>; items?: unknown; values?: unknown };
    if (typeof s.name === 'string' && (s.type === 'record' || s.type === 'enum' || s.type === 'fixed')) {
      const full = s.name.includes('.') ? s.name : `${s.namespace ?? ns}.${s.name}`;
      const text = JSON.stringify(schema);
      const prev = seen.get(full);
      // The top-level records are unique by construction; compare only repeated definitions.
      if (prev && prev.text !== text) clash.push(`${full}: ${prev.where} vs ${where}`);
      else if (!prev) seen.set(full, { text, where });
    }
    if (s.type === 'record') for (const f of s.fields ?? []) walk(f.type, s.namespace ?? ns, where);
    else if (s.type === 'array') walk(s.items, ns, where);
    else if (s.type === 'map') walk(s.values, ns, where);
    else if (typeof s.type === 'object') walk(s.type, ns, where);
  };
  for (const loaded of Object.values(loadSchemas())) walk(loaded.json, AVRO_NAMESPACE, loaded.file);
  assert.deepEqual(clash, []);
  assert.ok(seen.has('trading.v1.SignalContext') && seen.has('trading.v1.MarketDataSnapshot'));
});

test('each TypeScript sample conforms to its schema (type.isValid)', () => {
  for (const kind of RECORD_KINDS) {
    assert.deepEqual(invalidPaths(kind, SAMPLES[kind]), [], `${kind} sample`);
    assert.ok(RECORD_SCHEMAS[kind].isValid(SAMPLES[kind]), kind);
  }
});

// The sync check between types.ts and the .avsc files: the samples are typed by the interfaces (the
// compiler refuses missing or extra keys), and here every sample must name exactly the schema's
// fields, recursively. A field added to one side only fails either tsc or this test.
test('TypeScript types and schemas name the same fields, nested records included', () => {
  const problems: string[] = [];
  const walk = (type: avro.Type, value: unknown, path: string): void => {
    if (value === null || value === undefined) return;
    const t = type as avro.Type & { typeName: string };
    if (t.typeName === 'record' || t.typeName === 'error') {
      const fields = (type as avro.types.RecordType).fields;
      const want = fields.map((f) => f.name).sort();
      const got = Object.keys(value as object).sort();
      if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`${path}: schema ${JSON.stringify(want)} vs TS ${JSON.stringify(got)}`);
      for (const f of fields) walk(f.type, (value as Record<string, unknown>)[f.name], `${path}.${f.name}`);
    } else if (t.typeName.startsWith('union')) {
      const branch = unionBranches(type).find((b) => b.typeName !== 'null' && b.isValid(value));
      if (branch) walk(branch, value, path);
    } else if (t.typeName === 'array') {
      (value as unknown[]).forEach((v, i) => walk((type as avro.types.ArrayType).itemsType, v, `${path}[${i}]`));
    } else if (t.typeName === 'map') {
      for (const [k, v] of Object.entries(value as object)) walk((type as avro.types.MapType).valuesType, v, `${path}{${k}}`);
    }
  };
  // Every nested record must be reached with a non-null sample value, or it would go unchecked.
  const reached = new Set<string>();
  const collect = (type: avro.Type, value: unknown): void => {
    if (value === null || value === undefined) return;
    const tn = (type as avro.Type & { typeName: string }).typeName;
    if (tn === 'record') {
      reached.add(type.name ?? '');
      for (const f of (type as avro.types.RecordType).fields) collect(f.type, (value as Record<string, unknown>)[f.name]);
    } else if (tn.startsWith('union')) {
      const b = unionBranches(type).find((x) => x.typeName !== 'null' && x.isValid(value));
      if (b) collect(b, value);
    } else if (tn === 'array') (value as unknown[]).forEach((v) => collect((type as avro.types.ArrayType).itemsType, v));
  };
  const declared = new Set<string>();
  const names = (type: avro.Type): void => {
    const tn = (type as avro.Type & { typeName: string }).typeName;
    if (tn === 'record') {
      if (declared.has(type.name ?? '')) return;
      declared.add(type.name ?? '');
      for (const f of (type as avro.types.RecordType).fields) names(f.type);
    } else if (tn.startsWith('union')) unionBranches(type).forEach(names);
    else if (tn === 'array') names((type as avro.types.ArrayType).itemsType);
    else if (tn === 'map') names((type as avro.types.MapType).valuesType);
  };
  for (const kind of RECORD_KINDS) {
    walk(RECORD_SCHEMAS[kind], SAMPLES[kind], kind);
    collect(RECORD_SCHEMAS[kind], SAMPLES[kind]);
    names(RECORD_SCHEMAS[kind]);
  }
  assert.deepEqual(problems, []);
  assert.deepEqual([...declared].filter((n) => !reached.has(n)), [], 'every record type is exercised by a sample');
});

test('OrderEvent event types in TypeScript match the schema enum', () => {
  const eventType = (RECORD_SCHEMAS.OrderEvent as avro.types.RecordType).field('event_type')?.type as avro.types.EnumType;
  assert.deepEqual(eventType.symbols, [...ORDER_EVENT_TYPES]);
});

test('the default topic map agrees with the topic catalogue in runtime/topics.ts', () => {
  const catalogue: ReadonlyArray<{ name: string; record: string }> = TOPICS;
  const fromCatalogue = Object.fromEntries(catalogue.filter((x) => x.record !== 'raw').map((x) => [x.name, x.record]));
  assert.deepEqual(fromCatalogue, { ...DEFAULT_TOPIC_RECORDS });
});

function unionBranches(type: avro.Type): avro.Type[] {
  return (type as unknown as { types: avro.Type[] }).types;
}
