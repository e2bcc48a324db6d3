// Binds the schema codecs to the Codec port (runtime/codec.ts): the schema of a topic comes from the topic
// catalogue (runtime/topics.ts), TopicNameStrategy subjects (`<topic>-value`) in the registry.
//
// Decoding is synchronous once a writer schema id has been seen (the avsc type, resolver and
// plain-object converter are cached per schema id): `decode` then returns an already-settled
// promise without an async frame, and `decodeSync` (replays, hot loops) returns the value itself,
// or undefined when the record's schema id has not been fetched from the registry yet.
import { createCodecs, type SchemaCodecs } from './codecs.ts';
import { TOPICS } from '../runtime/topics.ts';
import type { Codec } from '../runtime/codec.ts';

export interface TopicCodec extends Codec {
  codecs: SchemaCodecs;
  /** The decoded value, or undefined when the writer schema is not cached yet (use decode); throws what decode rejects with. */
  decodeSync(topic: string, bytes: Buffer): unknown;
}

export async function createTopicCodec(opts: { registryUrl: string; prefix: string }): Promise<TopicCodec> {
  const codecs = await createCodecs({ registryUrl: opts.registryUrl, topicPrefix: opts.prefix, topics: TOPICS });
  return {
    codecs,
    encode: (topic, value) => codecs.encode(topic, value as never),
    decode: (topic, bytes) => {
      try {
        const fast = codecs.decodeSync(bytes, topic);
        if (fast !== undefined) return Promise.resolve(fast.value);
      } catch (err) {
        return Promise.reject(err);
      }
      return codecs.decode(bytes, topic).then((d) => d.value);
    },
    decodeSync: (topic, bytes) => codecs.decodeSync(bytes, topic)?.value,
  };
}
