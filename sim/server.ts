// startSimulator(): the embeddable Bybit v5 simulator (REST + websocket + admin on one port).
// With `stateFile` the paper account lives on across restarts (sim/persistence.ts); without it the
// simulator is in memory only, as tests want.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { createAdminHandler } from './admin.ts';
import { Authenticator, type Credential } from './auth.ts';
import type { DepthModel } from './book.ts';
import { DcpGuard } from './dcp.ts';
import { FatalError } from '../runtime/errors.ts';
import { SimError } from './errors.ts';
import { DEFAULT_BALANCES, Exchange, type AccountSpec } from './exchange.ts';
import { FaultController, type FaultConfig } from './faults.ts';
import { DEFAULT_FUNDING_RATE, type FundingRateSource } from './funding-settlement.ts';
import { fundingRateAt } from './funding.ts';
import { LISTED_INSTRUMENTS, type Category, type Instrument, type LinearInstrument } from './instruments.ts';
import { changeListing, loadInstrumentsFile, mergeListing } from './listing.ts';
import { instrumentItem } from './market-data.ts';
import { MarketHistory } from './market-history.ts';
import { idKey, loadState, newAccountId, newInstanceNonce, setAside, StateWriter, type StateWriterStats } from './persistence.ts';
import type { PriceProcessOptions } from './price-process.ts';
import { RateLimiter, type RateLimitOptions } from './rate-limit.ts';
import { createRestHandler, RequestCounter } from './rest-server.ts';
import { executionRest, orderRest, positionRest, walletItem } from './views.ts';
import { PublicFeeds } from './ws-feeds.ts';
import { SimWsServer } from './ws-server.ts';

export const DEFAULT_CREDENTIALS: readonly Credential[] = Object.freeze([{ key: 'sim-key', secret: 'sim-secret', uid: '1000001' }]);

export interface SimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  seed?: number;
  /** Exchange time (price steps, order and execution times). Default: the wall clock. */
  clock?: Clock;
  /** Time used to check request timestamps and ws auth expiry. Default: the wall clock. */
  authClock?: Clock;
  /** Run the price process on a timer. Default: true with the wall clock, false with a custom clock. */
  autoTick?: boolean;
  /** API keys; each maps to a uid (account). Default [{key:'sim-key', secret:'sim-secret', uid:'1000001'}]. */
  credentials?: Array<{ key: string; secret: string; uid?: string }>;
  /** Starting balances of every account. Default {USDT: 100000, BTC: 1, ETH: 10}. */
  balances?: Record<string, number>;
  /** Per-uid balances, overriding `balances`. */
  accounts?: AccountSpec[];
  rateLimits?: RateLimitOptions;
  priceProcess?: PriceProcessOptions;
  /** The instruments listed (default LISTED_INSTRUMENTS: twelve spot and linear pairs). */
  instruments?: readonly Instrument[];
  /** A JSON file of instruments (sim/listing.ts), when `instruments` is not given. */
  instrumentsFile?: string;
  depth?: Partial<DepthModel>;
  faults?: FaultConfig;
  /** Category of public topics on a connection whose path names none. Default 'linear'. */
  publicCategory?: Category;
  logger?: Logger;
  /**
   * Keep the exchange's state (accounts, orders, executions, market position) in this file:
   * restored at start, saved as it changes, at close and at process exit. Unset: in memory only.
   * With a restored state, `balances` / `accounts` only open accounts the file does not hold.
   */
  stateFile?: string;
  /** With `stateFile`: open a fresh account even if the file holds one (kept as the backup, see setAside()). */
  fresh?: boolean;
  /** With `stateFile`: an account change is on disk within this, ms. Default 200. */
  stateSaveMs?: number;
  /**
   * Funding rate of linear positions at each 8-hourly settlement, (symbol, settleTime) => rate.
   * Default: funding-settlement.ts defaultFundingRate (a constant 0.01 %).
   */
  fundingRate?: FundingRateSource;
  /**
   * Instance nonce mixed into every id stream (orderId, execId, public trade id, ws message id).
   * Default: 16 random bytes, new at every start, so no id repeats across restarts. Pass the same
   * value to reproduce ids exactly (same seed, clock and calls); never reuse one on a state file.
   */
  instanceNonce?: string;
}

export interface SimAccountInfo {
  /** The state file, or undefined when the simulator keeps its state in memory only. */
  stateFile?: string;
  /** Random id of the paper account (new with every fresh or in-memory account). */
  accountId: string;
  /** Exchange time the account was opened (this start, for a fresh or in-memory account). */
  createdAt: number;
  /** Starts of the simulator on this account, this one included. */
  starts: number;
  instanceNonce: string;
  /** Writes of the state file by this process. */
  writer?: StateWriterStats;
}

export interface Simulator {
  readonly restUrl: string;
  readonly wsUrl: string;
  readonly port: number;
  readonly host: string;
  readonly credentials: readonly Credential[];
  readonly exchange: Exchange;
  readonly faults: FaultController;
  /** Recent trades, funding rates settled, cross sequence. */
  readonly market: MarketHistory;
  /** Disconnection protection. */
  readonly dcp: DcpGuard;
  /**
   * Add an instrument or change a listed one (filters, fees, status: `Closed` / `Delivering`
   * delist it), while running; kept in the state file. Returns its instruments-info item.
   */
  changeInstrument(change: Record<string, unknown>): Record<string, unknown>;
  /** Every instrument ever listed, as instruments-info items (with their status). */
  instruments(): Array<Record<string, unknown>>;
  /** Advance a manual clock by ms (if the clock has advance()) and run the price process. */
  advance(ms?: number): void;
  /** Advance by whole price steps. */
  tick(steps?: number): void;
  /** Jump a symbol's mid price and match resting orders against it. */
  setPrice(symbol: string, price: number): void;
  /** Place an order directly, as another client of the same account would (no REST, no rate limit). */
  placeOrder(params: Record<string, unknown>, opts?: { uid?: string; key?: string }): { orderId: string; orderLinkId: string };
  /** Every order ever accepted, in Bybit's shape plus uid and source. */
  orders(uid?: string): Array<Record<string, unknown>>;
  executions(uid?: string): Array<Record<string, unknown>>;
  state(): Record<string, unknown>;
  wsConnections(): Array<{ id: string; path: string; uid?: string; subscriptions: string[]; sent: number }>;
  /** REST requests per path since the start (or the last reset), whatever their answer. */
  readonly requests: RequestCounter;
  /** Where the account lives and how often it was started. */
  accountInfo(): SimAccountInfo;
  /** Write the state file now (no-op without one). */
  save(): void;
  close(): Promise<void>;
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? pino({ level: 'silent' });
  const seed = opts.seed ?? 42;
  let nextUid = 1000001;
  const credentials: Credential[] = (opts.credentials ?? DEFAULT_CREDENTIALS).map((c) => ({ key: c.key, secret: c.secret, uid: c.uid ?? String(nextUid++) }));
  const uids = [...new Set(credentials.map((c) => c.uid))];
  const accounts: AccountSpec[] = uids.map((uid) => opts.accounts?.find((a) => a.uid === uid) ?? { uid, balances: { ...(opts.balances ?? DEFAULT_BALANCES) } });
  for (const a of opts.accounts ?? []) if (!uids.includes(a.uid)) accounts.push(a);

  const nonce = opts.instanceNonce ?? newInstanceNonce();
  const saved = opts.stateFile && !opts.fresh ? loadState(opts.stateFile) : undefined;
  if (saved?.instances.some((i) => i.nonce === nonce)) {
    throw new FatalError('sim_nonce_reused', `instance nonce ${nonce} was already used on ${opts.stateFile}: ids would repeat; leave instanceNonce unset`);
  }
  const configured = opts.instruments ?? (opts.instrumentsFile ? loadInstrumentsFile(opts.instrumentsFile) : LISTED_INSTRUMENTS);
  const instruments = mergeListing(saved?.ext?.instruments, configured);
  // Funding settles at the rate the market history publishes (sim/funding.ts, shown in tickers and
  // funding/history), unless a test gives its own; the history exists once the exchange does, and
  // the first settlement comes with a later price step.
  let market: MarketHistory | null = null;
  const published: FundingRateSource = (symbol, settleTime) => {
    const inst = exchange.instruments.get('linear', symbol) as LinearInstrument | undefined;
    return market?.fundingRate(symbol, settleTime) ?? (inst ? fundingRateAt(exchange.prices, inst, settleTime) : undefined) ?? DEFAULT_FUNDING_RATE;
  };
  const exchange = new Exchange({ seed, idKey: idKey(nonce), clock, instruments, depth: opts.depth, priceProcess: opts.priceProcess, accounts, restore: saved?.exchange, fundingRate: opts.fundingRate ?? published });
  market = new MarketHistory(exchange, saved?.ext?.market);
  const dcp = new DcpGuard(exchange, saved?.ext?.dcp);
  const startedAt = saved?.createdAt ?? clock.now();
  const meta = { accountId: saved?.accountId ?? newAccountId(), createdAt: startedAt, seed, instances: [...(saved?.instances ?? []), { nonce, startedAt: clock.now() }] };
  const auth = new Authenticator(credentials, opts.authClock ?? systemClock);
  const limiter = new RateLimiter(opts.rateLimits ?? {}, clock);
  const faults = new FaultController(seed, opts.faults ?? {}, () => clock.now());

  // eslint-disable-next-line prefer-const
  let sim: Simulator;
  const requests = new RequestCounter();
  const rest = createRestHandler({ ex: exchange, auth, limiter, faults, logger, startedAt, ext: { market, dcp }, requests, admin: createAdminHandler(() => sim) });
  const server: Server = createServer(rest.listener);
  const ws = new SimWsServer(server, { ex: exchange, auth, faults, logger, publicCategory: opts.publicCategory ?? 'linear', feeds: new PublicFeeds(exchange, market), dcp });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  // Only now that this simulator owns its port does it touch the file (a second one on the same
  // port fails to listen above and leaves the first one's account alone).
  let writer: StateWriter | undefined;
  let unsubscribe = () => {};
  const onExit = () => {
    try {
      writer?.flushSync();
    } catch (err) {
      logger.error({ err, file: opts.stateFile }, 'simulator state not saved at exit');
    }
  };
  if (opts.stateFile) {
    const file = opts.stateFile;
    try {
      if (opts.fresh) logger.info({ file, kept: setAside(file) }, 'simulator: fresh paper account');
      const ext = () => ({ instruments: [...exchange.instruments.list], dcp: dcp.snapshot(), market: market.snapshot() });
      writer = new StateWriter({ file, meta, exchange: () => exchange.snapshot(), ext, now: () => clock.now(), resume: saved, delayMs: opts.stateSaveMs, logger });
      writer.flushSync();
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
    unsubscribe = exchange.on((e) => writer!.changed(e.type === 'private'));
    dcp.onChange = () => writer!.changed(true);
    process.on('exit', onExit);
    if (saved) logger.info({ file, accountId: meta.accountId, orders: saved.exchange.orders.length, executions: saved.exchange.executions.length, starts: meta.instances.length }, 'simulator: paper account restored');
  }

  const autoTick = opts.autoTick ?? opts.clock === undefined;
  const timer = autoTick ? setInterval(() => exchange.advance(), exchange.prices.stepMs) : undefined;
  timer?.unref();
  // DCP windows are whole seconds; a price step can be much longer (--step-ms).
  const dcpTimer = autoTick ? setInterval(() => dcp.check(), 250) : undefined;
  dcpTimer?.unref();

  const uidFor = (o?: { uid?: string; key?: string }) => {
    if (o?.uid) return o.uid;
    if (o?.key) {
      const c = auth.credential(o.key);
      if (!c) throw new SimError(10003, 'API key is invalid.');
      return c.uid;
    }
    return credentials[0]!.uid;
  };
  const inst = (category: string, symbol: string) => exchange.instruments.get(category, symbol)!;

  sim = {
    restUrl: `http://${host}:${port}`,
    wsUrl: `ws://${host}:${port}/v5/private`,
    port,
    host,
    credentials,
    exchange,
    faults,
    market,
    dcp,
    advance(ms = 0) {
      const c = clock as Clock & { advance?: (ms: number) => void };
      if (ms > 0 && typeof c.advance === 'function') c.advance(ms);
      exchange.advance();
      dcp.check();
    },
    changeInstrument(change) {
      const i = changeListing(exchange, change);
      writer?.changed(true);
      return instrumentItem(i, startedAt, exchange.instruments.list.indexOf(i) + 1);
    },
    instruments() {
      return exchange.instruments.list.map((i, k) => ({ category: i.category, ...instrumentItem(i, startedAt, k + 1) }));
    },
    tick(steps = 1) {
      sim.advance(steps * exchange.prices.stepMs);
    },
    setPrice(symbol, price) {
      exchange.setPrice(symbol, price);
    },
    placeOrder(params, o) {
      return exchange.placeOrder(uidFor(o), params, { source: 'direct' });
    },
    orders(uid) {
      return exchange.allOrders(uid).map((o) => ({ ...orderRest(o, inst(o.category, o.symbol)), category: o.category, uid: o.uid, source: o.source }));
    },
    executions(uid) {
      return exchange.allExecutions(uid).map((e) => ({ ...executionRest(e, inst(e.category, e.symbol)), category: e.category, uid: e.uid }));
    },
    state() {
      return {
        time: exchange.now(),
        stepMs: exchange.prices.stepMs,
        steps: exchange.prices.steps,
        regime: exchange.prices.regimeAt(),
        prices: Object.fromEntries(exchange.prices.symbols().map((s) => [s, String(exchange.mid(s))])),
        accounts: exchange.accountIds().map((uid) => ({
          uid,
          wallet: walletItem(exchange.wallet(uid)),
          positions: exchange.positions(uid).map((p) => positionRest(p.position, p.instrument, p.figures)),
        })),
        orders: { total: exchange.allOrders().length, open: exchange.allOrders().filter((o) => o.orderStatus === 'New' || o.orderStatus === 'PartiallyFilled').length },
        executions: exchange.allExecutions().length,
        faults: { config: faults.config, stats: faults.stats },
        dcp: dcp.triggers,
        ws: ws.connections(),
        account: sim.accountInfo(),
      };
    },
    wsConnections: () => ws.connections(),
    requests,
    accountInfo() {
      return { stateFile: opts.stateFile, accountId: meta.accountId, createdAt: startedAt, starts: meta.instances.length, instanceNonce: nonce, writer: writer ? { ...writer.stats } : undefined };
    },
    save() {
      writer?.flushSync();
    },
    async close() {
      if (timer) clearInterval(timer);
      if (dcpTimer) clearInterval(dcpTimer);
      market.close();
      rest.releaseHung();
      await ws.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // Nothing can change the account any more: the last state goes to disk before close resolves.
      unsubscribe();
      await writer?.close();
      process.off('exit', onExit);
    },
  };
  return sim;
}
