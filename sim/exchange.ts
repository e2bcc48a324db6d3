// The exchange core: accounts, orders, matching against the synthetic book, fees, positions, and
// the private/public events every state change produces. No I/O here: REST and websocket servers
// sit on top and turn method calls and events into Bybit messages. Deterministic for a seed, an
// instance nonce, a clock and a sequence of calls. Every id stream (orderId, execId, public trade
// id, websocket message id) is keyed by the instance nonce, which is new at every start, so ids
// never repeat across restarts, whatever state the exchange was restored from.
import type { Clock } from '../runtime/clock.ts';
import { Account, applyLinearFill, positionKey, unrealisedPnl, type AccountState, type Position, type PositionIdx } from './accounts.ts';
import { accClosedPnl, emptyCloseAcc, type ClosedPnlRecord, type CloseAcc } from './closed-pnl.ts';
import { availableUpTo, bestOpposite, buildBook, DEFAULT_DEPTH, makerFill, take, type Book, type Consumed, type DepthModel, type Fill } from './book.ts';
import { paramsError, RetCode, SimError } from './errors.ts';
import { InstrumentRegistry, isTrading, type Category, type Instrument, type LinearInstrument, type SpotInstrument } from './instruments.ts';
import { isMultiple, parseNum, toStep, trim } from './num.ts';
import { isOpen, leavesQty, PLAIN_ORDER, transition, type OrderStatus, type SimOrder, type Side, type TimeInForce } from './orders.ts';
import { defaultFundingRate, fundingTimesBetween, settleFunding, type FundingRateSource } from './funding-settlement.ts';
import { closesOnly, positionIdxFor } from './positions.ts';
import { fires, sourcePrice, trail, type ConditionalSpec } from './trading-stop.ts';
import { PriceProcess, type PriceProcessOptions, type PriceState, type StepEvent } from './price-process.ts';
import { Rng } from './rng.ts';
import type { TxLogEntry } from './transaction-log.ts';
import { executionWs, orderWs, positionWs, walletItem, type CoinFigures, type Execution, type PositionFigures, type WalletFigures } from './views.ts';

/** An execution the core does not make itself (funding): the core adds its execId and seq. */
export type ExecutionSpec = Omit<Execution, 'execId' | 'seq'>;

export type PrivateTopic = 'order' | 'execution' | 'position' | 'wallet';

export interface PublicTrade {
  T: number;
  s: string;
  S: Side;
  v: string;
  p: string;
  L: string;
  i: string;
  BT: boolean;
}

export type ExchangeEvent =
  | { type: 'private'; uid: string; topic: PrivateTopic; creationTime: number; data: Array<Record<string, unknown>> }
  | { type: 'trades'; category: Category; symbol: string; trades: PublicTrade[] }
  | { type: 'step'; time: number; symbols: string[] };

export interface AccountSpec {
  uid: string;
  balances?: Record<string, number>;
}

/** Four 32-bit words mixed into every id stream; see idKey() in persistence.ts. */
export type IdKey = readonly [number, number, number, number];

export interface ExchangeOptions {
  seed: number;
  /** Instance nonce of the id streams: a new one at every start. */
  idKey: IdKey;
  clock: Clock;
  instruments: readonly Instrument[];
  depth?: Partial<DepthModel>;
  priceProcess?: PriceProcessOptions;
  /** Accounts to open; on a restore, only those the saved state does not hold. */
  accounts: AccountSpec[];
  /** Continue from a snapshot (Exchange.snapshot()) instead of starting empty. */
  restore?: ExchangeState;
  /** Funding rate of linear positions at each settlement (default: funding-settlement.ts defaultFundingRate). */
  fundingRate?: FundingRateSource;
}

/**
 * Everything the exchange needs to continue exactly after a restart. It references the exchange's
 * live objects and arrays (no copies of the history): read it at once, never modify it. Id streams
 * are not part of it (they are keyed anew at every start).
 */
export interface ExchangeState {
  accounts: AccountState[];
  /** Every order ever accepted, oldest first. */
  orders: SimOrder[];
  executions: Execution[];
  /** Every account's transaction log and closed P&L records, oldest first (append-only). */
  transactionLog: TxLogEntry[];
  closedPnl: ClosedPnlRecord[];
  seq: number;
  lastTrade: Record<string, { price: number; dir: string }>;
  /** Liquidity takers consumed in the current step, per "category:symbol". */
  consumed: Array<{ key: string; step: number; buy: Array<[number, number]>; sell: Array<[number, number]> }>;
  prices: PriceState;
}

export interface PlaceOptions {
  source?: 'rest' | 'direct';
  /** Accept the order, then publish it as Rejected (fault injection). */
  forceReject?: boolean;
}

export const DEFAULT_BALANCES: Readonly<Record<string, number>> = Object.freeze({ USDT: 100000, BTC: 1, ETH: 10 });

const LINK_ID_RE = /^[A-Za-z0-9_-]{1,36}$/;
const PRICE_BAND = 0.1; // aggressive limit prices further than 10% through mid are refused

/** What a change made through Exchange.apply() touched, to be published. */
export interface Touch {
  position(uid: string, key: string): void;
  wallet(uid: string): void;
  order(o: SimOrder): void;
  tx(e: Omit<TxLogEntry, 'id'>): void;
  /** Record and push an execution; returns its execId. */
  execution(e: ExecutionSpec): string;
}

interface Pending {
  orders: Set<SimOrder>;
  executions: Execution[];
  positions: Set<string>; // uid \u0000 position key
  wallets: Set<string>;
  /** Closing fills per order in this pass: one closed P&L record each when the pass ends. */
  closes: Map<SimOrder, CloseAcc>;
}

export class Exchange {
  readonly instruments: InstrumentRegistry;
  readonly prices: PriceProcess;
  readonly depth: DepthModel;
  private readonly clock: Clock;
  private readonly ids: Rng;
  private readonly tradeIds: Rng;
  private readonly messageIds: Rng;
  private readonly accounts = new Map<string, Account>();
  private readonly orders = new Map<string, SimOrder>();
  /** The same orders in the order they were accepted (the state file appends from its end). */
  private readonly orderList: SimOrder[] = [];
  private readonly byLinkId = new Map<string, SimOrder>();
  private readonly open = new Set<SimOrder>();
  /** Untriggered conditional orders (TP/SL, trailing stops): they wait for their trigger, not for the book. */
  private readonly conditional = new Set<SimOrder>();
  private readonly executions: Execution[] = [];
  private readonly txLog: TxLogEntry[] = [];
  private readonly closedPnls: ClosedPnlRecord[] = [];
  private readonly ledgerIds: Rng;
  private readonly consumed = new Map<string, { step: number; side: Record<Side, Consumed> }>();
  private readonly listeners = new Set<(e: ExchangeEvent) => void>();
  private readonly lastTrade = new Map<string, { price: number; dir: string }>();
  private seq: number;
  private pending: Pending | null = null;
  private readonly fundingRate: FundingRateSource;
  /** Price-process time up to which funding is settled (settlements follow price steps). */
  private fundingCursor: number;

  constructor(opts: ExchangeOptions) {
    this.clock = opts.clock;
    this.instruments = new InstrumentRegistry(opts.instruments);
    this.depth = { ...DEFAULT_DEPTH, ...opts.depth };
    this.ids = new Rng(opts.seed, 2, opts.idKey);
    this.tradeIds = new Rng(opts.seed, 3, opts.idKey);
    this.messageIds = new Rng(opts.seed, 5, opts.idKey);
    this.ledgerIds = new Rng(opts.seed, 13, opts.idKey);
    const r = opts.restore;
    this.prices = new PriceProcess(opts.priceProcess ?? {}, opts.seed, this.instruments.priceSymbols(), opts.clock.now(), r?.prices);
    if (r) {
      for (const a of r.accounts) this.accounts.set(a.uid, Account.fromState(a));
      for (const o of r.orders) {
        this.orders.set(o.orderId, o);
        this.orderList.push(o);
        if (o.orderLinkId) this.byLinkId.set(`${o.uid}\u0000${o.orderLinkId}`, o);
        if (o.orderStatus === 'Untriggered') this.conditional.add(o);
        else if (isOpen(o)) this.open.add(o);
      }
      this.executions.push(...r.executions);
      this.txLog.push(...r.transactionLog);
      this.closedPnls.push(...r.closedPnl);
      for (const [symbol, t] of Object.entries(r.lastTrade)) this.lastTrade.set(symbol, t);
      for (const c of r.consumed) this.consumed.set(c.key, { step: c.step, side: { Buy: new Map(c.buy), Sell: new Map(c.sell) } });
    }
    for (const a of opts.accounts) if (!this.accounts.has(a.uid)) this.addAccount(a);
    // The execution/position sequence only grows, even over a stale or deleted state file: each
    // start begins at its clock in microseconds (a run would need 1000 fills per ms to catch up).
    this.seq = Math.max(r?.seq ?? 0, opts.clock.now() * 1000);
    this.fundingRate = opts.fundingRate ?? defaultFundingRate;
    this.fundingCursor = this.prices.time;
  }

  snapshot(): ExchangeState {
    return {
      accounts: [...this.accounts.values()].map((a) => a.snapshot()),
      orders: this.orderList,
      executions: this.executions,
      transactionLog: this.txLog,
      closedPnl: this.closedPnls,
      seq: this.seq,
      lastTrade: Object.fromEntries(this.lastTrade),
      consumed: [...this.consumed].map(([key, c]) => ({ key, step: c.step, buy: [...c.side.Buy], sell: [...c.side.Sell] })),
      prices: this.prices.snapshot(),
    };
  }

  /** A websocket message id (private pushes), from the instance-keyed id streams. */
  messageId(): string {
    return this.messageIds.uuid();
  }

  // ---- wiring -------------------------------------------------------------------------------

  on(listener: (e: ExchangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: ExchangeEvent): void {
    for (const l of this.listeners) l(e);
  }

  now(): number {
    return this.clock.now();
  }

  addAccount(spec: AccountSpec): Account {
    const acc = new Account(spec.uid, spec.balances ?? { ...DEFAULT_BALANCES });
    this.accounts.set(spec.uid, acc);
    return acc;
  }

  account(uid: string): Account {
    const a = this.accounts.get(uid);
    if (!a) throw new SimError(RetCode.API_KEY, 'API key is invalid.');
    return a;
  }

  accountIds(): string[] {
    return [...this.accounts.keys()];
  }

  // ---- time ---------------------------------------------------------------------------------

  /** Run the price process up to the clock's time, matching resting orders at every step. */
  advance(): StepEvent[] {
    const evs = this.prices.advanceTo(this.now(), (step) => this.onStep(step));
    if (evs.length) this.emit({ type: 'step', time: this.prices.time, symbols: this.prices.symbols() });
    return evs;
  }

  /** Move a symbol's mid at once (tests, admin) and match resting orders against it. */
  setPrice(symbol: string, price: number): void {
    this.advance();
    this.prices.setMid(symbol, price, this.now());
    this.withPending(() => {
      this.resetConsumption(symbol);
      this.matchResting(symbol);
    });
    this.fireStops([symbol]);
    this.emit({ type: 'step', time: this.now(), symbols: [symbol] });
  }

  private onStep(step: StepEvent[]): void {
    this.withPending(() => {
      // Positions held up to a settlement time pay or receive its funding at the mark it brings.
      const time = step[0]?.time ?? this.fundingCursor;
      for (const at of fundingTimesBetween(this.fundingCursor, time)) this.settleFundingAt(at);
      this.fundingCursor = Math.max(this.fundingCursor, time);
      for (const ev of step) {
        this.resetConsumption(ev.symbol);
        for (const cat of ['spot', 'linear'] as const) {
          const inst = this.instruments.get(cat, ev.symbol);
          if (!inst) continue;
          const qd = inst.category === 'spot' ? Number(inst.basePrecision) : Number(inst.qtyStep);
          const qty = Math.max(qd, toStep(ev.tradeQty, qd, 'floor'));
          this.publishTrades(cat, ev.symbol, [{ price: ev.price, qty, side: ev.tradeSide, time: ev.time }]);
        }
        this.matchResting(ev.symbol);
      }
    });
    this.fireStops(step.map((ev) => ev.symbol));
  }

  // ---- conditional orders (sim/trading-stop.ts decides what they are) -------------------------

  /** Untriggered conditional orders of an account, optionally of one position. */
  conditionalOrders(uid: string, symbol?: string, idx?: PositionIdx): SimOrder[] {
    return [...this.conditional].filter((o) => o.uid === uid && (!symbol || o.symbol === symbol) && (idx === undefined || o.positionIdx === idx));
  }

  addConditional(uid: string, t: Touch, spec: ConditionalSpec): SimOrder {
    const now = this.now();
    const inst = this.instruments.get('linear', spec.symbol) as LinearInstrument;
    const o: SimOrder = {
      orderId: this.ids.uuid(), orderLinkId: '', uid, category: 'linear', marketUnit: '', timeInForce: spec.orderType === 'Market' ? 'IOC' : 'GTC', reduceOnly: true, closeOnTrigger: true, orderStatus: 'Created',
      cancelType: 'UNKNOWN', rejectReason: 'EC_NoError', cumExecQty: 0, cumExecValue: 0, cumExecFee: 0, closedPnl: 0, feeCurrency: inst.settleCoin,
      createdTime: now, updatedTime: now, lastPriceOnCreated: this.lastPrice(spec.symbol), source: 'rest', lockCoin: '', lockAmount: 0,
      ...spec, trailExtreme: 0,
    };
    this.orders.set(o.orderId, o);
    this.orderList.push(o);
    transition(o, 'Untriggered', now);
    this.conditional.add(o);
    t.order(o);
    return o;
  }

  modifyConditional(o: SimOrder, t: Touch, changes: Partial<Pick<SimOrder, 'triggerPrice' | 'triggerBy' | 'triggerDirection' | 'trailingStop' | 'activePrice' | 'trailExtreme'>>): void {
    Object.assign(o, changes);
    transition(o, 'Untriggered', this.now());
    t.order(o);
  }

  /** Cancel an untriggered conditional order (Deactivated), and show its position without it. */
  deactivate(o: SimOrder, cancelType = 'CancelByUser'): void {
    this.withPending(() => {
      o.cancelType = cancelType;
      transition(o, 'Deactivated', this.now());
      this.conditional.delete(o);
      this.pending!.orders.add(o);
      this.pending!.positions.add(`${o.uid}\u0000${positionKey(o.symbol, o.positionIdx)}`);
    });
  }

  /** Conditional orders of these symbols whose trigger is reached fire, one after the other. */
  private fireStops(symbols: string[]): void {
    if (this.conditional.size === 0) return;
    const due: SimOrder[] = [];
    for (const o of this.conditional) {
      if (!symbols.includes(o.symbol)) continue;
      if (o.stopOrderType === 'TrailingStop') trail(o, this.lastPrice(o.symbol), Number(this.instruments.get('linear', o.symbol)!.tickSize));
      if (fires(o, sourcePrice(this, o.symbol, o.triggerBy))) due.push(o);
    }
    for (const o of due) if (this.conditional.has(o)) this.fire(o);
  }

  /**
   * Untriggered -> Triggered (published on its own, as Bybit's instantaneous state), then the
   * order it carries: reduce-only, for the whole position (Full) or its size (Partial).
   */
  private fire(o: SimOrder): void {
    const size = this.account(o.uid).findPosition(o.symbol, o.positionIdx)?.size ?? 0;
    if (!((o.side === 'Sell' && size > 0) || (o.side === 'Buy' && size < 0))) {
      this.deactivate(o, 'CancelByTpSlTsClear');
      return;
    }
    const inst = this.instruments.get('linear', o.symbol) as LinearInstrument;
    const now = this.now();
    this.conditional.delete(o);
    this.withPending(() => {
      transition(o, 'Triggered', now);
      this.pending!.orders.add(o);
      this.pending!.positions.add(`${o.uid}\u0000${positionKey(o.symbol, o.positionIdx)}`);
    });
    this.withPending(() => {
      o.qty = o.closeWholePosition ? Math.abs(size) : Math.min(o.qty, Math.abs(size));
      if (o.orderType === 'Market') {
        const mid = this.mid(o.symbol);
        o.price = toStep(o.side === 'Buy' ? mid * (1 + this.depth.protectionBps / 1e4) : mid * (1 - this.depth.protectionBps / 1e4), Number(inst.tickSize), o.side === 'Buy' ? 'floor' : 'ceil');
      }
      o.updatedTime = now;
      this.pending!.orders.add(o);
      this.matchTaker(o, inst);
    });
  }

  private settleFundingAt(time: number): void {
    const deps = {
      accounts: this.accounts.values(),
      instrument: (symbol: string) => this.instruments.get('linear', symbol) as LinearInstrument | undefined,
      mark: (symbol: string) => this.mid(symbol),
      rateAt: this.fundingRate,
    };
    this.apply((t) => settleFunding(deps, time, t));
  }

  private resetConsumption(symbol: string): void {
    for (const cat of ['spot', 'linear']) this.consumed.delete(`${cat}:${symbol}`);
  }

  // ---- market data --------------------------------------------------------------------------

  mid(symbol: string): number {
    return this.prices.mid(symbol);
  }

  lastPrice(symbol: string): number {
    return this.lastTrade.get(symbol)?.price ?? this.mid(symbol);
  }

  tickDirection(symbol: string): string {
    return this.lastTrade.get(symbol)?.dir ?? 'ZeroPlusTick';
  }

  book(inst: Instrument): Book {
    const step = inst.category === 'spot' ? Number(inst.basePrecision) : Number(inst.qtyStep);
    return buildBook(this.mid(inst.symbol), Number(inst.tickSize), step, this.depth);
  }

  private consumption(inst: Instrument): Record<Side, Consumed> {
    const key = `${inst.category}:${inst.symbol}`;
    let c = this.consumed.get(key);
    if (!c || c.step !== this.prices.steps) {
      c = { step: this.prices.steps, side: { Buy: new Map(), Sell: new Map() } };
      this.consumed.set(key, c);
    }
    return c.side;
  }

  /** Book as seen by the next taker: levels minus what takers already consumed this step. */
  visibleBook(inst: Instrument, depth = 50): Book {
    const b = this.book(inst);
    const c = this.consumption(inst);
    const left = (side: Side) => (l: { price: number; qty: number }) => ({ price: l.price, qty: Math.max(0, l.qty - (c[side].get(l.price) ?? 0)) });
    return {
      asks: b.asks.map(left('Buy')).filter((l) => l.qty > 0).slice(0, depth),
      bids: b.bids.map(left('Sell')).filter((l) => l.qty > 0).slice(0, depth),
    };
  }

  // ---- queries ------------------------------------------------------------------------------

  /** Every order ever accepted, oldest first (optionally one account's). */
  allOrders(uid?: string): SimOrder[] {
    return uid ? this.orderList.filter((o) => o.uid === uid) : [...this.orderList];
  }

  findOrder(uid: string, ref: { orderId?: string; orderLinkId?: string }): SimOrder | undefined {
    if (ref.orderId) {
      const o = this.orders.get(ref.orderId);
      return o && o.uid === uid ? o : undefined;
    }
    if (ref.orderLinkId) return this.byLinkId.get(`${uid}\u0000${ref.orderLinkId}`);
    return undefined;
  }

  allExecutions(uid?: string): Execution[] {
    return uid ? this.executions.filter((e) => e.uid === uid) : [...this.executions];
  }

  /** An account's transaction log, oldest first. */
  transactionLog(uid: string): TxLogEntry[] {
    return this.txLog.filter((e) => e.uid === uid);
  }

  /** An account's closed P&L records, oldest first. */
  closedPnl(uid: string): ClosedPnlRecord[] {
    return this.closedPnls.filter((r) => r.uid === uid);
  }

  private addTx(e: Omit<TxLogEntry, 'id'>): void {
    this.txLog.push({ id: this.ledgerIds.uuid(), ...e });
  }

  positions(uid: string): Array<{ position: Position; instrument: LinearInstrument; figures: PositionFigures }> {
    const acc = this.account(uid);
    return [...acc.positions.values()].map((p) => {
      const instrument = this.instruments.get('linear', p.symbol) as LinearInstrument;
      return { position: p, instrument, figures: this.positionFigures(p, instrument, uid) };
    });
  }

  /** Mark, P&L and margin of a position; with the account's uid, also its TP/SL. */
  positionFigures(p: Position, inst: LinearInstrument, uid?: string): PositionFigures {
    const mark = this.mid(p.symbol);
    const value = Math.abs(p.size) * mark;
    const im = value / p.leverage;
    const mm = value * 0.005;
    const upl = unrealisedPnl(p, mark);
    // Isolated-style estimate: price at which the position's margin is used up down to MM.
    const liqPrice = p.size === 0 ? 0 : p.avgPrice - Math.sign(p.size) * ((p.avgPrice / p.leverage) - p.avgPrice * 0.005);
    return { mark, upl, im, mm, liqPrice: Math.max(0, toStep(liqPrice, Number(inst.tickSize))), ...this.positionStops(uid, p) };
  }

  /** The full-mode TP/SL and trailing stop of a position, from its untriggered conditional orders. */
  private positionStops(uid: string | undefined, p: Position): { takeProfit: number; stopLoss: number; trailingStop: number } {
    const out = { takeProfit: 0, stopLoss: 0, trailingStop: 0 };
    if (uid === undefined || this.conditional.size === 0) return out;
    for (const o of this.conditional) {
      if (o.uid !== uid || o.symbol !== p.symbol || o.positionIdx !== p.positionIdx || o.tpslMode !== 'Full') continue;
      if (o.stopOrderType === 'TakeProfit') out.takeProfit = o.triggerPrice;
      else if (o.stopOrderType === 'StopLoss') out.stopLoss = o.triggerPrice;
      else if (o.stopOrderType === 'TrailingStop') out.trailingStop = o.trailingStop;
    }
    return out;
  }

  orderIM(uid: string): number {
    let im = 0;
    const acc = this.account(uid);
    for (const o of this.open) {
      if (o.uid !== uid || o.category !== 'linear' || reducing(o)) continue;
      im += (leavesQty(o) * o.price) / acc.leverageOf(o.symbol, o.positionIdx);
    }
    return im;
  }

  wallet(uid: string): WalletFigures {
    const acc = this.account(uid);
    let upl = 0, posIM = 0, posMM = 0;
    for (const { figures } of this.positions(uid)) {
      upl += figures.upl;
      posIM += figures.im;
      posMM += figures.mm;
    }
    const orderIM = this.orderIM(uid);
    const coins: CoinFigures[] = [];
    let totalWallet = 0;
    for (const [coin, b] of [...acc.coins.entries()].sort(([a], [c]) => (a < c ? -1 : 1))) {
      const usdPrice = coin === 'USDT' || coin === 'USDC' ? 1 : (() => {
        const s = this.instruments.coinSymbol(coin);
        return s ? this.mid(s) : 0;
      })();
      const isSettle = coin === 'USDT';
      const f: CoinFigures = {
        coin,
        wallet: b.wallet,
        locked: b.locked,
        upl: isSettle ? upl : 0,
        orderIM: isSettle ? orderIM : 0,
        positionIM: isSettle ? posIM : 0,
        positionMM: isSettle ? posMM : 0,
        available: isSettle ? b.wallet + upl - b.locked - orderIM - posIM : b.wallet - b.locked,
        usdPrice,
        cumRealisedPnl: b.cumRealisedPnl,
      };
      coins.push(f);
      totalWallet += b.wallet * usdPrice;
    }
    return { coins, totalWallet, totalUpl: upl, totalIM: posIM + orderIM, totalMM: posMM };
  }

  available(uid: string, coin: string): number {
    return this.wallet(uid).coins.find((c) => c.coin === coin)?.available ?? 0;
  }

  // ---- admin --------------------------------------------------------------------------------

  setBalance(uid: string, coin: string, amount: number): void {
    const acc = this.accounts.get(uid) ?? this.addAccount({ uid, balances: {} });
    this.withPending(() => {
      const b = acc.coin(coin);
      const change = amount - b.wallet;
      b.wallet = amount;
      // A balance set from outside is a transfer as far as the account's log is concerned.
      if (change !== 0) {
        this.addTx({
          uid, category: '', symbol: '', side: 'None', transactionTime: this.now(), type: change > 0 ? 'TRANSFER_IN' : 'TRANSFER_OUT', qty: change, size: 0, currency: coin,
          tradePrice: 0, funding: null, fee: 0, cashFlow: change, change, cashBalance: amount, feeRate: 0, tradeId: '', orderId: '', orderLinkId: '',
        });
      }
      this.pending!.wallets.add(uid);
    });
  }

  /**
   * Run a state change made outside the core (position modes, leverage, TP/SL, funding) and
   * publish what it touched, as the core's own changes are: one push per topic and account.
   */
  apply(fn: (t: Touch) => void): void {
    this.withPending(() => {
      const p = this.pending!;
      fn({
        position: (uid, key) => p.positions.add(`${uid}\u0000${key}`),
        wallet: (uid) => p.wallets.add(uid),
        order: (o) => p.orders.add(o),
        tx: (e) => this.addTx(e),
        execution: (spec) => {
          this.seq++;
          const e: Execution = { ...spec, execId: this.ids.uuid(), seq: this.seq };
          this.executions.push(e);
          p.executions.push(e);
          return e.execId;
        },
      });
    });
  }

  /** Open orders (conditional ones included) of an account, optionally of one linear symbol. */
  openOrders(uid: string, symbol?: string): SimOrder[] {
    return this.orderList.filter((o) => o.uid === uid && isOpen(o) && (!symbol || (o.category === 'linear' && o.symbol === symbol)));
  }

  // ---- trading ------------------------------------------------------------------------------

  private instrumentOf(category: unknown, symbol: unknown): Instrument {
    if (category !== 'spot' && category !== 'linear') throw paramsError(`category ${String(category)} is not supported by the simulator (spot, linear)`);
    if (typeof symbol !== 'string' || !symbol) throw paramsError('symbol is required');
    const inst = this.instruments.get(category, symbol);
    if (!inst) throw paramsError('symbol invalid');
    return inst;
  }

  placeOrder(uid: string, p: Record<string, unknown>, opts: PlaceOptions = {}): { orderId: string; orderLinkId: string } {
    this.advance();
    const acc = this.account(uid);
    const inst = this.instrumentOf(p.category, p.symbol);
    if (!isTrading(inst)) throw inst.category === 'linear' ? new SimError(RetCode.NOT_LIVE, 'This contract is not live') : new SimError(RetCode.SPOT_INVALID_SYMBOL, 'Invalid symbol.');
    const side = p.side;
    if (side !== 'Buy' && side !== 'Sell') throw inst.category === 'spot' ? new SimError(RetCode.SPOT_INVALID_SIDE, 'Invalid side.') : paramsError('side invalid');
    const orderType = p.orderType;
    if (orderType !== 'Market' && orderType !== 'Limit') throw paramsError('orderType invalid');
    let qty = parseNum(p.qty);
    if (!(qty > 0)) throw paramsError('qty invalid');
    const tif = (p.timeInForce ?? 'GTC') as TimeInForce;
    if (!['GTC', 'IOC', 'FOK', 'PostOnly'].includes(tif)) throw paramsError('timeInForce invalid');
    if (orderType === 'Market' && tif === 'PostOnly') throw paramsError('market order cannot be PostOnly');
    const orderLinkId = p.orderLinkId === undefined || p.orderLinkId === '' ? '' : String(p.orderLinkId);
    if (orderLinkId && !LINK_ID_RE.test(orderLinkId)) {
      throw paramsError('orderLinkId is invalid: at most 36 characters of letters, digits, "-" and "_"');
    }
    if (orderLinkId && this.byLinkId.has(`${uid}\u0000${orderLinkId}`)) throw new SimError(RetCode.DUPLICATE_LINK_ID, 'OrderLinkedID is duplicate');
    const positionIdx = inst.category === 'linear' ? positionIdxFor(acc, inst, p.positionIdx) : 0;
    if (inst.category === 'spot' && p.positionIdx !== undefined && Number(p.positionIdx) !== 0) throw paramsError('position idx not match position mode');
    const reduceOnly = p.reduceOnly === true || p.reduceOnly === 'true';
    const closeOnTrigger = p.closeOnTrigger === true || p.closeOnTrigger === 'true';
    const mid = this.mid(inst.symbol);
    const tick = Number(inst.tickSize);
    let price = 0;
    if (orderType === 'Limit') {
      price = parseNum(p.price);
      if (!(price > 0)) throw paramsError('price is required for Limit orders');
    }
    let marketUnit: SimOrder['marketUnit'] = '';
    const now = this.now();

    if (inst.category === 'spot') {
      if (reduceOnly) throw paramsError('reduceOnly is not supported for spot');
      if (orderType === 'Market') {
        const mu = p.marketUnit ?? (side === 'Buy' ? 'quoteCoin' : 'baseCoin');
        if (mu !== 'baseCoin' && mu !== 'quoteCoin') throw paramsError('marketUnit invalid');
        marketUnit = mu;
      }
      this.validateSpot(acc, inst, side, orderType, marketUnit, qty, price, mid);
    } else {
      if (orderType === 'Market') price = toStep(side === 'Buy' ? mid * (1 + this.depth.protectionBps / 1e4) : mid * (1 - this.depth.protectionBps / 1e4), tick, side === 'Buy' ? 'floor' : 'ceil');
      qty = this.validateLinear(acc, inst, side, orderType, qty, price, mid, reduceOnly || closesOnly(positionIdx, side), positionIdx);
    }

    const o: SimOrder = {
      orderId: this.ids.uuid(),
      orderLinkId,
      uid,
      category: inst.category,
      symbol: inst.symbol,
      side,
      orderType,
      price,
      qty,
      marketUnit,
      timeInForce: orderType === 'Market' ? 'IOC' : tif,
      reduceOnly,
      closeOnTrigger,
      orderStatus: 'Created',
      cancelType: 'UNKNOWN',
      rejectReason: 'EC_NoError',
      cumExecQty: 0,
      cumExecValue: 0,
      cumExecFee: 0,
      closedPnl: 0,
      feeCurrency: inst.category === 'linear' ? 'USDT' : side === 'Buy' ? inst.baseCoin : inst.quoteCoin,
      createdTime: now,
      updatedTime: now,
      lastPriceOnCreated: this.lastPrice(inst.symbol),
      source: opts.source ?? 'rest',
      lockCoin: '',
      lockAmount: 0,
      ...PLAIN_ORDER,
      positionIdx,
    };
    this.orders.set(o.orderId, o);
    this.orderList.push(o);
    if (orderLinkId) this.byLinkId.set(`${uid}\u0000${orderLinkId}`, o);

    this.withPending(() => {
      this.pending!.orders.add(o);
      if (opts.forceReject) {
        o.rejectReason = 'EC_Others';
        transition(o, 'Rejected', now);
        return;
      }
      if (inst.category === 'spot' && orderType === 'Limit') {
        o.lockCoin = side === 'Buy' ? inst.quoteCoin : inst.baseCoin;
        o.lockAmount = side === 'Buy' ? qty * price : qty;
        acc.coin(o.lockCoin).locked += o.lockAmount;
        this.pending!.wallets.add(uid);
      }
      this.matchTaker(o, inst);
    });
    return { orderId: o.orderId, orderLinkId: o.orderLinkId };
  }

  private validateSpot(acc: Account, inst: SpotInstrument, side: Side, type: 'Market' | 'Limit', unit: SimOrder['marketUnit'], qty: number, price: number, mid: number): void {
    const tick = Number(inst.tickSize);
    const baseStep = Number(inst.basePrecision);
    if (type === 'Limit') {
      if (!isMultiple(price, tick)) throw new SimError(RetCode.SPOT_PRICE_DECIMALS, 'Order price decimal too long.');
      if (!isMultiple(qty, baseStep)) throw new SimError(RetCode.SPOT_QTY_DECIMALS, 'Order volume decimal too long');
      if (qty < Number(inst.minOrderQty)) throw new SimError(RetCode.SPOT_QTY_TOO_LOW, 'Order quantity lower than the minimum.');
      if (qty > Number(inst.maxLimitOrderQty)) throw new SimError(RetCode.SPOT_QTY_TOO_LARGE, 'Order quantity too large.');
      if (qty * price < Number(inst.minOrderAmt)) throw new SimError(RetCode.SPOT_VALUE_TOO_LOW, 'Order value exceeded lower limit');
      if (side === 'Buy' && price > mid * (1 + PRICE_BAND)) throw new SimError(RetCode.SPOT_PRICE_HIGH, `Buy order price cannot be higher than ${trim(mid * (1 + PRICE_BAND), 2)}.`);
      if (side === 'Sell' && price < mid * (1 - PRICE_BAND)) throw new SimError(RetCode.SPOT_PRICE_LOW, `Sell order price cannot be lower than ${trim(mid * (1 - PRICE_BAND), 2)}.`);
      const need = side === 'Buy' ? qty * price : qty;
      const coin = side === 'Buy' ? inst.quoteCoin : inst.baseCoin;
      if (this.available(acc.uid, coin) + 1e-12 < need) throw new SimError(RetCode.SPOT_BALANCE, 'Insufficient balance.');
      return;
    }
    if (unit === 'quoteCoin') {
      if (!isMultiple(qty, Number(inst.quotePrecision))) throw new SimError(RetCode.SPOT_MARKET_AMOUNT_DECIMALS, 'Market order amount decimal too long');
      if (qty < Number(inst.minOrderAmt)) throw new SimError(RetCode.SPOT_VALUE_TOO_LOW, 'Order value exceeded lower limit');
      if (qty / mid > Number(inst.maxMarketOrderQty)) throw new SimError(RetCode.SPOT_QTY_TOO_LARGE, 'Order quantity too large.');
      const coin = side === 'Buy' ? inst.quoteCoin : inst.baseCoin;
      const need = side === 'Buy' ? qty : qty / mid;
      if (this.available(acc.uid, coin) + 1e-12 < need) throw new SimError(RetCode.SPOT_BALANCE, 'Insufficient balance.');
      return;
    }
    if (!isMultiple(qty, baseStep)) throw new SimError(RetCode.SPOT_QTY_DECIMALS, 'Order volume decimal too long');
    if (qty < Number(inst.minOrderQty)) throw new SimError(RetCode.SPOT_QTY_TOO_LOW, 'Order quantity lower than the minimum.');
    if (qty > Number(inst.maxMarketOrderQty)) throw new SimError(RetCode.SPOT_QTY_TOO_LARGE, 'Order quantity too large.');
    if (qty * mid < Number(inst.minOrderAmt)) throw new SimError(RetCode.SPOT_VALUE_TOO_LOW, 'Order value exceeded lower limit');
    const coin = side === 'Buy' ? inst.quoteCoin : inst.baseCoin;
    const need = side === 'Buy' ? qty * mid * (1 + inst.takerFee) : qty;
    if (this.available(acc.uid, coin) + 1e-12 < need) throw new SimError(RetCode.SPOT_BALANCE, 'Insufficient balance.');
  }

  /** Returns the quantity to use (reduce-only orders are clamped to the position). */
  private validateLinear(acc: Account, inst: LinearInstrument, side: Side, type: 'Market' | 'Limit', qty: number, price: number, mid: number, reduceOnly: boolean, idx: PositionIdx): number {
    const tick = Number(inst.tickSize);
    const step = Number(inst.qtyStep);
    if (type === 'Limit') {
      if (!isMultiple(price, tick)) throw paramsError(`price must be a multiple of tickSize ${inst.tickSize}`);
      if (price < Number(inst.minPrice) || price > Number(inst.maxPrice)) throw new SimError(RetCode.PRICE_RANGE, 'Order price is out of permissible range');
      if ((side === 'Buy' && price > mid * (1 + PRICE_BAND)) || (side === 'Sell' && price < mid * (1 - PRICE_BAND))) {
        throw new SimError(RetCode.PRICE_RANGE, 'Order price is out of permissible range');
      }
    }
    if (!isMultiple(qty, step)) throw paramsError(`qty must be a multiple of qtyStep ${inst.qtyStep}`);
    if (qty < Number(inst.minOrderQty)) throw paramsError('The number of contracts exceeds minimum limit allowed');
    if (qty > Number(type === 'Market' ? inst.maxMktOrderQty : inst.maxOrderQty)) throw paramsError('The number of contracts exceeds maximum limit allowed');
    const size = acc.findPosition(inst.symbol, idx)?.size ?? 0;
    const ref = type === 'Limit' ? price : mid;
    if (reduceOnly) {
      const reduces = (side === 'Sell' && size > 0) || (side === 'Buy' && size < 0);
      if (!reduces) throw new SimError(RetCode.REDUCE_ONLY, 'current position is zero, cannot fix reduce-only order qty');
      return Math.min(qty, Math.abs(size));
    }
    if (qty * ref < Number(inst.minNotionalValue)) throw new SimError(RetCode.MIN_NOTIONAL, `Order does not meet minimum order value ${inst.minNotionalValue}USDT`);
    const opposite = (side === 'Sell' && size > 0) || (side === 'Buy' && size < 0);
    const increasing = opposite ? Math.max(0, qty - Math.abs(size)) : qty;
    const cost = (increasing * ref) / acc.leverageOf(inst.symbol, idx) + qty * ref * inst.takerFee;
    if (increasing > 0 && this.available(acc.uid, inst.settleCoin) + 1e-9 < cost) throw new SimError(RetCode.INSUFFICIENT_AB, 'ab not enough for new order');
    return qty;
  }

  /** Taker part of a new or amended order, then its resulting status. */
  private matchTaker(o: SimOrder, inst: Instrument): void {
    const now = this.now();
    const book = this.book(inst);
    const consumed = this.consumption(inst)[o.side];
    const qtyStep = inst.category === 'spot' ? Number(inst.basePrecision) : Number(inst.qtyStep);
    const protection = o.side === 'Buy' ? this.mid(inst.symbol) * (1 + this.depth.protectionBps / 1e4) : this.mid(inst.symbol) * (1 - this.depth.protectionBps / 1e4);
    const limit = o.orderType === 'Market' ? protection : o.price;

    if (o.timeInForce === 'PostOnly') {
      const best = bestOpposite(book, consumed, o.side);
      if (best !== undefined && (o.side === 'Buy' ? best <= o.price : best >= o.price)) {
        o.rejectReason = 'EC_PostOnlyWillTakeLiquidity';
        this.close(o, cancelStatus(o));
        return;
      }
      this.rest(o);
      return;
    }
    if (o.timeInForce === 'FOK' && availableUpTo(book, consumed, o.side, limit) + 1e-12 < o.qty - o.cumExecQty) {
      o.rejectReason = 'EC_NoEnoughQtyToFill';
      this.close(o, 'Cancelled');
      return;
    }
    let fills: Fill[];
    if (o.marketUnit === 'quoteCoin') {
      const budget = o.side === 'Buy' ? Math.min(o.qty, this.available(o.uid, inst.quoteCoin)) : Infinity;
      const maxQty = o.side === 'Sell' ? Math.min(o.qty / this.mid(inst.symbol), this.available(o.uid, inst.baseCoin)) : undefined;
      fills = o.side === 'Buy' ? take(book, consumed, o.side, qtyStep, { limit, maxQuote: budget }) : take(book, consumed, o.side, qtyStep, { limit, maxQty, maxQuote: o.qty });
    } else {
      let maxQty = o.qty - o.cumExecQty;
      let maxQuote: number | undefined;
      if (inst.category === 'spot' && o.orderType === 'Market') {
        if (o.side === 'Sell') maxQty = Math.min(maxQty, this.available(o.uid, inst.baseCoin));
        else maxQuote = this.available(o.uid, inst.quoteCoin) / (1 + inst.takerFee);
      }
      fills = take(book, consumed, o.side, qtyStep, { limit, maxQty, maxQuote });
    }
    for (const f of fills) this.applyFill(o, inst, f, false, now);

    let done: boolean;
    if (o.marketUnit === 'quoteCoin') {
      // Quote-sized: done when what is left of the budget cannot buy one more qty step.
      const stepValue = qtyStep * (fills[fills.length - 1]?.price ?? this.mid(inst.symbol));
      done = o.qty - o.cumExecValue < stepValue + 1e-9;
    } else {
      done = o.cumExecQty >= o.qty - 1e-12;
    }
    if (done && o.cumExecQty > 0) {
      this.close(o, 'Filled');
      return;
    }
    if (o.orderType === 'Market' || o.timeInForce === 'IOC' || o.timeInForce === 'FOK') {
      o.rejectReason = 'EC_NoImmediateQtyToFill';
      this.close(o, cancelStatus(o));
      return;
    }
    this.rest(o);
  }

  private rest(o: SimOrder): void {
    const to: OrderStatus = o.cumExecQty > 0 ? 'PartiallyFilled' : 'New';
    transition(o, to, this.now());
    this.open.add(o);
    this.pending!.orders.add(o);
    if (o.category === 'linear') this.pending!.wallets.add(o.uid);
  }

  private close(o: SimOrder, to: OrderStatus): void {
    transition(o, to, this.now());
    this.open.delete(o);
    this.pending!.orders.add(o);
    if (o.lockAmount > 0) {
      const acc = this.account(o.uid);
      const b = acc.coin(o.lockCoin);
      b.locked = Math.max(0, b.locked - o.lockAmount);
      o.lockAmount = 0;
      this.pending!.wallets.add(o.uid);
    }
    if (o.category === 'linear') this.pending!.wallets.add(o.uid);
  }

  private applyFill(o: SimOrder, inst: Instrument, f: Fill, isMaker: boolean, now: number): void {
    const acc = this.account(o.uid);
    const value = f.qty * f.price;
    const feeRate = isMaker ? inst.makerFee : inst.takerFee;
    let fee: number;
    let closedSize = 0;
    let linearTx: { cashFlow: number; size: number; balance: number; currency: string } | undefined;
    if (inst.category === 'spot') {
      const base = acc.coin(inst.baseCoin);
      const quote = acc.coin(inst.quoteCoin);
      if (o.side === 'Buy') {
        fee = f.qty * feeRate; // spot buys pay the fee in the base coin
        quote.wallet -= value;
        base.wallet += f.qty - fee;
        if (o.lockAmount > 0) {
          const release = Math.min(o.lockAmount, f.qty * o.price);
          o.lockAmount -= release;
          quote.locked = Math.max(0, quote.locked - release);
        }
      } else {
        fee = value * feeRate; // spot sells pay it in the quote coin
        base.wallet -= f.qty;
        quote.wallet += value - fee;
        if (o.lockAmount > 0) {
          const release = Math.min(o.lockAmount, f.qty);
          o.lockAmount -= release;
          base.locked = Math.max(0, base.locked - release);
        }
      }
    } else {
      fee = value * feeRate;
      const p = acc.position(inst.symbol, now, o.positionIdx);
      const sizeBefore = p.size;
      const r = applyLinearFill(p, o.side, f.qty, f.price, fee);
      closedSize = r.closedSize;
      // TP/SL and trailing stops belong to the position: cleared with it (also when it flips).
      if (closedSize > 0 && Math.sign(p.size) !== Math.sign(sizeBefore)) {
        for (const stop of this.conditionalOrders(o.uid, inst.symbol, o.positionIdx)) this.deactivate(stop, 'CancelByTpSlTsClear');
      }
      const usdt = acc.coin(inst.settleCoin);
      usdt.wallet += r.realised;
      usdt.cumRealisedPnl += r.realised;
      p.updatedTime = now;
      p.leverage = acc.leverageOf(inst.symbol, o.positionIdx);
      if (closedSize > 0) {
        const pending = this.pending!;
        let a = pending.closes.get(o);
        if (!a) pending.closes.set(o, (a = emptyCloseAcc(p.leverage, now)));
        a.closedSize += closedSize;
        a.cumEntryValue += closedSize * r.entryPrice;
        a.cumExitValue += closedSize * f.price;
        a.pnl += r.pnl;
        a.openFee += r.openFeeShare;
        a.closeFee += r.closeFee;
        a.funding += r.fundingShare;
        a.fills++;
        a.lastTime = now;
      }
      linearTx = { cashFlow: r.pnl, size: p.size, balance: usdt.wallet, currency: inst.settleCoin };
      this.pending!.positions.add(`${o.uid}\u0000${positionKey(inst.symbol, o.positionIdx)}`);
    }
    this.seq++;
    if (inst.category === 'linear') acc.position(inst.symbol, now, o.positionIdx).seq = this.seq;
    o.cumExecQty = toStep(o.cumExecQty + f.qty, inst.category === 'spot' ? Number(inst.basePrecision) : Number(inst.qtyStep));
    o.cumExecValue += value;
    o.cumExecFee += fee;
    o.updatedTime = now;
    const e: Execution = {
      execId: this.ids.uuid(),
      execType: 'Trade',
      uid: o.uid,
      category: inst.category,
      symbol: inst.symbol,
      orderId: o.orderId,
      orderLinkId: o.orderLinkId,
      side: o.side,
      orderPrice: o.price,
      orderQty: o.qty,
      leavesQty: o.marketUnit === 'quoteCoin' ? 0 : Math.max(0, o.qty - o.cumExecQty),
      orderType: o.orderType,
      execPrice: f.price,
      execQty: f.qty,
      execValue: value,
      execFee: fee,
      feeRate,
      feeCurrency: o.feeCurrency,
      isMaker,
      execTime: now,
      markPrice: this.mid(inst.symbol),
      closedSize,
      seq: this.seq,
      stopOrderType: o.stopOrderType,
    };
    this.executions.push(e);
    this.pending!.executions.push(e);
    const tx = { uid: o.uid, category: inst.category, symbol: inst.symbol, side: o.side, transactionTime: now, type: 'TRADE' as const, tradePrice: f.price, funding: null, feeRate, tradeId: e.execId, orderId: o.orderId, orderLinkId: o.orderLinkId };
    if (linearTx) {
      const cashFlow = linearTx.cashFlow;
      this.addTx({ ...tx, qty: f.qty, size: linearTx.size, currency: linearTx.currency, fee, cashFlow, change: cashFlow - fee, cashBalance: linearTx.balance });
    } else {
      // One entry per coin the fill moves; the fee sits on the coin it was charged in.
      const buy = o.side === 'Buy';
      const baseFee = buy ? fee : 0;
      const quoteFee = buy ? 0 : fee;
      const baseFlow = buy ? f.qty : -f.qty;
      const quoteFlow = buy ? -value : value;
      this.addTx({ ...tx, qty: baseFlow, size: 0, currency: inst.baseCoin, fee: baseFee, cashFlow: baseFlow, change: baseFlow - baseFee, cashBalance: acc.coin(inst.baseCoin).wallet });
      this.addTx({ ...tx, qty: quoteFlow, size: 0, currency: inst.quoteCoin, fee: quoteFee, cashFlow: quoteFlow, change: quoteFlow - quoteFee, cashBalance: acc.coin(inst.quoteCoin).wallet });
    }
    this.pending!.orders.add(o);
    this.pending!.wallets.add(o.uid);
    this.publishTrades(inst.category, inst.symbol, [{ price: f.price, qty: f.qty, side: o.side, time: now }]);
  }

  /** Resting orders of a symbol meet the book after a price move. */
  private matchResting(symbol: string): void {
    const now = this.now();
    for (const o of [...this.open]) {
      if (o.symbol !== symbol || !isOpen(o)) continue;
      const inst = this.instruments.get(o.category, o.symbol)!;
      const qtyStep = inst.category === 'spot' ? Number(inst.basePrecision) : Number(inst.qtyStep);
      let maxQty = leavesQty(o);
      if (reducing(o)) {
        const size = this.account(o.uid).findPosition(o.symbol, o.positionIdx)?.size ?? 0;
        const reduces = (o.side === 'Sell' && size > 0) || (o.side === 'Buy' && size < 0);
        if (!reduces) {
          o.cancelType = 'CancelByReduceOnly';
          this.close(o, cancelStatus(o));
          continue;
        }
        maxQty = Math.min(maxQty, Math.abs(size));
      }
      const f = makerFill(this.book(inst), this.consumption(inst)[o.side], o.side, o.price, qtyStep, maxQty);
      if (!f) continue;
      this.applyFill(o, inst, f, true, now);
      if (o.cumExecQty >= o.qty - 1e-12) this.close(o, 'Filled');
      else if (o.orderStatus === 'New') transition(o, 'PartiallyFilled', now);
    }
  }

  amendOrder(uid: string, p: Record<string, unknown>): { orderId: string; orderLinkId: string } {
    this.advance();
    const inst = this.instrumentOf(p.category, p.symbol);
    const o = this.lookupOpen(uid, inst, p);
    const acc = this.account(uid);
    const newQty = p.qty === undefined || p.qty === '' ? o.qty : parseNum(p.qty);
    const newPrice = p.price === undefined || p.price === '' ? o.price : parseNum(p.price);
    if (!(newQty > 0)) throw paramsError('qty invalid');
    if (!(newPrice > 0)) throw paramsError('price invalid');
    if (o.orderType !== 'Limit') throw paramsError('only Limit orders can be amended');
    if (newQty === o.qty && newPrice === o.price) throw paramsError('The order remains unchanged as the parameters entered match the existing ones.');
    if (newQty <= o.cumExecQty + 1e-12) throw new SimError(RetCode.QTY_LE_FILLED, 'The number of contracts modified cannot be less than or equal to the filled quantity');
    const mid = this.mid(inst.symbol);
    if (inst.category === 'spot') {
      const rest = newQty - o.cumExecQty;
      // Validate as a fresh order of the remaining size, against the balance plus what it holds.
      const b = acc.coin(o.lockCoin);
      b.locked -= o.lockAmount;
      try {
        this.validateSpot(acc, inst, o.side, 'Limit', '', newQty, newPrice, mid);
        const need = o.side === 'Buy' ? rest * newPrice : rest;
        if (this.available(uid, o.lockCoin) + 1e-12 < need) throw new SimError(RetCode.SPOT_BALANCE, 'Insufficient balance.');
      } finally {
        b.locked += o.lockAmount;
      }
    } else {
      this.validateLinear(acc, inst, o.side, 'Limit', newQty, newPrice, mid, reducing(o), o.positionIdx);
    }
    const now = this.now();
    this.withPending(() => {
      if (inst.category === 'spot') {
        const b = acc.coin(o.lockCoin);
        b.locked -= o.lockAmount;
        o.lockAmount = o.side === 'Buy' ? (newQty - o.cumExecQty) * newPrice : newQty - o.cumExecQty;
        b.locked += o.lockAmount;
        this.pending!.wallets.add(uid);
      }
      o.qty = newQty;
      o.price = newPrice;
      o.updatedTime = now;
      this.open.delete(o);
      this.pending!.orders.add(o);
      // Re-enter matching as a taker at the new price (New -> New is a valid self-transition).
      this.matchTaker(o, inst);
    });
    return { orderId: o.orderId, orderLinkId: o.orderLinkId };
  }

  private lookupOpen(uid: string, inst: Instrument, p: Record<string, unknown>): SimOrder {
    const orderId = typeof p.orderId === 'string' && p.orderId ? p.orderId : undefined;
    const orderLinkId = typeof p.orderLinkId === 'string' && p.orderLinkId ? p.orderLinkId : undefined;
    if (!orderId && !orderLinkId) throw paramsError('orderId or orderLinkId is required');
    const o = this.findOrder(uid, { orderId, orderLinkId });
    if (!o || o.symbol !== inst.symbol || o.category !== inst.category || !isOpen(o)) {
      throw inst.category === 'spot' ? new SimError(RetCode.SPOT_ORDER_NOT_EXIST, 'Order does not exist.') : new SimError(RetCode.ORDER_NOT_EXIST, 'order not exists or too late to cancel');
    }
    return o;
  }

  cancelOrder(uid: string, p: Record<string, unknown>): { orderId: string; orderLinkId: string } {
    this.advance();
    const inst = this.instrumentOf(p.category, p.symbol);
    const o = this.lookupOpen(uid, inst, p);
    this.withPending(() => this.cancel(o));
    return { orderId: o.orderId, orderLinkId: o.orderLinkId };
  }

  private cancel(o: SimOrder): void {
    if (o.orderStatus === 'Untriggered') {
      this.deactivate(o);
      return;
    }
    o.cancelType = 'CancelByUser';
    this.close(o, cancelStatus(o));
  }

  cancelAll(uid: string, p: Record<string, unknown>): Array<{ orderId: string; orderLinkId: string }> {
    this.advance();
    const category = p.category;
    if (category !== 'spot' && category !== 'linear') throw paramsError(`category ${String(category)} is not supported by the simulator (spot, linear)`);
    const symbol = typeof p.symbol === 'string' && p.symbol ? p.symbol : undefined;
    const baseCoin = typeof p.baseCoin === 'string' && p.baseCoin ? p.baseCoin : undefined;
    const settleCoin = typeof p.settleCoin === 'string' && p.settleCoin ? p.settleCoin : undefined;
    if (category === 'linear' && !symbol && !baseCoin && !settleCoin) throw paramsError('symbol, baseCoin or settleCoin is required for linear');
    if (symbol && !this.instruments.get(category, symbol)) throw paramsError('symbol invalid');
    // Linear cancels every kind of order by default, spot its ordinary ones (orderFilter=Order).
    const filter = typeof p.orderFilter === 'string' && p.orderFilter ? p.orderFilter : category === 'linear' ? 'All' : 'Order';
    const candidates = [...(filter === 'StopOrder' ? [] : this.open), ...(filter === 'Order' ? [] : this.conditional)];
    const victims = candidates.filter((o) => {
      if (o.uid !== uid || o.category !== category) return false;
      const inst = this.instruments.get(o.category, o.symbol)!;
      return (!symbol || o.symbol === symbol) && (!baseCoin || inst.baseCoin === baseCoin) && (!settleCoin || inst.quoteCoin === settleCoin);
    });
    this.withPending(() => victims.forEach((o) => this.cancel(o)));
    return victims.map((o) => ({ orderId: o.orderId, orderLinkId: o.orderLinkId }));
  }

  /**
   * Cancel the open orders `which` selects on the exchange's own initiative (disconnection
   * protection, a delisting), with Bybit's `cancelType` for the cause. Returns them.
   */
  cancelOpenOrders(which: (o: SimOrder) => boolean, cancelType: string): SimOrder[] {
    this.advance();
    const victims = [...this.open].filter((o) => isOpen(o) && which(o));
    this.withPending(() => {
      for (const o of victims) {
        o.cancelType = cancelType;
        this.close(o, cancelStatus(o));
      }
    });
    return victims;
  }

  // ---- events -------------------------------------------------------------------------------

  private withPending(fn: () => void): void {
    if (this.pending) {
      fn();
      return;
    }
    this.pending = { orders: new Set(), executions: [], positions: new Set(), wallets: new Set(), closes: new Map() };
    try {
      fn();
    } finally {
      const p = this.pending;
      this.pending = null;
      this.flush(p);
    }
  }

  private flush(p: Pending): void {
    const creationTime = this.now();
    for (const [o, a] of p.closes) {
      const closedPnl = accClosedPnl(a);
      o.closedPnl += closedPnl;
      this.closedPnls.push({
        uid: o.uid, symbol: o.symbol, orderId: o.orderId, side: o.side, qty: o.qty, orderPrice: o.price, orderType: o.orderType,
        closedSize: a.closedSize, cumEntryValue: a.cumEntryValue, cumExitValue: a.cumExitValue, closedPnl, openFee: a.openFee, closeFee: a.closeFee,
        fillCount: a.fills, leverage: a.leverage, createdTime: a.firstTime, updatedTime: a.lastTime,
      });
    }
    const byUid = <T>(items: Iterable<T>, uidOf: (t: T) => string) => {
      const m = new Map<string, T[]>();
      for (const t of items) {
        const u = uidOf(t);
        m.set(u, [...(m.get(u) ?? []), t]);
      }
      return m;
    };
    for (const [uid, os] of byUid(p.orders, (o) => o.uid)) {
      const data = os.filter((o) => o.orderStatus !== 'Created').map((o) => orderWs(o, this.instruments.get(o.category, o.symbol)!));
      if (data.length) this.emit({ type: 'private', uid, topic: 'order', creationTime, data });
    }
    for (const [uid, es] of byUid(p.executions, (e) => e.uid)) {
      this.emit({ type: 'private', uid, topic: 'execution', creationTime, data: es.map((e) => executionWs(e, this.instruments.get(e.category, e.symbol)!)) });
    }
    for (const [uid, keys] of byUid(p.positions, (k) => k.split('\u0000')[0]!)) {
      const acc = this.account(uid);
      const data = keys.flatMap((k) => {
        const pos = acc.positions.get(k.split('\u0000')[1]!);
        if (!pos) return [];
        const inst = this.instruments.get('linear', pos.symbol) as LinearInstrument;
        return [positionWs(pos, inst, this.positionFigures(pos, inst, uid))];
      });
      this.emit({ type: 'private', uid, topic: 'position', creationTime, data });
    }
    for (const uid of p.wallets) {
      this.emit({ type: 'private', uid, topic: 'wallet', creationTime, data: [walletItem(this.wallet(uid))] });
    }
  }

  private publishTrades(category: Category, symbol: string, prints: Array<{ price: number; qty: number; side: Side; time: number }>): void {
    const inst = this.instruments.get(category, symbol);
    if (!inst) return;
    const trades: PublicTrade[] = prints.map((t) => {
      const last = this.lastTrade.get(symbol);
      const dir = !last ? 'ZeroPlusTick' : t.price > last.price ? 'PlusTick' : t.price < last.price ? 'MinusTick' : last.dir.includes('Minus') ? 'ZeroMinusTick' : 'ZeroPlusTick';
      this.lastTrade.set(symbol, { price: t.price, dir });
      const qd = inst.category === 'spot' ? inst.basePrecision : inst.qtyStep;
      return {
        T: t.time,
        s: symbol,
        S: t.side,
        v: toStep(t.qty, Number(qd)).toFixed(decimals(qd)),
        p: t.price.toFixed(decimals(inst.tickSize)),
        L: dir,
        i: this.tradeIds.uuid(),
        BT: false,
      };
    });
    this.emit({ type: 'trades', category, symbol, trades });
  }
}

/** Reduce-only, or in hedge mode against its position's side: it can only close. */
const reducing = (o: SimOrder): boolean => o.reduceOnly || closesOnly(o.positionIdx, o.side);

/** Cancelled, or for a spot order with fills PartiallyFilledCanceled (linear has no such status). */
function cancelStatus(o: SimOrder): OrderStatus {
  return o.category === 'spot' && o.cumExecQty > 0 ? 'PartiallyFilledCanceled' : 'Cancelled';
}

function decimals(step: string): number {
  const i = step.indexOf('.');
  return i < 0 ? 0 : step.length - i - 1;
}
