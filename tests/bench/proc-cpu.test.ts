// CPU time from /proc (stack/process-sampler.ts) and its accounting per service (stack/bench/cpu.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { clockTicksPerSecond, cpuTicks, parseProcStat, processTree, procStat } from '../../stack/process-sampler.ts';
import { cpuDeltaMs, isService, orderManagerPart, type CpuSnapshot } from '../../stack/bench/cpu.ts';
import { OM_SPLITS } from '../../stack/bench/e2e.ts';
import { UNIT_SERVICES } from '../../stack/services.ts';

const linux = process.platform === 'linux';

test('a stat line: fields counted from the last parenthesis, whatever the command name holds', () => {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
  const line = '4242 (tsx (loader) x) S 17 4242 4242 0 -1 4194560 100 0 0 0 1234 567 8 9 20 0 11 0 1000 2000000 3000';
  assert.deepEqual(parseProcStat(line), { comm: 'tsx (loader) x', ppid: 17, utime: 1234, stime: 567 });
  assert.equal(parseProcStat('garbage'), null);
  assert.equal(parseProcStat('1 (x) S'), null, 'too short: no CPU fields');
});

test('this process: its own stat, CPU ticks, the clock rate', { skip: !linux && 'needs /proc' }, () => {
  const st = procStat(process.pid);
  assert.ok(st, 'readable');
  assert.equal(st.ppid, process.ppid);
  const t = cpuTicks(process.pid);
  assert.ok(Number.isInteger(t) && t! >= 0);
  const hz = clockTicksPerSecond();
  assert.ok(Number.isInteger(hz) && hz > 0);
  // Ticks never run ahead of what Node itself counts (user + system, µs), beyond one tick of rounding each.
  const u = process.cpuUsage();
  assert.ok((cpuTicks(process.pid)! * 1e6) / hz <= u.user + u.system + (2 * 1e6) / hz);
});

test('a process that is gone reads as null', { skip: !linux && 'needs /proc' }, async () => {
  const c = spawn(process.execPath, ['-e', '']);
  await once(c, 'exit');
  assert.equal(cpuTicks(c.pid!), null);
});

test('a process tree holds the root and what it started', { skip: !linux && 'needs /proc' }, async () => {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    await once(c, 'spawn');
    const tree = processTree(process.pid);
    assert.ok(tree.includes(process.pid) && tree.includes(c.pid!));
    assert.deepEqual(processTree(c.pid!), [c.pid]);
    assert.deepEqual(processTree(2 ** 30), [], 'no such process');
  } finally {
    c.kill('SIGKILL');
  }
});

test('CPU per service between snapshots: ticks → ms, a new process counted from zero, a vanished one left out', () => {
  const snap = (at: number, ticks: Record<string, Array<[number, number]>>): CpuSnapshot => ({ at, ticks: Object.fromEntries(Object.entries(ticks).map(([k, v]) => [k, new Map(v)])) });
  const a = snap(0, { om: [[10, 100], [11, 50]], broker: [[20, 1000]] });
  const b = snap(1000, { om: [[10, 130], [12, 5]], broker: [[20, 1250]], rabbitmq: [[30, 7]] });
  assert.deepEqual(cpuDeltaMs(a, b, 100), { om: 350, broker: 2500, rabbitmq: 70 });
});

test('the services a signal passes through: the order manager and the rest, not the driver, nor one process of a split order manager (its sum counts it)', () => {
  for (const g of ['order-manager', 'kafka-broker', 'simulator', 'postgresql (bench database backends)']) assert.equal(isService(g), true, g);
  for (const g of ['bench driver', orderManagerPart(['track']), orderManagerPart(['signal-bridge', 'signal-decide'])]) assert.equal(isService(g), false, g);
});

test('each split of the order manager (BENCH_OM_PROCESSES) runs every part once: its per-process CPU adds up to the whole', () => {
  const parts = Object.keys(UNIT_SERVICES).sort();
  for (const [n, split] of Object.entries(OM_SPLITS)) {
    if (Number(n) === 1) continue; // one process: the whole order-manager service
    assert.equal(split.length, Number(n), `split ${n}: ${n} processes`);
    assert.deepEqual(split.flat().sort(), parts, `split ${n}`);
  }
});
