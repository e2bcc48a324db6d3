// The simulator's state file: the paper account (balances, positions, every order and execution)
// and the market position (price process, book consumption), so a restarted simulator continues
// the same account as a real exchange would.
//
// Two files, so a write costs what changed, not the whole history:
//  - `state-<port>.json`, the snapshot: accounts, orders still open, the market, counters, and how
//    many bytes of the history file belong to it. Written to a temporary file in the same
//    directory, fsynced, renamed over the old one (atomic), directory fsynced: a kill -9 at any
//    moment leaves the previous or the new snapshot, never a torn one.
//  - `state-<port>.history.jsonl`, append-only: one line per accepted order ({"o":...}), its final
//    version once it closes if it was logged open ({"f":...}), one per execution ({"e":...}), one
//    per transaction-log entry ({"t":...}) and one per closed P&L record ({"c":...}), after a header
//    line naming the account. Appended and fdatasynced before the snapshot that
//    counts it is renamed into place; whatever lies beyond the snapshot's byte count (a write cut
//    short by a kill) is ignored and cut off at the next start.
// Writes are coalesced: an account change is on disk within `delayMs`, a market-only change (price
// steps) within `marketDelayMs`, and a write never starts sooner after the previous one than ten
// times the main-thread time its snapshot JSON took. Close and process exit write the last state
// synchronously.
//
// An unreadable state is never replaced by a fresh account on a guess: loading refuses with the
// path, the reason, and how to start fresh on purpose.
//
// Versions: 2 added position modes, margin mode, TP/SL (conditional orders), the transaction log
// and closed P&L records, and `ext` (the instrument listing, DCP windows, funding rates settled)
// with the price series' own random streams. A version-1 state loads: what it lacks takes the
// value a version-1 simulator behaved as (one-way mode, regular margin, no conditional orders,
// empty logs, the configured listing, no DCP window, no funding history yet), the snapshot then
// records how many history lines predate version 2 (only those get the defaults), and it is
// written back as version 2.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { z } from 'zod';
import { FatalError } from '../runtime/errors.ts';
import type { AccountState, CoinBalance, Position } from './accounts.ts';
import type { ClosedPnlRecord } from './closed-pnl.ts';
import type { DcpState } from './dcp.ts';
import type { ExchangeState, IdKey } from './exchange.ts';
import type { Instrument } from './instruments.ts';
import { parseInstrument } from './listing.ts';
import type { MarketHistoryState } from './market-history.ts';
import { isOpen, PLAIN_ORDER, type SimOrder } from './orders.ts';
import type { PriceState } from './price-process.ts';
import type { RngState } from './rng.ts';
import type { TxLogEntry } from './transaction-log.ts';
import type { Execution } from './views.ts';

export const STATE_FORMAT = 'bybit-sim-state';
export const STATE_VERSION = 2;
/** Older versions this simulator upgrades on load. */
const UPGRADABLE = [1];

/** What the simulator keeps beside the exchange core (version 2). */
export interface ExtState {
  /** Every instrument listed, with its status (sim/listing.ts). */
  instruments: Instrument[];
  dcp: DcpState;
  market: MarketHistoryState;
}

/** How to start fresh on purpose, for error messages. */
export const FRESH_HINT = 'npm start -- --fresh-account, npm run sim -- --fresh-account, or startSimulator({ fresh: true }) (the old files are kept as state-<port>.bak.json and .bak.history.jsonl)';

/** `<stackDir>/sim/state-<port>.json`: one paper account per simulator port. */
export function defaultStateFile(stackDir: string, port: number): string {
  return join(stackDir, 'sim', `state-${port}.json`);
}

/** The append-only history beside a state file. */
export function historyFileOf(file: string): string {
  return `${file.replace(/\.json$/, '')}.history.jsonl`;
}

/** A new instance nonce: 16 random bytes, hex. */
export function newInstanceNonce(): string {
  return randomBytes(16).toString('hex');
}

/** The id-stream key of a nonce (any string; hashed so every nonce uses all 128 bits). */
export function idKey(nonce: string): IdKey {
  const h = createHash('sha256').update(nonce).digest();
  return [h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)];
}

/** Who the account is, independent of what it holds. */
export interface StateMeta {
  /** Random id of the account, also in the history file's header (the two must belong together). */
  accountId: string;
  /** Exchange time the account was opened. */
  createdAt: number;
  seed: number;
  /** Every start of the simulator on this account: its instance nonce and exchange time. */
  instances: Array<{ nonce: string; startedAt: number }>;
}

/** The snapshot file. */
export interface SavedState extends StateMeta {
  format: typeof STATE_FORMAT;
  version: 1 | 2;
  /** Exchange time of this snapshot. */
  savedAt: number;
  /** The prefix of the history file that belongs to this snapshot. */
  history: { bytes: number; lines: number };
  /** Set once a version-1 state was upgraded: its first `lines` history lines are version-1 lines. */
  upgradedFrom?: { version: number; lines: number };
  counts: { orders: number; openOrders: number; executions: number; transactionLog: number; closedPnl: number };
  exchange: Omit<ExchangeState, 'orders' | 'executions' | 'transactionLog' | 'closedPnl'> & {
    /** Current versions of the orders whose last history line is not final (open ones). */
    liveOrders: SimOrder[];
  };
  /** Version 2. */
  ext?: ExtState;
}

/** A state read back: the exchange's whole state and where the history file ends. */
export interface LoadedState extends StateMeta {
  file: string;
  history: { bytes: number; lines: number };
  upgradedFrom?: { version: number; lines: number };
  exchange: ExchangeState;
  /** Absent in a version 1 file. */
  ext?: ExtState;
}

// ---- schema (typed against the classes' own state types, so the two cannot drift apart) ----------

const num = z.number();
const side = z.enum(['Buy', 'Sell']);
const category = z.enum(['spot', 'linear']);
const rngState: z.ZodType<RngState> = z.object({ a: num, b: num, c: num, d: num, spare: num.nullable() });
const coinBalance: z.ZodType<CoinBalance> = z.object({ wallet: num, locked: num, cumRealisedPnl: num });
const positionIdx = z.union([z.literal(0), z.literal(1), z.literal(2)]);
const positionMode = z.union([z.literal(0), z.literal(3)]);
const position: z.ZodType<Position> = z.object({
  symbol: z.string(), positionIdx, size: num, avgPrice: num, leverage: num, cumRealisedPnl: num, curRealisedPnl: num, createdTime: num, updatedTime: num, seq: num,
  openFee: num, fundingCost: num,
});
const accountState: z.ZodType<AccountState> = z.object({
  uid: z.string(), coins: z.record(coinBalance), positions: z.array(position), leverage: z.record(num),
  positionMode: z.record(positionMode), coinPositionMode: z.record(positionMode), marginMode: z.enum(['REGULAR_MARGIN', 'ISOLATED_MARGIN', 'PORTFOLIO_MARGIN']), updatedTime: num,
});
const stopOrderType = z.enum(['', 'TakeProfit', 'StopLoss', 'TrailingStop', 'PartialTakeProfit', 'PartialStopLoss']);
const order: z.ZodType<SimOrder> = z.object({
  orderId: z.string().min(1), orderLinkId: z.string(), uid: z.string(), category, symbol: z.string(), side, orderType: z.enum(['Market', 'Limit']),
  price: num, qty: num, marketUnit: z.enum(['', 'baseCoin', 'quoteCoin']), timeInForce: z.enum(['GTC', 'IOC', 'FOK', 'PostOnly']),
  reduceOnly: z.boolean(), closeOnTrigger: z.boolean(),
  orderStatus: z.enum(['Created', 'New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Untriggered', 'Triggered', 'Deactivated']),
  cancelType: z.string(), rejectReason: z.string(), cumExecQty: num, cumExecValue: num, cumExecFee: num, closedPnl: num, feeCurrency: z.string(),
  createdTime: num, updatedTime: num, lastPriceOnCreated: num, source: z.enum(['rest', 'direct']), lockCoin: z.string(), lockAmount: num,
  positionIdx, stopOrderType, triggerPrice: num, triggerBy: z.enum(['', 'LastPrice', 'MarkPrice', 'IndexPrice']),
  triggerDirection: z.union([z.literal(0), z.literal(1), z.literal(2)]), tpslMode: z.enum(['', 'Full', 'Partial']),
  trailingStop: num, activePrice: num, trailExtreme: num, closeWholePosition: z.boolean(),
});
// execType: a state file written before funding executions holds trades only (no execType).
const execution: z.ZodType<Execution, z.ZodTypeDef, unknown> = z.object({
  execId: z.string().min(1), execType: z.enum(['Trade', 'Funding']).default('Trade'), uid: z.string(), category, symbol: z.string(), orderId: z.string(), orderLinkId: z.string(), side,
  orderPrice: num, orderQty: num, leavesQty: num, orderType: z.enum(['Market', 'Limit', 'UNKNOWN']), execPrice: num, execQty: num, execValue: num,
  execFee: num, feeRate: num, feeCurrency: z.string(), isMaker: z.boolean(), execTime: num, markPrice: num, closedSize: num, seq: num,
  stopOrderType,
});
const txLogEntry: z.ZodType<TxLogEntry> = z.object({
  id: z.string().min(1), uid: z.string(), category: z.enum(['', 'spot', 'linear']), symbol: z.string(), side: z.enum(['Buy', 'Sell', 'None']),
  transactionTime: num, type: z.enum(['TRADE', 'SETTLEMENT', 'TRANSFER_IN', 'TRANSFER_OUT']), qty: num, size: num, currency: z.string(),
  tradePrice: num, funding: num.nullable(), fee: num, cashFlow: num, change: num, cashBalance: num, feeRate: num,
  tradeId: z.string(), orderId: z.string(), orderLinkId: z.string(),
});
const closedPnlRecord: z.ZodType<ClosedPnlRecord> = z.object({
  uid: z.string(), symbol: z.string(), orderId: z.string(), side, qty: num, orderPrice: num, orderType: z.enum(['Market', 'Limit']),
  closedSize: num, cumEntryValue: num, cumExitValue: num, closedPnl: num, openFee: num, closeFee: num, fillCount: num, leverage: num,
  createdTime: num, updatedTime: num,
});
const priceState: z.ZodType<PriceState> = z.object({
  steps: z.number().int().min(0),
  time: num,
  rng: rngState,
  series: z.array(z.object({ symbol: z.string(), initialPrice: num, mid: num.positive(), lastReturn: num, candles: z.array(z.array(num).length(7)), rng: rngState.optional() })),
});
const instrumentJson = z.unknown().transform((x, ctx): Instrument => {
  try {
    return parseInstrument(x);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
    return z.NEVER;
  }
});
const extState: z.ZodType<ExtState, z.ZodTypeDef, unknown> = z.object({
  instruments: z.array(instrumentJson),
  dcp: z.object({ settings: z.array(z.object({ uid: z.string(), product: z.enum(['OPTIONS', 'DERIVATIVES', 'SPOT']), timeWindow: z.number().int().min(3).max(300) })) }),
  market: z.object({ funding: z.array(z.object({ symbol: z.string(), list: z.array(z.tuple([num, num])) })) }),
});
const pairs = z.array(z.tuple([num, num]));
const count = z.number().int().min(0);
const savedState: z.ZodType<SavedState, z.ZodTypeDef, unknown> = z.object({
  format: z.literal(STATE_FORMAT),
  version: z.union([z.literal(1), z.literal(2)]),
  accountId: z.string().min(1),
  createdAt: num,
  savedAt: num,
  seed: num,
  instances: z.array(z.object({ nonce: z.string(), startedAt: num })),
  history: z.object({ bytes: count, lines: count }),
  upgradedFrom: z.object({ version: num, lines: count }).optional(),
  counts: z.object({ orders: count, openOrders: count, executions: count, transactionLog: count, closedPnl: count }),
  exchange: z.object({
    accounts: z.array(accountState),
    seq: num,
    lastTrade: z.record(z.object({ price: num, dir: z.string() })),
    consumed: z.array(z.object({ key: z.string(), step: num, buy: pairs, sell: pairs })),
    prices: priceState,
    liveOrders: z.array(order),
  }),
  ext: extState.optional(),
});
const header = z.object({ h: z.object({ format: z.literal(STATE_FORMAT), accountId: z.string() }) });
// One schema per kind of line, chosen by its key (a union would try each in turn, and history
// files are long).
const historyLine = {
  o: z.object({ o: order }).strict(),
  f: z.object({ f: order }).strict(),
  e: z.object({ e: execution }).strict(),
  t: z.object({ t: txLogEntry }).strict(),
  c: z.object({ c: closedPnlRecord }).strict(),
} as const;
type HistoryLine = { o: SimOrder } | { f: SimOrder } | { e: Execution } | { t: TxLogEntry } | { c: ClosedPnlRecord };
const LINE_KINDS = new Set(Object.keys(historyLine));

// ---- version 1 -> 2 ---------------------------------------------------------------------------

type Json = Record<string, unknown>;
const upgradeOrder = (o: unknown): unknown => (o && typeof o === 'object' ? { ...PLAIN_ORDER, ...o } : o);

/** A version-1 snapshot as version 2 (before validation; a malformed one still fails there). */
function upgradeSnapshot(json: Json): Json {
  const ex = (json.exchange ?? {}) as Json;
  const accounts = Array.isArray(ex.accounts) ? ex.accounts : [];
  const counts = (json.counts ?? {}) as Json;
  const history = (json.history ?? {}) as Json;
  return {
    ...json,
    version: STATE_VERSION,
    upgradedFrom: { version: json.version, lines: history.lines },
    counts: { ...counts, transactionLog: 0, closedPnl: 0 },
    exchange: {
      ...ex,
      accounts: accounts.map((a: Json) => ({
        positionMode: {}, coinPositionMode: {}, marginMode: 'REGULAR_MARGIN', updatedTime: 0,
        ...a,
        positions: Array.isArray(a.positions) ? a.positions.map((p: Json) => ({ positionIdx: 0, openFee: 0, fundingCost: 0, ...p })) : a.positions,
      })),
      liveOrders: Array.isArray(ex.liveOrders) ? ex.liveOrders.map(upgradeOrder) : ex.liveOrders,
    },
  };
}

/** A version-1 history line as version 2. */
function upgradeLine(json: Json): Json {
  if ('o' in json) return { o: upgradeOrder(json.o) };
  if ('f' in json) return { f: upgradeOrder(json.f) };
  if ('e' in json && json.e && typeof json.e === 'object') return { e: { stopOrderType: '', ...json.e } };
  return json;
}

function unusable(file: string, reason: string): FatalError {
  return new FatalError('sim_state_unreadable', `simulator state file ${file} cannot be used: ${reason}. The simulator does not replace an account it cannot read; to start a fresh paper account on purpose: ${FRESH_HINT}`);
}

function readSnapshot(file: string): SavedState | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unusable(file, `cannot read it (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw unusable(file, `not JSON (${(e as Error).message})`);
  }
  const head = json as { format?: unknown; version?: unknown } | null;
  if (head?.format !== STATE_FORMAT) throw unusable(file, `not a simulator state file (format ${JSON.stringify(head?.format)}, expected "${STATE_FORMAT}")`);
  if (head.version !== STATE_VERSION && !UPGRADABLE.includes(head.version as number)) {
    throw unusable(file, `state version ${JSON.stringify(head.version)}, this simulator reads versions ${[...UPGRADABLE, STATE_VERSION].join(', ')}`);
  }
  const r = savedState.safeParse(head.version === STATE_VERSION ? json : upgradeSnapshot(json as Json));
  if (!r.success) throw unusable(file, `invalid content: ${r.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** References the state must keep (an order of an unknown account could never be served). */
function consistencyProblem(s: ExchangeState): string | undefined {
  const uids = new Set(s.accounts.map((a) => a.uid));
  const ids = new Set<string>();
  for (const o of s.orders) {
    if (!uids.has(o.uid)) return `order ${o.orderId} belongs to uid ${o.uid}, which has no account`;
    if (ids.has(o.orderId)) return `orderId ${o.orderId} appears twice`;
    ids.add(o.orderId);
  }
  // A funding execution belongs to no order (its orderId is the settlement's id).
  for (const e of s.executions) if (e.execType !== 'Funding' && !ids.has(e.orderId)) return `execution ${e.execId} refers to unknown order ${e.orderId}`;
  return undefined;
}

/** The account in `file` (and its history file), or undefined when there is none. Anything unreadable throws (FatalError). */
export function loadState(file: string): LoadedState | undefined {
  const snap = readSnapshot(file);
  if (!snap) return undefined;
  const hfile = historyFileOf(file);
  let raw: Buffer;
  try {
    raw = readFileSync(hfile);
  } catch (e) {
    throw unusable(file, `its history file ${hfile} cannot be read (${(e as Error).message})`);
  }
  if (raw.length < snap.history.bytes) throw unusable(file, `its history file ${hfile} holds ${raw.length} bytes, the snapshot counts ${snap.history.bytes}`);
  const lines = raw.subarray(0, snap.history.bytes).toString('utf8').split('\n');
  if (lines.pop() !== '' || lines.length !== snap.history.lines) throw unusable(file, `its history file ${hfile} does not end where the snapshot says (${snap.history.lines} lines in ${snap.history.bytes} bytes)`);
  const parse = (i: number) => {
    try {
      return JSON.parse(lines[i]!) as unknown;
    } catch (e) {
      throw unusable(file, `line ${i + 1} of ${hfile} is not JSON (${(e as Error).message})`);
    }
  };
  const h = header.safeParse(parse(0));
  if (!h.success || h.data.h.accountId !== snap.accountId) throw unusable(file, `${hfile} is not the history of this account (${snap.accountId})`);
  const orders: SimOrder[] = [];
  const at = new Map<string, number>();
  const executions: Execution[] = [];
  const transactionLog: TxLogEntry[] = [];
  const closedPnl: ClosedPnlRecord[] = [];
  const v1Lines = snap.upgradedFrom?.lines ?? 0;
  for (let i = 1; i < lines.length; i++) {
    const raw = parse(i);
    const kind = raw && typeof raw === 'object' ? Object.keys(raw)[0] : undefined;
    if (!kind || !LINE_KINDS.has(kind)) throw unusable(file, `line ${i + 1} of ${hfile} is neither an order, an execution, a transaction-log entry nor a closed P&L record`);
    const json = i < v1Lines ? upgradeLine(raw as Json) : raw;
    const r = historyLine[kind as keyof typeof historyLine].safeParse(json);
    if (!r.success) throw unusable(file, `line ${i + 1} of ${hfile}: ${r.error.issues.slice(0, 3).map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
    const l = r.data as HistoryLine;
    if ('o' in l) {
      at.set(l.o.orderId, orders.length);
      orders.push(l.o);
    } else if ('f' in l) {
      const k = at.get(l.f.orderId);
      if (k === undefined) throw unusable(file, `line ${i + 1} of ${hfile} closes order ${l.f.orderId}, which it never opened`);
      orders[k] = l.f;
    } else if ('e' in l) executions.push(l.e);
    else if ('t' in l) transactionLog.push(l.t);
    else closedPnl.push(l.c);
  }
  for (const o of snap.exchange.liveOrders) {
    const k = at.get(o.orderId);
    if (k === undefined) throw unusable(file, `live order ${o.orderId} is not in ${hfile}`);
    orders[k] = o;
  }
  const { liveOrders: _live, ...market } = snap.exchange;
  const exchange: ExchangeState = { ...market, orders, executions, transactionLog, closedPnl };
  const problem = consistencyProblem(exchange);
  if (problem) throw unusable(file, `inconsistent content: ${problem}`);
  if (orders.length !== snap.counts.orders || executions.length !== snap.counts.executions) {
    throw unusable(file, `the history holds ${orders.length} orders and ${executions.length} executions, the snapshot counts ${snap.counts.orders} and ${snap.counts.executions}`);
  }
  if (transactionLog.length !== snap.counts.transactionLog || closedPnl.length !== snap.counts.closedPnl) {
    throw unusable(file, `the history holds ${transactionLog.length} transaction-log entries and ${closedPnl.length} closed P&L records, the snapshot counts ${snap.counts.transactionLog} and ${snap.counts.closedPnl}`);
  }
  return { file, accountId: snap.accountId, createdAt: snap.createdAt, seed: snap.seed, instances: snap.instances, history: snap.history, upgradedFrom: snap.upgradedFrom, exchange, ext: snap.ext };
}

export interface StateSummary {
  file: string;
  accountId: string;
  createdAt: number;
  savedAt: number;
  uids: string[];
  orders: number;
  openOrders: number;
  executions: number;
  starts: number;
}

/** What `stack:status` shows, from the snapshot alone (the history is not read). */
export function readStateSummary(file: string): StateSummary | undefined {
  const s = readSnapshot(file);
  if (!s) return undefined;
  return { file, accountId: s.accountId, createdAt: s.createdAt, savedAt: s.savedAt, uids: s.exchange.accounts.map((a) => a.uid), ...s.counts, starts: s.instances.length };
}

/** Where setAside() keeps an account: `state-<port>.bak.json` (and its history), loadable as is. */
export function backupFileOf(file: string): string {
  return /\.json$/.test(file) ? file.replace(/\.json$/, '.bak.json') : `${file}.bak`;
}

/** A fresh account on purpose: the old files (if any) become the backup (one generation). Returns what was kept. */
export function setAside(file: string): string[] {
  const bak = backupFileOf(file);
  const kept: string[] = [];
  for (const [from, to] of [[file, bak], [historyFileOf(file), historyFileOf(bak)]] as const) {
    if (!existsSync(from)) continue;
    renameSync(from, to);
    kept.push(to);
  }
  if (kept.length) fsyncDirSync(dirname(file));
  return kept;
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeAllSync(fd: number, text: string): number {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
  return buf.length;
}

/** Temporary files a killed writer may have left beside `file`. */
function strayTemps(file: string): string[] {
  const prefix = `${basename(file)}.tmp-`;
  try {
    return readdirSync(dirname(file)).filter((n) => n.startsWith(prefix)).map((n) => join(dirname(file), n));
  } catch {
    return [];
  }
}

export interface StateWriterStats {
  writes: number;
  failures: number;
  /** Size of the last snapshot written, bytes. */
  snapshotBytes: number;
  /** Size of the history file, bytes. */
  historyBytes: number;
  /** Main-thread time of the last write (snapshot, JSON, history append), ms. */
  lastSerializeMs: number;
  /** Wall time of the last write until the snapshot was renamed into place, ms. */
  lastWriteMs: number;
  /** Main-thread time of every write so far, ms. */
  totalSerializeMs: number;
}

export interface StateWriterOptions {
  file: string;
  meta: StateMeta;
  /** The exchange's state, read at once. */
  exchange: () => ExchangeState;
  /** The rest of the simulator's state (version 2). */
  ext?: () => ExtState;
  /** Exchange time, for savedAt. */
  now: () => number;
  /** The state this writer continues (loadState()); unset: a new account. */
  resume?: LoadedState;
  /** An account change is on disk within this, ms. Default 200. */
  delayMs?: number;
  /** A market-only change (price steps) is on disk within this, ms. Default 30000. */
  marketDelayMs?: number;
  logger?: Logger;
}

/** Coalescing, crash-safe writer of one account's snapshot and history files. */
export class StateWriter {
  readonly stats: StateWriterStats = { writes: 0, failures: 0, snapshotBytes: 0, historyBytes: 0, lastSerializeMs: 0, lastWriteMs: 0, totalSerializeMs: 0 };
  private readonly delayMs: number;
  private readonly marketDelayMs: number;
  private readonly historyFd: number;
  /** History appended so far: orders and executions logged, and orders logged while open. */
  private loggedOrders = 0;
  private loggedExecs = 0;
  private loggedTx = 0;
  private loggedClosed = 0;
  private historyLines = 0;
  private readonly upgradedFrom?: { version: number; lines: number };
  private readonly live = new Set<SimOrder>();
  private dirty = true;
  /** The write in flight, if any. */
  private writing?: Promise<void>;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
  /** Generation of the last snapshot taken, and of the last one renamed into place. */
  private gen = 0;
  private landed = 0;
  private lastEnd = 0;
  /** Main-thread time of the last snapshot JSON alone (what every write repeats). */
  private lastSnapshotMs = 0;
  private tmpSeq = 0;

  constructor(private readonly opts: StateWriterOptions) {
    this.delayMs = opts.delayMs ?? 200;
    this.marketDelayMs = opts.marketDelayMs ?? 30_000;
    const dir = dirname(opts.file);
    mkdirSync(dir, { recursive: true });
    for (const t of strayTemps(opts.file)) rmSync(t, { force: true });
    const hfile = historyFileOf(opts.file);
    const r = opts.resume;
    if (r) {
      // Lines past the snapshot's count come from a write that never completed: cut them off.
      truncateSync(hfile, r.history.bytes);
      this.historyFd = openSync(hfile, 'a');
      this.stats.historyBytes = r.history.bytes;
      this.historyLines = r.history.lines;
      this.loggedOrders = r.exchange.orders.length;
      this.loggedExecs = r.exchange.executions.length;
      this.loggedTx = r.exchange.transactionLog.length;
      this.loggedClosed = r.exchange.closedPnl.length;
      this.upgradedFrom = r.upgradedFrom;
      for (const o of r.exchange.orders) if (isOpen(o)) this.live.add(o);
    } else {
      setAside(opts.file); // a history without its snapshot is kept, not appended to
      this.historyFd = openSync(hfile, 'a');
      this.stats.historyBytes = writeAllSync(this.historyFd, `${JSON.stringify({ h: { format: STATE_FORMAT, accountId: opts.meta.accountId } })}\n`);
      this.historyLines = 1;
      fdatasyncSync(this.historyFd);
      fsyncDirSync(dir);
    }
  }

  /** Something changed; `account`: an account change (short delay), else market only. */
  changed(account: boolean): void {
    this.dirty = true;
    if (this.stopped) return;
    this.schedule(account ? this.delayMs : this.marketDelayMs);
  }

  private schedule(delay: number): void {
    // What every write repeats is the snapshot's JSON (the history part is proportional to what
    // changed, and the disk part runs off the event loop): keep that under a tenth of the loop.
    const earliest = this.lastEnd + 10 * this.lastSnapshotMs;
    const at = Math.max(performance.now() + delay, earliest);
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      if (!this.writing && this.dirty && !this.stopped) this.writing = this.writeAsync().finally(() => this.afterWrite());
    }, Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  /**
   * Append the history since the last write (synchronously: appends never interleave) and return
   * the snapshot that counts it.
   */
  private prepare(): { text: string; gen: number } {
    const t0 = performance.now();
    const ex = this.opts.exchange();
    const lines: string[] = [];
    const closed = [...this.live].filter((o) => !isOpen(o));
    for (const o of closed) lines.push(JSON.stringify({ f: o }));
    const opened: SimOrder[] = [];
    for (const o of ex.orders.slice(this.loggedOrders)) {
      lines.push(JSON.stringify({ o }));
      if (isOpen(o)) opened.push(o);
    }
    for (const e of ex.executions.slice(this.loggedExecs)) lines.push(JSON.stringify({ e }));
    for (const t of ex.transactionLog.slice(this.loggedTx)) lines.push(JSON.stringify({ t }));
    for (const c of ex.closedPnl.slice(this.loggedClosed)) lines.push(JSON.stringify({ c }));
    if (lines.length) {
      try {
        this.stats.historyBytes += writeAllSync(this.historyFd, `${lines.join('\n')}\n`);
      } catch (err) {
        // A partial append must not stay in front of the next one.
        ftruncateSync(this.historyFd, this.stats.historyBytes);
        throw err;
      }
      this.historyLines += lines.length;
      this.loggedOrders = ex.orders.length;
      this.loggedExecs = ex.executions.length;
      this.loggedTx = ex.transactionLog.length;
      this.loggedClosed = ex.closedPnl.length;
      for (const o of closed) this.live.delete(o);
      for (const o of opened) this.live.add(o);
    }
    const tSnap = performance.now();
    const { orders: _o, executions: _e, transactionLog: _t, closedPnl: _c, ...market } = ex;
    const snap: SavedState = {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      ...this.opts.meta,
      savedAt: this.opts.now(),
      history: { bytes: this.stats.historyBytes, lines: this.historyLines },
      ...(this.upgradedFrom ? { upgradedFrom: this.upgradedFrom } : {}),
      counts: { orders: ex.orders.length, openOrders: this.live.size, executions: ex.executions.length, transactionLog: ex.transactionLog.length, closedPnl: ex.closedPnl.length },
      exchange: { ...market, liveOrders: [...this.live] },
      ...(this.opts.ext ? { ext: this.opts.ext() } : {}),
    };
    const text = JSON.stringify(snap);
    this.lastSnapshotMs = performance.now() - tSnap;
    const ms = performance.now() - t0;
    this.stats.lastSerializeMs = ms;
    this.stats.totalSerializeMs += ms;
    this.dirty = false;
    return { text, gen: ++this.gen };
  }

  private tmpName(): string {
    return `${this.opts.file}.tmp-${process.pid}-${++this.tmpSeq}`;
  }

  private landedAt(gen: number, bytes: number, t0: number): void {
    this.landed = gen;
    this.stats.writes++;
    this.stats.snapshotBytes = bytes;
    this.stats.lastWriteMs = performance.now() - t0;
    this.lastEnd = performance.now();
  }

  private afterWrite(): void {
    this.writing = undefined;
    if (this.dirty && !this.stopped) this.schedule(this.delayMs);
  }

  private async writeAsync(): Promise<void> {
    const t0 = performance.now();
    const tmp = this.tmpName();
    try {
      const { text, gen } = this.prepare();
      await promisify(fdatasync)(this.historyFd);
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      // Checked and renamed in one turn: a synchronous flush in between cannot be overtaken.
      if (gen < this.landed) {
        await rm(tmp, { force: true });
        return;
      }
      renameSync(tmp, this.opts.file);
      this.landedAt(gen, Buffer.byteLength(text), t0);
      const dir = await open(dirname(this.opts.file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      this.stats.failures++;
      this.dirty = true;
      this.opts.logger?.error({ err, file: this.opts.file }, 'simulator state not saved; retrying');
      await rm(tmp, { force: true }).catch(() => {});
    }
  }

  /** Write the current state now, synchronously, unless what is on disk is already current. */
  flushSync(): void {
    if (!this.dirty && this.landed === this.gen) return;
    const t0 = performance.now();
    const tmp = this.tmpName();
    try {
      const { text, gen } = this.prepare();
      fdatasyncSync(this.historyFd);
      const fd = openSync(tmp, 'w');
      try {
        writeAllSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.opts.file);
      this.landedAt(gen, Buffer.byteLength(text), t0);
    } catch (err) {
      this.dirty = true;
      rmSync(tmp, { force: true });
      throw err;
    }
    fsyncDirSync(dirname(this.opts.file));
  }

  /** No more scheduled writes (flushSync still works). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Let a write in flight finish, write the last state, close the history file. */
  async close(): Promise<void> {
    this.stop();
    await this.writing;
    this.flushSync();
    closeSync(this.historyFd);
  }
}

/** A new account's identity. */
export function newAccountId(): string {
  return randomBytes(8).toString('hex');
}
