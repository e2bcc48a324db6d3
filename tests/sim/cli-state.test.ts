// `npm run sim` (sim/main.ts) keeps its paper account in STACK_DIR/sim/state-<port>.json by
// default: stopped with Ctrl-C and started again it serves the same orders; `--fresh-account` opens
// a new one; an unreadable file stops it with the reason. `npm run stack:status` says which account
// is in use, whether the simulator answers or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RestClientV5 } from 'bybit-api';
import { loadConfig } from '../../runtime/config.ts';
import { backupFileOf } from '../../sim/persistence.ts';
import { ROOT } from '../../runtime/paths.ts';
import { stackStatus } from '../../stack/stack.ts';
import { KEY, SECRET } from './helpers.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

interface Run {
  child: ChildProcess;
  lines: string[];
  exit: Promise<number | null>;
}

/** `tsx sim/main.ts` with these settings; resolves once it listens (or has exited). */
async function runSim(env: NodeJS.ProcessEnv, args: string[] = []): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'sim/main.ts', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve) => {
    rl.on('line', (l) => {
      lines.push(l);
      if (l.includes('simulator listening')) resolve();
    });
    rl.once('close', resolve);
  });
  return { child, lines, exit };
}

async function stop(run: Run): Promise<void> {
  run.child.kill('SIGINT');
  assert.equal(await run.exit, 0, 'Ctrl-C closes the simulator cleanly');
}

test('npm run sim continues its paper account across restarts; --fresh-account opens a new one; stack:status names it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, STACK_DIR: dir, BYBIT_SIM_PORT: String(port), BYBIT_API_KEY: KEY, BYBIT_API_SECRET: SECRET, BYBIT_API_SECRET_FILE: '', LOG_LEVEL: 'info' };
  const cfg = loadConfig(env, UNIT_SCHEMAS);
  const file = join(dir, 'sim', `state-${port}.json`);
  const simRow = async () => (await stackStatus(cfg)).find((r) => r.component === 'simulator')!;
  const rest = new RestClientV5({ key: KEY, secret: SECRET, baseUrl: `http://127.0.0.1:${port}` });
  try {
    assert.match((await simRow()).detail, /no paper account yet/);

    let run = await runSim(env);
    const mid = Number((await rest.getTickers({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.lastPrice);
    assert.equal((await rest.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.010', orderLinkId: 'cli-mkt' })).retCode, 0);
    const resting = await rest.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price: (Math.floor(mid * 0.95 * 10) / 10).toFixed(1), orderLinkId: 'cli-rest' });
    assert.equal(resting.retCode, 0);
    const up = await simRow();
    assert.equal(up.state, 'up');
    assert.match(up.detail, /account [0-9a-f]{16} uid 1000001 created .*, 2 orders \(1 open\), [1-9]\d* executions, 1 starts, state /);
    assert.ok(up.detail.endsWith(file), up.detail);
    await stop(run);

    const down = await simRow();
    assert.equal(down.state, 'down');
    assert.match(down.detail, /account [0-9a-f]{16} uid 1000001 created .*, 2 orders \(1 open\), .* 1 starts, saved .*, state /);

    run = await runSim(env);
    const open = (await rest.getActiveOrders({ category: 'linear', orderLinkId: 'cli-rest' })).result.list[0]!;
    assert.deepEqual([open.orderId, open.orderStatus], [resting.result.orderId, 'New'], 'the resting order is still there');
    assert.match((await simRow()).detail, /2 orders \(1 open\), .* 2 starts/);
    await stop(run);

    run = await runSim(env, ['--fresh-account']);
    assert.deepEqual((await rest.getHistoricOrders({ category: 'linear' })).result.list, [], 'a fresh account has no orders');
    assert.match((await simRow()).detail, /0 orders \(0 open\), 0 executions, 1 starts/);
    assert.ok(existsSync(backupFileOf(file)), 'the old account is kept aside');
    await stop(run);

    writeFileSync(file, '{"format":"bybit-sim-state","version":1,"createdAt":');
    run = await runSim(env);
    assert.equal(await run.exit, 1, 'an unreadable state file stops the start');
    const said = run.lines.join('\n');
    assert.ok(said.includes(file) && said.includes('not JSON') && said.includes('--fresh-account'), said);
    assert.match((await simRow()).detail, /cannot be used: not JSON/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
