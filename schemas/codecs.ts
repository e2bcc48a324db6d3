// Typed Avro codecs in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body),
// with the schema registry reached through @kafkajs/confluent-schema-registry (Redpanda's registry in
// deployment, the local stand-in in schemas/registry-server.ts otherwise).
//
// Subject naming: TopicNameStrategy, subject = `${topic}-value` (the physical, prefixed topic name).
// It is what Redpanda Console and the Confluent tooling assume by default, it lets two topics carry
// the same record with separate evolution histories (e.g. signals.dlq and orders.dlq), and a
// TOPIC_PREFIX namespace gets its own subjects. Keys are plain strings (not Avro).
//
// Errors (runtime/errors.ts), so the stage runner can act on the class alone:
//   - RejectedError('undecodable')     bytes that are not a record we can read: null value, shorter
//                                      than the header, magic byte not 0, unknown schema id, a body
//                                      the writer schema cannot parse, or a writer schema the topic's
//                                      reader schema cannot resolve. Goes to the dead-letter topic.
//   - RejectedError('schema_mismatch') a value that does not fit its schema on encode (with the paths).
//   - RetriableError('registry_unavailable')  the registry cannot be reached or answers 5xx.
//   - FatalError('schema_incompatible' | 'schema_invalid' | 'registry_error' | 'unknown_topic')
//                                      our own schema is refused, or a programming error.
import { readFileSync } from 'node:fs';
import avro from 'avsc';
import { SchemaRegistry, SchemaType, COMPATIBILITY } from '@kafkajs/confluent-schema-registry';
import { FatalError, RejectedError, RetriableError, type PipelineError } from '../runtime/errors.ts';
import {
  DEFAULT_TOPIC_RECORDS,
  RECORD_KINDS,
  SCHEMA_FILES,
  type RecordKind,
  type RecordTypes,
} from './types.ts';

export * from './types.ts';

export const AVRO_NAMESPACE = 'trading.v1';
export const MAGIC_BYTE = 0;
export const WIRE_HEADER_BYTES = 5;

// ---- schema files --------------------------------------------------------------------------------------

export interface LoadedSchema {
  kind: RecordKind;
  /** File name in schemas/. */
  file: string;
  /** Parsed JSON of the .avsc. */
  json: avro.Schema;
  /** Compact JSON text: what is registered (the same text every time, so ids stay stable). */
  text: string;
  /** avsc type parsed with default options (the same options the registry client uses). */
  type: avro.Type;
}

/** Reads and parses one .avsc file next to this module. */
export function loadSchema(kind: RecordKind): LoadedSchema {
  const file = SCHEMA_FILES[kind];
  const json = JSON.parse(readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')) as avro.Schema;
  return { kind, file, json, text: JSON.stringify(json), type: avro.Type.forSchema(json) };
}

/** Reads every .avsc file of the catalogue. */
export function loadSchemas(): Readonly<Record<RecordKind, LoadedSchema>> {
  return Object.freeze(Object.fromEntries(RECORD_KINDS.map((k) => [k, loadSchema(k)])) as Record<RecordKind, LoadedSchema>);
}

const LOADED = loadSchemas();

/** Record kind -> parsed avsc type of the current schema. */
export const RECORD_SCHEMAS: Readonly<Record<RecordKind, avro.Type>> = Object.freeze(
  Object.fromEntries(RECORD_KINDS.map((k) => [k, LOADED[k].type])) as Record<RecordKind, avro.Type>,
);

/** Validates a value against its record schema; returns the paths of offending fields (empty = valid). */
export function invalidPaths(kind: RecordKind, value: unknown): string[] {
  const paths: string[] = [];
  RECORD_SCHEMAS[kind].isValid(value, { errorHook: (path) => paths.push(path.join('.') || '(root)') });
  return paths;
}

// ---- subjects and the wire format ------------------------------------------------------------------------

/** TopicNameStrategy: the value subject of a topic. */
export function subjectForTopic(topic: string): string {
  return `${topic}-value`;
}

/** Accepts a topic or a `<topic>-value` subject; returns the topic. */
export function topicOf(topicOrSubject: string): string {
  return topicOrSubject.endsWith('-value') ? topicOrSubject.slice(0, -'-value'.length) : topicOrSubject;
}

/** Reads the 5-byte Confluent header. Throws RejectedError('undecodable') for anything else. */
export function readWireHeader(buffer: Buffer | null | undefined): { schemaId: number; body: Buffer } {
  if (buffer === null || buffer === undefined) throw undecodable('empty record value (null / tombstone)');
  if (!Buffer.isBuffer(buffer)) throw undecodable(`record value is ${typeof buffer}, not bytes`);
  if (buffer.length < WIRE_HEADER_BYTES) throw undecodable(`record value is ${buffer.length} bytes, shorter than the 5-byte Confluent header`);
  const magic = buffer.readUInt8(0);
  if (magic !== MAGIC_BYTE) {
    throw undecodable(`magic byte 0x${magic.toString(16).padStart(2, '0')}, expected 0x00: not Confluent wire format (starts with ${JSON.stringify(buffer.subarray(0, 16).toString('latin1'))})`);
  }
  const schemaId = buffer.readInt32BE(1);
  if (schemaId <= 0) throw undecodable(`schema id ${schemaId} in the header is not a registry id`);
  return { schemaId, body: buffer.subarray(WIRE_HEADER_BYTES) };
}

/** Frames an Avro body in the Confluent wire format. */
export function writeWireFormat(schemaId: number, body: Buffer): Buffer {
  const header = Buffer.alloc(WIRE_HEADER_BYTES);
  header.writeUInt8(MAGIC_BYTE, 0);
  header.writeInt32BE(schemaId, 1);
  return Buffer.concat([header, body]);
}

function undecodable(detail: string, cause?: unknown): RejectedError {
  return new RejectedError('undecodable', `undecodable record: ${detail}`, cause === undefined ? undefined : { cause });
}

/** Maps an error of the registry client onto the project's error hierarchy. */
export function classifyRegistryError(err: unknown, doing: string): PipelineError {
  const e = err as { status?: number; message?: string; name?: string };
  const msg = e?.message ?? String(err);
  const status = typeof e?.status === 'number' ? e.status : undefined;
  // mappersmith reports transport failures (refused, reset, timeout) as a status-400 response.
  const transport = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|EPIPE|socket hang up|timed? ?out/i.test(msg);
  if (transport || (status !== undefined && (status >= 500 || status === 408 || status === 429))) {
    return new RetriableError('registry_unavailable', `schema registry unavailable while ${doing}: ${msg}`, undefined, { cause: err });
  }
  if (status === 409) return new FatalError('schema_incompatible', `schema registry refused ${doing}: incompatible schema: ${msg}`, { cause: err });
  if (status === 422) return new FatalError('schema_invalid', `schema registry refused ${doing}: invalid schema: ${msg}`, { cause: err });
  if (e?.name === 'ConfluentSchemaRegistryCompatibilityError') {
    return new FatalError('schema_incompatible', `schema registry compatibility level mismatch while ${doing}: ${msg}`, { cause: err });
  }
  return new FatalError('registry_error', `schema registry error while ${doing}: ${msg}`, { cause: err });
}

/** Recursively turns avsc record instances into plain objects (Buffers and arrays kept as such). */
function toPlain(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(toPlain);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = toPlain(x);
  return out;
}

/** Converts a value read with `type` into plain objects; null when the value needs no conversion. */
type Plainify = (v: unknown) => unknown;

const SAFE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A converter specialised to one avsc type, equal in result to toPlain (records become plain
 * objects of their fields, arrays and maps are copied, Buffers and primitives kept) without
 * Object.entries and recursion over every value: records are built as object literals of a fixed
 * shape. Returns null when values of the type are already plain (primitives, enums, bytes, fixed).
 * Anything unusual (wrapped unions, logical types) falls back to toPlain.
 */
export function plainifier(type: avro.Type, seen = new Map<avro.Type, Plainify | null>()): Plainify | null {
  if (seen.has(type)) return seen.get(type)!;
  const t = type as avro.Type & { typeName: string };
  const name = t.typeName;
  if (name === 'record' || name === 'error') {
    // Recursive records: a forwarding stub first, replaced once the converter exists.
    let conv: Plainify = toPlain;
    seen.set(type, (v) => conv(v));
    const fields = (type as avro.types.RecordType).fields;
    const convs = fields.map((f) => plainifier(f.type, seen));
    if (fields.every((f) => SAFE_NAME.test(f.name) && f.name !== '__proto__')) {
      const body = fields.map((f, i) => `${JSON.stringify(f.name)}: ${convs[i] ? `c[${i}](v.${f.name})` : `v.${f.name}`}`).join(', ');
      conv = new Function('c', `return function plainRecord(v) { return { ${body} }; };`)(convs) as Plainify;
    } else {
      const names = fields.map((f) => f.name);
      conv = (v) => {
        const o: Record<string, unknown> = {};
        const r = v as Record<string, unknown>;
        for (let i = 0; i < names.length; i++) o[names[i]!] = convs[i] ? convs[i]!(r[names[i]!]) : r[names[i]!];
        return o;
      };
    }
    const out: Plainify = (v) => (v === null || typeof v !== 'object' ? v : conv(v));
    seen.set(type, out);
    return out;
  }
  let out: Plainify | null;
  if (name === 'array') {
    const item = plainifier((type as avro.types.ArrayType).itemsType, seen);
    out = item ? (v) => (Array.isArray(v) ? v.map(item) : toPlain(v)) : (v) => (Array.isArray(v) ? v.slice() : toPlain(v));
  } else if (name === 'map') {
    const val = plainifier((type as avro.types.MapType).valuesType, seen);
    out = (v) => {
      if (v === null || typeof v !== 'object') return v;
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v)) o[k] = val ? val((v as Record<string, unknown>)[k]) : (v as Record<string, unknown>)[k];
      return o;
    };
  } else if (name === 'union:unwrapped') {
    const branches = (type as avro.types.UnwrappedUnionType).types.map((b) => plainifier(b, seen)).filter((c): c is Plainify => c !== null);
    if (branches.length === 0) out = null;
    else if (branches.length === 1) {
      const only = branches[0]!;
      // Primitive branches read as primitives (or Buffers): only objects need the one converter.
      out = (v) => (v === null || typeof v !== 'object' || Buffer.isBuffer(v) ? v : only(v));
    } else out = toPlain;
  } else if (name === 'null' || name === 'boolean' || name === 'int' || name === 'long' || name === 'float' || name === 'double' || name === 'string' || name === 'enum') {
    out = null;
  } else if (name === 'bytes' || name === 'fixed') {
    out = null; // Buffers stay Buffers
  } else {
    out = toPlain;
  }
  seen.set(type, out);
  return out;
}

// ---- codecs ------------------------------------------------------------------------------------------------

export interface Decoded<T> {
  /** The record as plain objects (records never come back as class instances). */
  value: T;
  /** Registry id of the writer schema. */
  schemaId: number;
  /** Schema the record was written with. */
  writerSchema: avro.Type;
}

/** A codec bound to one topic and its record kind, typed. */
export interface TopicCodec<K extends RecordKind> {
  readonly topic: string;
  readonly subject: string;
  readonly kind: K;
  /** Schema id of our schema for this topic (registered or looked up once, then cached). */
  schemaId(): Promise<number>;
  encode(value: RecordTypes[K]): Promise<Buffer>;
  /** Decodes into the current schema of K, resolving from whatever version wrote the record. */
  decode(buffer: Buffer | null): Promise<Decoded<RecordTypes[K]>>;
}

export interface CodecsOptions {
  /** Schema registry base URL (schemaRegistryUrl(cfg) from runtime/config.ts). */
  registryUrl: string;
  /** Physical topic prefix (TOPIC_PREFIX); topic names are looked up without it. */
  topicPrefix?: string;
  /** Logical topic -> record kind. Default DEFAULT_TOPIC_RECORDS; accepts runtime/topics.ts's TOPICS. */
  topics?: Readonly<Record<string, RecordKind>> | ReadonlyArray<{ name: string; record: string }>;
  /**
   * true (default): register our schemas (the registry answers with the existing id when unchanged
   * and refuses BACKWARD-incompatible changes). false: only look them up, for deployments where
   * schemas are registered by a release step; an unregistered schema is then a FatalError.
   */
  autoRegister?: boolean;
  /** Register/look up every mapped topic in createCodecs (default true), so a bad schema fails at start. */
  eager?: boolean;
  /** Replace schemas of some kinds (schema evolution tests, migrations). */
  schemaOverrides?: Partial<Record<RecordKind, avro.Schema>>;
  /** Retries of the HTTP client for 5xx answers (default 2; the stage runner retries above that). */
  retries?: number;
  logger?: { info(obj: object, msg?: string): void };
}

interface ReadPlan {
  /** Type the body is read into: the writer's (no topic) or the topic's reader schema. */
  type: avro.Type;
  resolver: avro.Resolver | undefined;
  plain: Plainify | null;
}

function topicMap(topics: CodecsOptions['topics']): Map<string, RecordKind> {
  const m = new Map<string, RecordKind>();
  if (topics === undefined) topics = DEFAULT_TOPIC_RECORDS;
  const entries: Array<[string, string]> = Array.isArray(topics)
    ? (topics as ReadonlyArray<{ name: string; record: string }>).map((t) => [t.name, t.record])
    : Object.entries(topics as Record<string, string>);
  for (const [name, record] of entries) {
    if (record === 'raw') continue; // original bytes, not Avro
    if (!(RECORD_KINDS as readonly string[]).includes(record)) throw new FatalError('unknown_record', `topic ${name}: unknown record kind ${record}`);
    m.set(name, record as RecordKind);
  }
  return m;
}

export class SchemaCodecs {
  readonly registry: SchemaRegistry;
  readonly topicPrefix: string;
  private readonly topics: Map<string, RecordKind>;
  private readonly schemas: Record<RecordKind, LoadedSchema>;
  private readonly autoRegister: boolean;
  private readonly ids = new Map<string, Promise<number>>();
  private readonly resolvers = new Map<string, avro.Resolver | null>();
  /** Writer schemas already fetched from the registry, by id: decoding then needs no await. */
  private readonly writers = new Map<number, avro.Type>();
  /** Per writer schema id and reader kind (or writer only, kind ''): how to read and plainify a body. */
  private readonly readPlans = new Map<number, Map<string, ReadPlan>>();
  private readonly kinds = new Map<string, RecordKind>();
  private readonly logger: CodecsOptions['logger'];

  constructor(opts: CodecsOptions) {
    this.registry = new SchemaRegistry({
      host: opts.registryUrl,
      clientId: 'bybit-pipeline',
      retry: { retries: opts.retries ?? 2, maxRetryTimeInSecs: 2 },
    });
    this.topicPrefix = opts.topicPrefix ?? '';
    this.topics = topicMap(opts.topics);
    this.autoRegister = opts.autoRegister ?? true;
    this.logger = opts.logger;
    const schemas = { ...LOADED } as Record<RecordKind, LoadedSchema>;
    for (const [kind, json] of Object.entries(opts.schemaOverrides ?? {}) as Array<[RecordKind, avro.Schema]>) {
      schemas[kind] = { kind, file: '(override)', json, text: JSON.stringify(json), type: avro.Type.forSchema(json) };
    }
    this.schemas = schemas;
  }

  /** Physical topics this instance knows (prefixed). */
  knownTopics(): string[] {
    return [...this.topics.keys()].map((t) => this.topicPrefix + t);
  }

  /** Record kind carried by a topic (prefixed or not) or by its `-value` subject. */
  kindOf(topicOrSubject: string): RecordKind {
    const cached = this.kinds.get(topicOrSubject);
    if (cached !== undefined) return cached;
    const kind = this.lookupKind(topicOrSubject);
    if (this.kinds.size < 10_000) this.kinds.set(topicOrSubject, kind);
    return kind;
  }

  private lookupKind(topicOrSubject: string): RecordKind {
    let topic = topicOf(topicOrSubject);
    if (this.topicPrefix && topic.startsWith(this.topicPrefix)) topic = topic.slice(this.topicPrefix.length);
    const kind = this.topics.get(topic) ?? (topic.endsWith('.dlq') ? 'DeadLetter' : undefined);
    if (!kind) throw new FatalError('unknown_topic', `no Avro record kind is mapped to topic ${topicOrSubject}`);
    return kind;
  }

  /** The value subject (TopicNameStrategy) of a topic; the topic is prefixed when it is not already. */
  subjectOf(topicOrSubject: string): string {
    const topic = topicOf(topicOrSubject);
    return subjectForTopic(this.topicPrefix && !topic.startsWith(this.topicPrefix) ? this.topicPrefix + topic : topic);
  }

  /** The schema this instance writes for a kind. */
  schemaOf(kind: RecordKind): LoadedSchema {
    return this.schemas[kind];
  }

  /** Registers (or looks up) our schema under the topic's subject; cached per subject. */
  schemaId(topicOrSubject: string): Promise<number> {
    const subject = this.subjectOf(topicOrSubject);
    let p = this.ids.get(subject);
    if (!p) {
      p = this.fetchId(subject, this.kindOf(topicOrSubject));
      this.ids.set(subject, p);
      // A failure is not cached: the next call tries again.
      p.catch(() => this.ids.delete(subject));
    }
    return p;
  }

  private async fetchId(subject: string, kind: RecordKind): Promise<number> {
    const { text } = this.schemas[kind];
    try {
      const id = this.autoRegister
        ? (await this.registry.register({ type: SchemaType.AVRO, schema: text }, { subject, compatibility: COMPATIBILITY.BACKWARD })).id
        : await this.registry.getRegistryIdBySchema(subject, { type: SchemaType.AVRO, schema: text });
      this.logger?.info({ subject, kind, schemaId: id }, this.autoRegister ? 'schema registered' : 'schema looked up');
      return id;
    } catch (err) {
      const what = this.autoRegister ? `registering ${kind} under ${subject}` : `looking up ${kind} under ${subject}`;
      if ((err as { status?: number })?.status === 404 || (err as Error)?.name === 'ConfluentSchemaRegistryError') {
        throw new FatalError('schema_not_registered', `${what}: schema not registered`, { cause: err });
      }
      throw classifyRegistryError(err, what);
    }
  }

  /** Registers (or looks up) the schema of every mapped topic; returns subject -> id. */
  async registerAll(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const topic of this.knownTopics()) out[this.subjectOf(topic)] = await this.schemaId(topic);
    return out;
  }

  /** Encodes a value for a topic (or `<topic>-value` subject) in the Confluent wire format. */
  async encode(topicOrSubject: string, value: RecordTypes[RecordKind]): Promise<Buffer> {
    const kind = this.kindOf(topicOrSubject);
    const id = await this.schemaId(topicOrSubject);
    const type = this.schemas[kind].type;
    const paths: string[] = [];
    if (!type.isValid(value, { errorHook: (path) => paths.push(path.join('.') || '(root)') })) {
      throw new RejectedError('schema_mismatch', `value does not match ${kind} (${this.subjectOf(topicOrSubject)}) at: ${paths.join(', ')}`);
    }
    try {
      // The client encodes with the schema it holds for this id (the one we registered).
      return await this.registry.encode(id, value);
    } catch (err) {
      if ((err as Error)?.name === 'ConfluentSchemaRegistryValidationError') {
        throw new RejectedError('schema_mismatch', `value does not match schema ${id}: ${(err as Error).message}`, { cause: err });
      }
      throw classifyRegistryError(err, `encoding ${kind} with schema ${id}`);
    }
  }

  /**
   * Decodes a record in the Confluent wire format. Without a topic: the value as its writer schema
   * shapes it. With a topic (or subject): resolved into this instance's schema of the topic's kind, so
   * records written by an older (BACKWARD-compatible) schema come back in the current shape.
   */
  async decode(buffer: Buffer | null, topicOrSubject?: string): Promise<Decoded<unknown>> {
    const fast = this.decodeSync(buffer, topicOrSubject);
    if (fast !== undefined) return fast;
    const { schemaId } = readWireHeader(buffer);
    await this.writerSchema(schemaId);
    return this.decodeSync(buffer, topicOrSubject)!;
  }

  /**
   * decode without a promise, for replays and hot loops: the same result (or the same error,
   * thrown) as decode once the record's writer schema has been fetched from the registry by this
   * instance; undefined when it has not been yet (then use decode, which fetches and caches it).
   */
  decodeSync(buffer: Buffer | null, topicOrSubject?: string): Decoded<unknown> | undefined {
    const { schemaId, body } = readWireHeader(buffer);
    const writerSchema = this.writers.get(schemaId);
    if (writerSchema === undefined) return undefined;
    const plan = this.readPlan(schemaId, writerSchema, topicOrSubject === undefined ? '' : this.kindOf(topicOrSubject));
    const value = this.readBody(plan.type, body, schemaId, plan.resolver);
    return { value: plan.plain ? plan.plain(value) : value, schemaId, writerSchema };
  }

  private readPlan(schemaId: number, writer: avro.Type, kind: RecordKind | ''): ReadPlan {
    let byKind = this.readPlans.get(schemaId);
    if (!byKind) this.readPlans.set(schemaId, (byKind = new Map()));
    let plan = byKind.get(kind);
    if (!plan) {
      if (kind === '') plan = { type: writer, resolver: undefined, plain: plainifier(writer) };
      else {
        const reader = this.schemas[kind].type;
        plan = { type: reader, resolver: this.resolverFor(schemaId, writer, kind) ?? undefined, plain: plainifier(reader) };
      }
      byKind.set(kind, plan);
    }
    return plan;
  }

  /** A typed codec for one topic; checks the topic carries `kind`. */
  forTopic<K extends RecordKind>(topic: string, kind: K): TopicCodec<K> {
    const mapped = this.kindOf(topic);
    if (mapped !== kind) throw new FatalError('unknown_topic', `topic ${topic} carries ${mapped}, not ${kind}`);
    const physical = topicOf(this.subjectOf(topic));
    return {
      topic: physical,
      subject: this.subjectOf(topic),
      kind,
      schemaId: () => this.schemaId(physical),
      encode: (value) => this.encode(physical, value),
      decode: async (buffer) => (await this.decode(buffer, physical)) as Decoded<RecordTypes[K]>,
    };
  }

  private async writerSchema(schemaId: number): Promise<avro.Type> {
    const known = this.writers.get(schemaId);
    if (known !== undefined) return known;
    try {
      const type = (await this.registry.getSchema(schemaId)) as unknown as avro.Type;
      this.writers.set(schemaId, type);
      return type;
    } catch (err) {
      if ((err as { status?: number })?.status === 404) throw undecodable(`schema id ${schemaId} is unknown to the registry`, err);
      throw classifyRegistryError(err, `fetching schema ${schemaId}`);
    }
  }

  private resolverFor(schemaId: number, writer: avro.Type, kind: RecordKind): avro.Resolver | null {
    const key = `${schemaId}:${kind}`;
    if (this.resolvers.has(key)) return this.resolvers.get(key) ?? null;
    const reader = this.schemas[kind].type;
    let resolver: avro.Resolver | null;
    if (reader.equals(writer)) {
      resolver = null;
    } else {
      try {
        resolver = reader.createResolver(writer);
      } catch (err) {
        throw undecodable(`written with schema ${schemaId} (${writer.name ?? writer.typeName}), which ${kind} cannot read: ${(err as Error).message}`, err);
      }
    }
    this.resolvers.set(key, resolver);
    return resolver;
  }

  private readBody(type: avro.Type, body: Buffer, schemaId: number, resolver?: avro.Resolver): unknown {
    try {
      return type.fromBuffer(body, resolver);
    } catch (err) {
      throw undecodable(`Avro body does not parse with schema ${schemaId}: ${(err as Error).message}`, err);
    }
  }
}

/** Creates the codecs and (by default) registers or looks up every mapped topic's schema up front. */
export async function createCodecs(opts: CodecsOptions): Promise<SchemaCodecs> {
  const codecs = new SchemaCodecs(opts);
  if (opts.eager ?? true) await codecs.registerAll();
  return codecs;
}
