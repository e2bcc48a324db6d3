// =====================================================================================================
//  LOCAL STAND-IN for Redpanda's schema registry. NOT used in deployments.
//
//  Deployments (redpanda-compose.yml) use Redpanda's built-in, Confluent-compatible schema registry.
//  The development and CI machines cannot install any registry server, so the local stack runs this
//  small node:http server instead. It speaks the subset of the Confluent Schema Registry REST API the
//  project (and @kafkajs/confluent-schema-registry, and Redpanda Console) use, AVRO schemas only:
//
//    GET    /                                              -> {}
//    GET    /schemas/types                                 -> ["AVRO"]
//    GET    /schemas/ids/{id}                              -> {schema}
//    GET    /subjects                                      -> [subject]
//    GET    /subjects/{subject}/versions                   -> [version]
//    GET    /subjects/{subject}/versions/{n|latest}        -> {subject, version, id, schema}
//    GET    /subjects/{subject}/versions/{n|latest}/schema -> the schema itself
//    POST   /subjects/{subject}/versions                   -> {id}   register (same schema: same id)
//    POST   /subjects/{subject}                            -> {subject, version, id, schema}   lookup
//    DELETE /subjects/{subject}                            -> [version]   (hard delete; ids stay taken)
//    POST   /compatibility/subjects/{subject}/versions[/{n|latest}] -> {is_compatible[, messages]}
//    GET|PUT /config, GET|PUT|DELETE /config/{subject}    compatibility level (default BACKWARD)
//
//  Errors answer like Confluent: {error_code, message} with 404 (40401 subject, 40402 version,
//  40403 schema, 40408 no subject config), 409 (incompatible schema), 422 (42201 invalid schema,
//  42202 invalid version, 42203 invalid compatibility level).
//
//  Compatibility is decided with avsc's schema resolution: BACKWARD = the new schema can read data
//  written with the latest one (`newType.createResolver(oldType)` does not throw); FORWARD the other
//  way round; FULL both; *_TRANSITIVE against every version; NONE never refuses.
//
//  State lives in memory and, when `file` is given, in a JSON file rewritten atomically after every
//  change, so restarting the local stack keeps schema ids (and therefore old records) decodable.
// =====================================================================================================
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';

export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

export const REGISTRY_CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

export interface RegistryLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface RegistryOptions {
  /** Bind address; loopback by default. */
  host?: string;
  /** 8081 by default; 0 picks a free port. */
  port?: number;
  /** JSON file to persist state in (created when missing). In memory only when unset. */
  file?: string;
  /** Global compatibility level for a fresh state. Default BACKWARD. */
  defaultCompatibility?: CompatibilityLevel;
  logger?: RegistryLogger;
}

export interface RunningRegistry {
  /** Base URL, e.g. http://127.0.0.1:8081 */
  url: string;
  port: number;
  close(): Promise<void>;
}

interface PersistedState {
  format: 'local-schema-registry/1';
  nextId: number;
  schemas: Array<{ id: number; schema: string }>;
  subjects: Record<string, Array<{ version: number; id: number }>>;
  config: { global: CompatibilityLevel; subjects: Record<string, CompatibilityLevel> };
}

class HttpError extends Error {
  constructor(readonly status: number, readonly errorCode: number, message: string) {
    super(message);
  }
}

/** The result of checking one schema against earlier ones. */
export interface CompatibilityResult {
  compatible: boolean;
  messages: string[];
}

/**
 * Pure compatibility check with avsc's resolution rules. `previous` is ordered oldest first; which of
 * them are checked depends on the level (latest only, or all for *_TRANSITIVE).
 */
export function checkCompatibility(candidate: string, previous: readonly string[], level: CompatibilityLevel): CompatibilityResult {
  if (level === 'NONE' || previous.length === 0) return { compatible: true, messages: [] };
  const transitive = level.endsWith('_TRANSITIVE');
  const against = transitive ? previous : previous.slice(-1);
  const backward = level.startsWith('BACKWARD') || level.startsWith('FULL');
  const forward = level.startsWith('FORWARD') || level.startsWith('FULL');
  const next = parseAvro(candidate);
  const messages: string[] = [];
  for (const oldText of against) {
    const old = parseAvro(oldText);
    if (backward) {
      try {
        next.createResolver(old);
      } catch (e) {
        messages.push(`new schema cannot read data written with an earlier schema (${level}): ${(e as Error).message}`);
      }
    }
    if (forward) {
      try {
        old.createResolver(next);
      } catch (e) {
        messages.push(`earlier schema cannot read data written with the new schema (${level}): ${(e as Error).message}`);
      }
    }
  }
  return { compatible: messages.length === 0, messages };
}

function parseAvro(text: string): avro.Type {
  return avro.Type.forSchema(JSON.parse(text) as avro.Schema);
}

/** Whitespace-insensitive identity of a schema text (the same schema registered twice gets one id). */
function canonical(text: string): string {
  return JSON.stringify(JSON.parse(text));
}

function isLevel(v: unknown): v is CompatibilityLevel {
  return typeof v === 'string' && (COMPATIBILITY_LEVELS as readonly string[]).includes(v.toUpperCase());
}

/** The registry's state and rules, independent of HTTP. */
class RegistryState {
  private nextId = 1;
  private readonly schemas = new Map<number, string>();
  private readonly idByCanonical = new Map<string, number>();
  private readonly subjects = new Map<string, Array<{ version: number; id: number }>>();
  private globalLevel: CompatibilityLevel;
  private readonly subjectLevels = new Map<string, CompatibilityLevel>();

  constructor(private readonly file: string | undefined, defaultLevel: CompatibilityLevel) {
    this.globalLevel = defaultLevel;
    if (file && existsSync(file)) this.load(file);
  }

  private load(file: string): void {
    // A corrupt state file is an error, not a reason to start empty: new ids would make records
    // written earlier decode with the wrong schema.
    const data = JSON.parse(readFileSync(file, 'utf8')) as PersistedState;
    if (data.format !== 'local-schema-registry/1') throw new Error(`${file}: not a schema registry state file`);
    this.nextId = data.nextId;
    for (const { id, schema } of data.schemas) {
      this.schemas.set(id, schema);
      this.idByCanonical.set(canonical(schema), id);
    }
    for (const [name, versions] of Object.entries(data.subjects)) this.subjects.set(name, versions);
    this.globalLevel = data.config.global;
    for (const [name, level] of Object.entries(data.config.subjects)) this.subjectLevels.set(name, level);
  }

  private persist(): void {
    if (!this.file) return;
    const data: PersistedState = {
      format: 'local-schema-registry/1',
      nextId: this.nextId,
      schemas: [...this.schemas].map(([id, schema]) => ({ id, schema })),
      subjects: Object.fromEntries(this.subjects),
      config: { global: this.globalLevel, subjects: Object.fromEntries(this.subjectLevels) },
    };
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, null, 1));
    renameSync(tmp, this.file);
  }

  subjectNames(): string[] {
    return [...this.subjects.keys()].sort();
  }

  versionsOf(subject: string): Array<{ version: number; id: number }> {
    const v = this.subjects.get(subject);
    if (!v || v.length === 0) throw new HttpError(404, 40401, `Subject '${subject}' not found.`);
    return v;
  }

  version(subject: string, ref: string): { subject: string; version: number; id: number; schema: string } {
    const versions = this.versionsOf(subject);
    let entry: { version: number; id: number } | undefined;
    if (ref === 'latest' || ref === '-1') entry = versions[versions.length - 1];
    else if (/^[1-9]\d{0,9}$/.test(ref)) entry = versions.find((v) => v.version === Number(ref));
    else throw new HttpError(422, 42202, `The specified version '${ref}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`);
    if (!entry) throw new HttpError(404, 40402, `Version ${ref} not found.`);
    return { subject, version: entry.version, id: entry.id, schema: this.schemaById(entry.id) };
  }

  schemaById(id: number): string {
    const s = this.schemas.get(id);
    if (s === undefined) throw new HttpError(404, 40403, `Schema ${id} not found`);
    return s;
  }

  level(subject?: string): CompatibilityLevel {
    return (subject !== undefined ? this.subjectLevels.get(subject) : undefined) ?? this.globalLevel;
  }

  subjectLevel(subject: string): CompatibilityLevel | undefined {
    return this.subjectLevels.get(subject);
  }

  setLevel(level: CompatibilityLevel, subject?: string): void {
    if (subject === undefined) this.globalLevel = level;
    else this.subjectLevels.set(subject, level);
    this.persist();
  }

  deleteLevel(subject: string): CompatibilityLevel | undefined {
    const prev = this.subjectLevels.get(subject);
    this.subjectLevels.delete(subject);
    this.persist();
    return prev;
  }

  lookup(subject: string, schema: string): { subject: string; version: number; id: number; schema: string } {
    const versions = this.versionsOf(subject);
    const id = this.idByCanonical.get(validSchema(schema));
    const entry = versions.find((v) => v.id === id);
    if (!entry || id === undefined) throw new HttpError(404, 40403, 'Schema not found');
    return { subject, version: entry.version, id, schema: this.schemaById(id) };
  }

  compatibility(subject: string, schema: string, ref: string | undefined): CompatibilityResult {
    validSchema(schema);
    const versions = this.subjects.get(subject) ?? [];
    if (versions.length === 0) {
      if (ref !== undefined && ref !== 'latest' && ref !== '-1') throw new HttpError(404, 40401, `Subject '${subject}' not found.`);
      return { compatible: true, messages: [] };
    }
    const level = this.level(subject);
    // Against one given version, or (latest / none given) against what the level requires.
    const previous = ref === undefined || ref === 'latest' || ref === '-1'
      ? versions.map((v) => this.schemaById(v.id))
      : [this.version(subject, ref).schema];
    return checkCompatibility(schema, previous, level);
  }

  register(subject: string, schema: string): { id: number; created: boolean; version: number } {
    const key = validSchema(schema);
    const versions = this.subjects.get(subject) ?? [];
    const existingId = this.idByCanonical.get(key);
    const already = versions.find((v) => v.id === existingId);
    if (already && existingId !== undefined) return { id: existingId, created: false, version: already.version };
    const level = this.level(subject);
    const result = checkCompatibility(schema, versions.map((v) => this.schemaById(v.id)), level);
    if (!result.compatible) {
      throw new HttpError(409, 409, `Schema being registered is incompatible with an earlier schema for subject "${subject}", details: ${JSON.stringify(result.messages)}`);
    }
    let id = existingId;
    if (id === undefined) {
      id = this.nextId++;
      this.schemas.set(id, schema);
      this.idByCanonical.set(key, id);
    }
    const version = (versions[versions.length - 1]?.version ?? 0) + 1;
    versions.push({ version, id });
    this.subjects.set(subject, versions);
    this.persist();
    return { id, created: true, version };
  }

  deleteSubject(subject: string): number[] {
    const versions = this.versionsOf(subject);
    this.subjects.delete(subject);
    this.subjectLevels.delete(subject);
    this.persist();
    return versions.map((v) => v.version);
  }
}

/** Parses and checks an AVRO schema text; returns its canonical key or throws 422. */
function validSchema(schema: unknown): string {
  if (typeof schema !== 'string' || schema.length === 0) throw new HttpError(422, 42201, 'Invalid schema: "schema" must be a non-empty string');
  try {
    parseAvro(schema);
    return canonical(schema);
  } catch (e) {
    throw new HttpError(422, 42201, `Invalid schema: ${(e as Error).message}`);
  }
}

const MAX_BODY = 4 * 1024 * 1024;

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 413, 'Request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        const v = JSON.parse(text) as unknown;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('body must be a JSON object');
        resolve(v as Record<string, unknown>);
      } catch (e) {
        reject(new HttpError(400, 400, `Malformed JSON body: ${(e as Error).message}`));
      }
    });
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': REGISTRY_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function checkSchemaType(body: Record<string, unknown>): void {
  const t = body.schemaType;
  if (t !== undefined && t !== null && String(t).toUpperCase() !== 'AVRO') {
    throw new HttpError(422, 42201, `Invalid schema: schema type ${String(t)} is not supported by the local stand-in (AVRO only)`);
  }
  if (Array.isArray(body.references) && body.references.length > 0) {
    throw new HttpError(422, 42201, 'Invalid schema: schema references are not supported by the local stand-in');
  }
}

function levelFromBody(body: Record<string, unknown>): CompatibilityLevel {
  const v = body.compatibility ?? body.compatibilityLevel;
  if (!isLevel(v)) throw new HttpError(422, 42203, `Invalid compatibility level. Valid values are ${COMPATIBILITY_LEVELS.join(', ')}`);
  return v.toUpperCase() as CompatibilityLevel;
}

async function route(state: RegistryState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://registry');
  const parts = url.pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  const method = (req.method ?? 'GET').toUpperCase();
  const verbose = url.searchParams.get('verbose') === 'true';
  const [a, b, c, d, e] = parts;

  if (parts.length === 0 && method === 'GET') return send(res, 200, {});

  if (a === 'schemas') {
    if (b === 'types' && parts.length === 2 && method === 'GET') return send(res, 200, ['AVRO']);
    if (b === 'ids' && c !== undefined && method === 'GET' && (parts.length === 3 || (parts.length === 4 && d === 'schema'))) {
      if (!/^\d+$/.test(c)) throw new HttpError(404, 40403, `Schema ${c} not found`);
      const schema = state.schemaById(Number(c));
      return send(res, 200, parts.length === 4 ? schema : { schema });
    }
  }

  if (a === 'subjects') {
    if (parts.length === 1 && method === 'GET') return send(res, 200, state.subjectNames());
    if (b !== undefined && parts.length === 2) {
      if (method === 'POST') {
        const body = await readBody(req);
        checkSchemaType(body);
        const found = state.lookup(b, body.schema as string);
        return send(res, 200, found);
      }
      if (method === 'DELETE') return send(res, 200, state.deleteSubject(b));
    }
    if (b !== undefined && c === 'versions') {
      if (parts.length === 3 && method === 'GET') return send(res, 200, state.versionsOf(b).map((v) => v.version));
      if (parts.length === 3 && method === 'POST') {
        const body = await readBody(req);
        checkSchemaType(body);
        const { id } = state.register(b, body.schema as string);
        return send(res, 200, { id });
      }
      if (d !== undefined && method === 'GET' && parts.length === 4) return send(res, 200, state.version(b, d));
      if (d !== undefined && method === 'GET' && parts.length === 5 && e === 'schema') return send(res, 200, state.version(b, d).schema);
    }
  }

  if (a === 'compatibility' && b === 'subjects' && c !== undefined && d === 'versions' && method === 'POST' && parts.length <= 5) {
    const body = await readBody(req);
    checkSchemaType(body);
    const result = state.compatibility(c, body.schema as string, e);
    return send(res, 200, verbose ? { is_compatible: result.compatible, messages: result.messages } : { is_compatible: result.compatible });
  }

  if (a === 'config' && parts.length <= 2) {
    if (b === undefined) {
      if (method === 'GET') return send(res, 200, { compatibilityLevel: state.level() });
      if (method === 'PUT') {
        const level = levelFromBody(await readBody(req));
        state.setLevel(level);
        return send(res, 200, { compatibility: level });
      }
    } else {
      if (method === 'GET') {
        const own = state.subjectLevel(b);
        if (own) return send(res, 200, { compatibilityLevel: own });
        if (url.searchParams.get('defaultToGlobal') === 'true') return send(res, 200, { compatibilityLevel: state.level() });
        throw new HttpError(404, 40408, `Subject '${b}' does not have subject-level compatibility configured`);
      }
      if (method === 'PUT') {
        const level = levelFromBody(await readBody(req));
        state.setLevel(level, b);
        return send(res, 200, { compatibility: level });
      }
      if (method === 'DELETE') {
        const prev = state.deleteLevel(b);
        if (!prev) throw new HttpError(404, 40401, `Subject '${b}' not found.`);
        return send(res, 200, { compatibilityLevel: prev });
      }
    }
  }

  throw new HttpError(404, 404, `HTTP ${method} ${url.pathname} is not supported by the local schema registry stand-in`);
}

/** Starts the local stand-in registry. Resolves once it listens. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const host = opts.host ?? '127.0.0.1';
  const state = new RegistryState(opts.file, opts.defaultCompatibility ?? 'BACKWARD');
  const log = opts.logger;
  const server = createServer((req, res) => {
    route(state, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.status >= 409) log?.warn({ method: req.method, url: req.url, status: err.status, error_code: err.errorCode }, err.message);
        send(res, err.status, { error_code: err.errorCode, message: err.message });
      } else {
        log?.warn({ method: req.method, url: req.url, err }, 'schema registry internal error');
        send(res, 500, { error_code: 50001, message: `Error in the backend data store: ${(err as Error)?.message ?? String(err)}` });
      }
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8081, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
