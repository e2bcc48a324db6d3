// connectors/bybit-errors.ts and connectors/bybit-rest.ts: the error mapping table (pure), the
// environment choice (config only), and the adapter driven through bybit-api's RestClientV5
// against a real simulator (one per test, port 0): every class of answer maps as documented.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { RestClientV5 } from 'bybit-api';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { FatalError, RejectedError, RetriableError, RetriesExhaustedError, classify } from '../../runtime/errors.ts';
import { fromRetCode, fromThrown, MAX_RATE_LIMIT_WAIT_MS } from '../../connectors/bybit-errors.ts';
import { AlreadyAppliedError, AlreadyPlacedError, BybitFatalError, BybitRejectedError, BybitRetriableError, escalate } from '../../pipelines/exchange-port.ts';
import { clientOptions, createBybitRest, parseConfig, type BybitRest } from '../../connectors/bybit-rest.ts';
import { signMessage } from '../../connectors/bybit-sign.ts';

const linkId = (tag = 't') => `${tag}-${randomBytes(8).toString('hex')}`;

// ---------------------------------------------------------------------------------------------
// The mapping table

const NOW = 1_700_000_000_000;
type Row = [name: string, make: () => unknown, kind: 'retriable' | 'rejected' | 'fatal', code: string, extra?: { uncertain?: boolean; retryAfterMs?: number; cls?: new (...a: never[]) => unknown }];

const table: Row[] = [
  ['10006 rate limit, reset in 400 ms', () => fromRetCode(10006, 'Too many visits!', 'create', { resetAtMs: NOW + 400, now: NOW }), 'retriable', 'rate_limited', { uncertain: false, retryAfterMs: 400 }],
  ['10006 reset in the past → no wait', () => fromRetCode(10006, 'Too many visits!', 'create', { resetAtMs: NOW - 5, now: NOW }), 'retriable', 'rate_limited', { retryAfterMs: 0 }],
  ['10006 reset absurdly far → capped', () => fromRetCode(10006, 'Too many visits!', 'create', { resetAtMs: NOW + 3_600_000, now: NOW }), 'retriable', 'rate_limited', { retryAfterMs: MAX_RATE_LIMIT_WAIT_MS }],
  ['10006 without headers → 1 s', () => fromRetCode(10006, 'Too many visits!', 'create'), 'retriable', 'rate_limited', { retryAfterMs: 1000 }],
  ['10016 server error on create is uncertain', () => fromRetCode(10016, 'Internal System Error.', 'create'), 'retriable', 'server_error', { uncertain: true }],
  ['10000 server error on a query is not', () => fromRetCode(10000, 'Server Timeout', 'query'), 'retriable', 'server_error', { uncertain: false }],
  ['10002 timestamp (retriable once)', () => fromRetCode(10002, 'invalid request, please check your server timestamp', 'create'), 'retriable', 'timestamp_out_of_window', { uncertain: false }],
  ['110007 insufficient balance', () => fromRetCode(110007, 'ab not enough for new order', 'create'), 'rejected', 'insufficient_balance'],
  ['170131 spot insufficient balance', () => fromRetCode(170131, 'Insufficient balance.', 'create'), 'rejected', 'insufficient_balance'],
  ['170136 below min qty', () => fromRetCode(170136, 'Order quantity lower than the minimum.', 'create'), 'rejected', 'below_min_qty'],
  ['170140 below min amount', () => fromRetCode(170140, 'Order value exceeded lower limit', 'create'), 'rejected', 'below_min_amount'],
  ['10001 params', () => fromRetCode(10001, 'params error: symbol invalid', 'create'), 'rejected', 'params_invalid'],
  ['110072 on create → already placed', () => fromRetCode(110072, 'OrderLinkedID is duplicate', 'create'), 'rejected', 'already_placed', { cls: AlreadyPlacedError }],
  ['110072 on amend is a plain refusal', () => fromRetCode(110072, 'OrderLinkedID is duplicate', 'amend'), 'rejected', 'exchange_rejected'],
  ['10001 "remains unchanged" on amend → already applied', () => fromRetCode(10001, 'The order remains unchanged as the parameters entered match the existing ones.', 'amend'), 'rejected', 'already_applied', { cls: AlreadyAppliedError }],
  ['34040 trading-stop not modified → already applied', () => fromRetCode(34040, 'not modified', 'amend'), 'rejected', 'already_applied', { cls: AlreadyAppliedError }],
  ['110001 order not exists (cancel)', () => fromRetCode(110001, 'order not exists or too late to cancel', 'cancel'), 'rejected', 'order_not_exists'],
  ['170213 spot order not exists (amend)', () => fromRetCode(170213, 'Order does not exist.', 'amend'), 'rejected', 'order_not_exists'],
  ['unknown retCode → definite refusal', () => fromRetCode(123456, 'something new', 'create'), 'rejected', 'exchange_rejected'],
  ['10003 bad key', () => fromRetCode(10003, 'API key is invalid.', 'create'), 'fatal', 'bad_api_key'],
  ['10004 bad sign', () => fromRetCode(10004, 'error sign!', 'query'), 'fatal', 'bad_signature'],
  ['10005 permission', () => fromRetCode(10005, 'Permission denied', 'create'), 'fatal', 'permission_denied'],
  ['HTTP 503 on create is uncertain', () => fromThrown({ code: 503, message: 'Service Unavailable', body: '<html>', headers: {}, requestOptions: { secret: 'x' } }, 'create'), 'retriable', 'http_5xx', { uncertain: true }],
  ['HTTP 502 on a query', () => fromThrown({ code: 502, message: 'Bad Gateway', body: '' }, 'query'), 'retriable', 'http_5xx', { uncertain: false }],
  ['HTTP 403 (IP rate limit)', () => fromThrown({ code: 403, message: 'Forbidden', body: '' }, 'create'), 'retriable', 'ip_rate_limited', { uncertain: false, retryAfterMs: 1000 }],
  ['HTTP 401', () => fromThrown({ code: 401, message: 'Unauthorized', body: '' }, 'create'), 'fatal', 'unauthorized'],
  ['HTTP 404 (wrong base URL)', () => fromThrown({ code: 404, message: 'Not Found', body: { retCode: 10017, retMsg: 'Route not found.' } }, 'create'), 'fatal', 'route_not_found'],
  ['ECONNRESET after sending → uncertain', () => fromThrown(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'create'), 'retriable', 'network_error', { uncertain: true }],
  ['axios timeout → uncertain', () => fromThrown(Object.assign(new Error('timeout of 300ms exceeded'), { code: 'ECONNABORTED' }), 'create'), 'retriable', 'timeout', { uncertain: true }],
  ['ECONNREFUSED → never sent', () => fromThrown(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'create'), 'retriable', 'network_error', { uncertain: false }],
  ['bare message string "socket hang up"', () => fromThrown('socket hang up', 'cancel'), 'retriable', 'network_error', { uncertain: true }],
  ['something unexpected', () => fromThrown(new TypeError('x is not a function'), 'create'), 'fatal', 'unexpected_error'],
];

for (const [name, make, kind, code, extra] of table) {
  test(`error mapping: ${name}`, () => {
    const e = make() as RetriableError | RejectedError | FatalError;
    assert.equal(classify(e), kind, 'class');
    assert.equal(e.code, code, 'code');
    if (kind === 'retriable') assert.ok(e instanceof BybitRetriableError);
    if (kind === 'rejected') assert.ok(e instanceof BybitRejectedError);
    if (kind === 'fatal') assert.ok(e instanceof BybitFatalError);
    if (extra?.uncertain !== undefined) assert.equal((e as BybitRetriableError).uncertain, extra.uncertain, 'uncertain');
    if (extra?.retryAfterMs !== undefined) assert.equal((e as RetriableError).retryAfterMs, extra.retryAfterMs, 'retryAfterMs');
    if (extra?.cls) assert.ok(e instanceof extra.cls, `instance of ${extra.cls.name}`);
    // Secrets in bybit-api's error object never reach the mapped error.
    assert.ok(!JSON.stringify({ m: e.message, ...e }).includes('"secret"'));
  });
}

test('error mapping: exhausted retries stay retriable, except a timestamp that keeps being refused', () => {
  const net = escalate(new RetriesExhaustedError(6, fromThrown(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'create')));
  assert.equal(classify(net), 'retriable');
  assert.equal(net.code, 'bybit_retries_exhausted');
  const ts = escalate(new RetriesExhaustedError(6, fromRetCode(10002, 'timestamp', 'create')));
  assert.equal(classify(ts), 'fatal');
  assert.equal(ts.code, 'timestamp_repeatedly_rejected');
});

// ---------------------------------------------------------------------------------------------
// Environment choice

test('the Bybit environment is chosen by configuration only', () => {
  const base = { BYBIT_API_KEY: 'k', BYBIT_API_SECRET: 's' };
  const url = (env: Record<string, string>) => Reflect.get(new RestClientV5(clientOptions(parseConfig({ ...base, ...env }))), 'baseUrl') as string;
  assert.equal(url({ BYBIT_ENV: 'sim', BYBIT_SIM_PORT: '9411' }), 'http://127.0.0.1:9411');
  assert.equal(url({}), 'http://127.0.0.1:9380', 'sim on 9380 by default');
  assert.equal(url({ BYBIT_ENV: 'testnet' }), 'https://api-testnet.bybit.com');
  assert.equal(url({ BYBIT_ENV: 'demo' }), 'https://api-demo.bybit.com');
  assert.equal(url({ BYBIT_ENV: 'mainnet' }), 'https://api.bybit.com');
  assert.equal(clientOptions(parseConfig({ BYBIT_ENV: 'testnet' })).testnet, true);
  assert.equal(clientOptions(parseConfig({ BYBIT_ENV: 'demo' })).demoTrading, true);
  for (const env of ['sim', 'testnet', 'demo', 'mainnet']) assert.equal(clientOptions(parseConfig({ BYBIT_ENV: env })).customSignMessageFn, signMessage, `${env}: signed with node's crypto (connectors/bybit-sign.ts)`);
  assert.throws(() => parseConfig({ BYBIT_ENV: 'paper' }));
  assert.throws(() => parseConfig({ BYBIT_RATE_LIMIT_FRACTION: '1.5' }));
});

// ---------------------------------------------------------------------------------------------
// Against the simulator, through bybit-api

async function withSim(fn: (sim: Simulator, rest: BybitRest) => Promise<void>, env: Record<string, string> = {}, simOpts: Parameters<typeof startSimulator>[0] = {}): Promise<void> {
  const sim = await startSimulator({ port: 0, seed: 11, ...simOpts });
  try {
    const rest = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_RATE_LIMIT_FRACTION: '1', ...env }) });
    await fn(sim, rest);
  } finally {
    await sim.close();
  }
}

const buy = (orderLinkId: string, over: Record<string, unknown> = {}) => ({ category: 'spot' as const, symbol: 'ETHUSDT', side: 'Buy' as const, orderType: 'Limit' as const, qty: '0.01', price: '2800', timeInForce: 'GTC' as const, orderLinkId, ...over });

async function rejects<T extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => T, code: string): Promise<T> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message ?? String(e)}`);
    assert.equal((e as unknown as PipelineErrorLike).code, code);
    return e;
  }
  assert.fail(`expected ${cls.name} ${code}, got success`);
}
type PipelineErrorLike = { code: string };

test('adapter on the simulator: create, find by orderLinkId (realtime then history), amend, cancel', () =>
  withSim(async (sim, rest) => {
    const id = linkId('a');
    const ack = await rest.createOrder(buy(id));
    assert.equal(ack.retCode, 0);
    assert.match(ack.result.orderId, /\S/);
    const f = await rest.findOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: id });
    assert.deepEqual([f?.orderId, f?.orderStatus, f?.source], [ack.result.orderId, 'New', 'realtime']);
    const am = await rest.amendOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: id, price: '2810' });
    assert.equal(am.result.orderId, ack.result.orderId);
    await rejects(rest.amendOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: id, price: '2810' }), AlreadyAppliedError, 'already_applied');
    await rest.cancelOrder({ category: 'spot', symbol: 'ETHUSDT', orderId: ack.result.orderId });
    await rejects(rest.cancelOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: id }), BybitRejectedError, 'order_not_exists');
    const after = await rest.findOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: id });
    assert.equal(after?.orderStatus, 'Cancelled');
    assert.equal(await rest.findOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: linkId('none') }), null);
    assert.equal(sim.orders().filter((o) => o.orderLinkId === id).length, 1);
  }));

test('adapter on the simulator: refusals map to rejected, duplicate orderLinkId to already placed', () =>
  withSim(async (_sim, rest) => {
    const id = linkId('d');
    await rest.createOrder(buy(id));
    await rejects(rest.createOrder(buy(id)), AlreadyPlacedError, 'already_placed');
    await rejects(rest.createOrder(buy(linkId(), { qty: '0.0001' })), BybitRejectedError, 'below_min_qty');
    await rejects(rest.createOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '400', orderLinkId: linkId() }), BybitRejectedError, 'insufficient_balance');
    await rejects(rest.createOrder(buy(linkId(), { symbol: 'NOPEUSDT' })), BybitRejectedError, 'params_invalid');
  }));

test('adapter on the simulator: faults map to retriable, with uncertainty where the order may exist', () =>
  withSim(
    async (sim, rest) => {
      const P = ['/v5/order/create'];
      sim.faults.set({ http5xx: { count: 1, status: 503, afterProcessing: true, paths: P } });
      const a = await rejects(rest.createOrder(buy(linkId())), BybitRetriableError, 'http_5xx');
      assert.equal(a.uncertain, true);
      sim.faults.set({ loseResponse: { count: 1, mode: 'reset', paths: P } });
      const b = await rejects(rest.createOrder(buy(linkId())), BybitRetriableError, 'network_error');
      assert.equal(b.uncertain, true);
      sim.faults.set({ loseResponse: { count: 1, mode: 'hang', hangMs: 5000, paths: P } });
      const c = await rejects(rest.createOrder(buy(linkId())), BybitRetriableError, 'timeout');
      assert.equal(c.uncertain, true);
      sim.faults.set({ rateLimitStorm: { count: 1, paths: P } });
      const d = await rejects(rest.createOrder(buy(linkId())), BybitRetriableError, 'rate_limited');
      assert.equal(d.uncertain, false);
      assert.ok(d.retryAfterMs !== undefined && d.retryAfterMs > 0 && d.retryAfterMs <= 1000, `retryAfterMs from X-Bapi-Limit-Reset-Timestamp: ${d.retryAfterMs}`);
      // Each of the three lost answers was executed: the orders exist although no answer said so.
      assert.equal(sim.orders().length, 3);
    },
    { BYBIT_REST_TIMEOUT_MS: '300' },
  ));

test('adapter: bad credentials are fatal; a closed port is retriable and certain not to have executed', async () => {
  const sim = await startSimulator({ port: 0 });
  try {
    const badKey = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_API_KEY: 'nope' }) });
    await rejects(badKey.createOrder(buy(linkId())), BybitFatalError, 'bad_api_key');
    const badSecret = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_API_SECRET: 'wrong' }) });
    await rejects(badSecret.findOrder({ category: 'spot', symbol: 'ETHUSDT', orderLinkId: 'x' }), BybitFatalError, 'bad_signature');
  } finally {
    await sim.close();
  }
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const closed = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(port) }) });
  const e = await rejects(closed.createOrder(buy(linkId())), BybitRetriableError, 'network_error');
  assert.equal(e.uncertain, false);
});
