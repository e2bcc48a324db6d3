// The codec port: what stages, bridges and connectors need from the schema layer. The runtime
// hands every unit one (built by the schema layer's topic codec, schemas/topic-codec.ts), so
// nothing below the schemas needs to know how records are encoded.

/** Encodes values for a topic (schema chosen by topic) and decodes Confluent wire-format bytes. */
export interface Codec {
  encode(topic: string, value: unknown): Promise<Buffer>;
  decode(topic: string, bytes: Buffer): Promise<unknown>;
}
