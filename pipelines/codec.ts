// Binds the schema codecs to the runner's Codec port: the schema of a topic comes from the topic
// catalogue (runtime/topics.ts), TopicNameStrategy subjects (`<topic>-value`) in the registry.
import { createCodecs, type SchemaCodecs } from '../schemas/codecs.ts';
import { TOPICS } from '../runtime/topics.ts';
import type { Codec } from './runner.ts';

export interface TopicCodec extends Codec {
  codecs: SchemaCodecs;
}

export async function createTopicCodec(opts: { registryUrl: string; prefix: string }): Promise<TopicCodec> {
  const codecs = await createCodecs({ registryUrl: opts.registryUrl, topicPrefix: opts.prefix, topics: TOPICS });
  return {
    codecs,
    encode: (topic, value) => codecs.encode(topic, value as never),
    decode: async (topic, bytes) => (await codecs.decode(bytes, topic)).value,
  };
}
