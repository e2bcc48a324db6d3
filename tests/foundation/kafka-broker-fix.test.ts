// The local stack's broker carries the fix of KAFKA-20734 (stack/kafka-broker-fix.ts): Apache Kafka
// 4.1+ answers "no such partition" for the leader of a partition that has none, and its transaction
// coordinator then skips that partition's marker, so a transaction ending during a single broker's
// controlled shutdown stays open there or is later committed with the producer's next one (found by
// the chaos run: one decision twice on signals.valid). These check the patched class answers as 4.0
// did, that the jars alone still have the bug (when a Kafka bump fixes it, the fix is to be
// dropped), and that the stack's broker runs with the patched class first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../runtime/config.ts';
import { paths, ROOT } from '../../stack/stack.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';
import { brokerClasspath, PATCHED_DIR } from '../../stack/kafka-broker-fix.ts';

const p = paths(loadConfig(process.env, UNIT_SCHEMAS));
const probe = (classpath: string): string => execFileSync('java', ['-cp', classpath, join(ROOT, 'stack/kafka/LeaderlessPartitionProbe.java')], { encoding: 'utf8' }).trim();

test('KAFKA-20734: with the fix the leader of a partition without one is noNode (the coordinator keeps the marker queued), an unknown partition none; the jars alone answer none for both', () => {
  assert.ok(existsSync(join(p.libs, PATCHED_DIR, '.complete')), 'the fix was built (stack.ts up builds it with the jars)');
  assert.equal(probe(brokerClasspath(p.libs)), 'leaderless=noNode unknown=none');
  assert.equal(probe(`${p.libs}/*`), 'leaderless=none unknown=none', 'Kafka of this version has the bug the fix is for; if it no longer has, drop stack/kafka-broker-fix.ts');
});

test("the stack's broker runs with the patched class first on its classpath", () => {
  const pid = Number(readFileSync(p.kafkaPid, 'utf8').trim());
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmd.includes('kafka.Kafka'), `pid ${pid} is the stack's broker: ${cmd.join(' ')}`);
  assert.equal(cmd[cmd.indexOf('-cp') + 1], brokerClasspath(p.libs));
});
