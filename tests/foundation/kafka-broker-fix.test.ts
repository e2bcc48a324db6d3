// The local stack's broker carries the fix of KAFKA-20734 (stack/kafka-broker-fix.ts): Apache Kafka
// 4.1+ answers "no such partition" for the leader of a partition that has none, and its transaction
// coordinator then skips that partition's marker, so a transaction ending during a single broker's
// controlled shutdown stays open there or is later committed with the producer's next one (found by
// the chaos run: one decision twice on signals.valid). These check the patched class answers as 4.0
// did, that the jars alone still have the bug (when a Kafka bump fixes it, the fix is to be
// dropped), and that the broker the tests use runs with the patched class first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../runtime/config.ts';
import { fetchKafkaJars, paths, ROOT } from '../../stack/stack.ts';
import { createLogger } from '../../runtime/logger.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';
import { brokerClasspath, PATCHED_DIR } from '../../stack/kafka-broker-fix.ts';

const cfg = loadConfig(process.env, UNIT_SCHEMAS);
const p = paths(cfg);
const probe = (classpath: string): string => execFileSync('java', ['-cp', classpath, join(ROOT, 'stack/kafka/LeaderlessPartitionProbe.java')], { encoding: 'utf8' }).trim();

test('KAFKA-20734: with the fix the leader of a partition without one is noNode (the coordinator keeps the marker queued), an unknown partition none; the jars alone answer none for both', () => {
  // What stack.ts up does before it starts a broker (a no-op once done; a checkout using a broker
  // another one started has not done it yet).
  fetchKafkaJars(p, createLogger(cfg, 'test'));
  assert.ok(existsSync(join(p.libs, PATCHED_DIR, '.complete')), 'the fix was built');
  assert.equal(probe(brokerClasspath(p.libs)), 'leaderless=noNode unknown=none');
  assert.equal(probe(`${p.libs}/*`), 'leaderless=none unknown=none', 'Kafka of this version has the bug the fix is for; if it no longer has, drop stack/kafka-broker-fix.ts');
});

test('the broker the tests use (the process listening on its port) has the patched class first on its classpath', () => {
  // By the listening socket rather than the stack's pid file: a checkout may share a broker another
  // checkout of the stack started.
  const [host, port] = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')[0]!.split(':');
  assert.ok(host === '127.0.0.1' || host === 'localhost', `a broker on this machine (KAFKA_BROKERS ${process.env.KAFKA_BROKERS})`);
  const pid = listeningPid(Number(port));
  assert.ok(pid !== null, `a process of this machine listens on ${port}`);
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmd.includes('kafka.Kafka'), `pid ${pid} is a Kafka broker: ${cmd.join(' ')}`);
  const classpath = cmd[cmd.indexOf('-cp') + 1]!;
  assert.match(classpath, new RegExp(`^[^:]*/${PATCHED_DIR}:`), `the patched classes come first: ${classpath}`);
  assert.equal(probe(classpath), 'leaderless=noNode unknown=none', `with the broker's own classpath ${classpath}`);
});

/** The process listening on a TCP port of this machine (from /proc: its socket's inode, then the fd that holds it). */
function listeningPid(port: number): number | null {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; the inode is the tenth column.
      if (c.length > 9 && parseInt(c[1]!.split(':')[1]!, 16) === port && c[3] === '0A') inodes.add(c[9]!);
    }
  }
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return Number(pid);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return null;
}
