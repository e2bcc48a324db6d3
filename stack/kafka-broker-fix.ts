// The local stack's broker with the fix of KAFKA-20734 (upstream pull request apache/kafka#22680,
// open; Apache Kafka 4.1 to 4.4 have the bug, 4.0 has not).
//
// From 4.1 on, KRaftMetadataCache.getPartitionLeaderEndpoint answers "no such partition" for a
// partition that exists but has no live leader, and the transaction coordinator takes such a
// partition for a deleted one: it completes the transaction without writing its marker there
// (TransactionMarkerChannelManager, "likely deleted already and hence can be skipped"). On a single
// broker every partition is leaderless during a controlled shutdown (SIGTERM), so a transaction that
// ends in that window stays open on the partition (read_committed consumers stop there) until the
// same producer id ends another one there, whose marker then ends both: the records of an aborted
// transaction become visible. The chaos run found both (a reader stopped short of a partition's end
// for minutes; signals.valid holding one decision twice, the second written by the retry of the
// aborted first). Production brokers with a second in-sync replica move the leader instead; a
// partition with one replica, or whose replicas all stop, has the window too.
//
// The fix is the pull request's: a known partition without a live leader answers Node.noNode, which
// the coordinator keeps queued until the leader is back (4.0's behaviour). It is built once from
// kafka-metadata's sources jar (Maven Central) into <libs>/patched, which comes first on the
// broker's classpath (kafkaJavaArgs). A Kafka version whose method differs fails here, loudly: see
// whether it carries the fix and drop or adjust this file.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../runtime/logger.ts';

/** Under the jars directory: the patched classes, first on the broker's classpath. */
export const PATCHED_DIR = 'patched';

const SOURCE = 'org/apache/kafka/metadata/KRaftMetadataCache.java';

const BUGGY = `            .flatMap(partition -> Optional.ofNullable(image.cluster().broker(partition.leader))
                .map(broker -> broker.node(listenerName.value()).orElse(Node.noNode())));`;

const FIXED = `            // KAFKA-20734 (stack/kafka-broker-fix.ts): a known partition without a live leader is
            // Node.noNode, not "no such partition".
            .map(partition -> Optional.ofNullable(image.cluster().broker(partition.leader))
                .flatMap(broker -> broker.node(listenerName.value()))
                .orElse(Node.noNode()));`;

/** The broker's classpath: the patched classes first, then the jars. */
export function brokerClasspath(libs: string): string {
  return `${join(libs, PATCHED_DIR)}:${libs}/*`;
}

/** Build the patched class into <libs>/patched once (the jars must be there); a no-op once built. */
export function patchKafkaBroker(libs: string, version: string, pom: string, log: Logger): void {
  const out = join(libs, PATCHED_DIR);
  if (existsSync(join(out, '.complete'))) return;
  log.info({ version, into: out }, 'building the fix of KAFKA-20734 into the broker (once, cached)');
  const work = join(libs, 'patched-src');
  rmSync(work, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  tool('mvn', ['-q', '-B', '-f', pom, 'dependency:copy', `-Dartifact=org.apache.kafka:kafka-metadata:${version}:jar:sources`, `-DoutputDirectory=${work}`]);
  tool('jar', ['xf', join(work, `kafka-metadata-${version}-sources.jar`), SOURCE], work);
  const file = join(work, SOURCE);
  const text = readFileSync(file, 'utf8');
  if (!text.includes(BUGGY)) {
    throw new Error(`stack/kafka-broker-fix.ts: KRaftMetadataCache.getPartitionLeaderEndpoint of Kafka ${version} is not the one the KAFKA-20734 fix is for; check whether ${version} carries the fix and drop or adjust the fix`);
  }
  writeFileSync(file, text.replace(BUGGY, FIXED));
  mkdirSync(out, { recursive: true });
  tool('javac', ['-nowarn', '-proc:none', '-cp', `${libs}/*`, '-d', out, file]);
  writeFileSync(join(out, '.complete'), `KAFKA-20734 fix for ${version}, ${new Date().toISOString()}\n`);
  rmSync(work, { recursive: true, force: true });
}

/** Run a build tool quietly (Maven prints colour codes even with -q); a failure carries its output. */
function tool(cmd: string, args: string[], cwd?: string): void {
  try {
    execFileSync(cmd, args, { cwd, stdio: 'pipe', encoding: 'utf8' });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`stack/kafka-broker-fix.ts: ${cmd} ${args.join(' ')} failed: ${x.message}\n${x.stdout ?? ''}${x.stderr ?? ''}`.slice(0, 4000), { cause: e });
  }
}
