// The simulator's state file: the paper account (balances, positions, every order and execution)
// and the market position (price process, book consumption), so a restarted simulator continues
// the same account as a real exchange would.
//
// Written safely: the JSON goes to a temporary file in the same directory, is fsynced, renamed over
// the state file (atomic) and the directory is fsynced, so a kill -9 at any moment leaves either
// the previous or the new state, never a torn file. Writes are coalesced: an account change is on
// disk within `delayMs`, a market-only change (price steps) within `marketDelayMs`, and a write
// never starts sooner after the previous one than ten times the main-thread time that one took
// (snapshot + JSON), so the writer keeps under about a tenth of the event loop however large the
// account grows. Close and process exit write the last state synchronously.
//
// An unreadable file is never replaced by a fresh account on a guess: loading refuses with the
// path, the reason, and how to start fresh on purpose.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { FatalError } from '../runtime/errors.ts';
import type { AccountState, CoinBalance, Position } from './accounts.ts';
import type { ExchangeState, IdKey } from './exchange.ts';
import type { SimOrder } from './orders.ts';
import type { PriceState } from './price-process.ts';
import type { RngState } from './rng.ts';
import type { Execution } from './views.ts';

export const STATE_FORMAT = 'bybit-sim-state';
export const STATE_VERSION = 1;

/** How to start fresh on purpose, for error messages. */
export const FRESH_HINT = 'npm start -- --fresh-account, npm run sim -- --fresh-account, or startSimulator({ fresh: true }) (the old file is kept as <file>.bak)';

/** `<stackDir>/sim/state-<port>.json`: one paper account per simulator port. */
export function defaultStateFile(stackDir: string, port: number): string {
  return join(stackDir, 'sim', `state-${port}.json`);
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

export interface SimStateFile {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  /** Exchange time the account was opened. */
  createdAt: number;
  /** Exchange time of this snapshot. */
  savedAt: number;
  seed: number;
  /** Every start of the simulator on this account: its instance nonce and exchange time. */
  instances: Array<{ nonce: string; startedAt: number }>;
  exchange: ExchangeState;
}

// ---- schema (typed against the classes' own state types, so the two cannot drift apart) ----------

const num = z.number();
const side = z.enum(['Buy', 'Sell']);
const category = z.enum(['spot', 'linear']);
const rngState: z.ZodType<RngState> = z.object({ a: num, b: num, c: num, d: num, spare: num.nullable() });
const coinBalance: z.ZodType<CoinBalance> = z.object({ wallet: num, locked: num, cumRealisedPnl: num });
const position: z.ZodType<Position> = z.object({
  symbol: z.string(), size: num, avgPrice: num, leverage: num, cumRealisedPnl: num, curRealisedPnl: num, createdTime: num, updatedTime: num, seq: num,
});
const accountState: z.ZodType<AccountState> = z.object({ uid: z.string(), coins: z.record(coinBalance), positions: z.array(position), leverage: z.record(num) });
const order: z.ZodType<SimOrder> = z.object({
  orderId: z.string().min(1), orderLinkId: z.string(), uid: z.string(), category, symbol: z.string(), side, orderType: z.enum(['Market', 'Limit']),
  price: num, qty: num, marketUnit: z.enum(['', 'baseCoin', 'quoteCoin']), timeInForce: z.enum(['GTC', 'IOC', 'FOK', 'PostOnly']),
  reduceOnly: z.boolean(), closeOnTrigger: z.boolean(),
  orderStatus: z.enum(['Created', 'New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected']),
  cancelType: z.string(), rejectReason: z.string(), cumExecQty: num, cumExecValue: num, cumExecFee: num, closedPnl: num, feeCurrency: z.string(),
  createdTime: num, updatedTime: num, lastPriceOnCreated: num, source: z.enum(['rest', 'direct']), lockCoin: z.string(), lockAmount: num,
});
const execution: z.ZodType<Execution> = z.object({
  execId: z.string().min(1), uid: z.string(), category, symbol: z.string(), orderId: z.string(), orderLinkId: z.string(), side,
  orderPrice: num, orderQty: num, leavesQty: num, orderType: z.enum(['Market', 'Limit']), execPrice: num, execQty: num, execValue: num,
  execFee: num, feeRate: num, feeCurrency: z.string(), isMaker: z.boolean(), execTime: num, markPrice: num, closedSize: num, seq: num,
});
const priceState: z.ZodType<PriceState> = z.object({
  steps: z.number().int().min(0),
  time: num,
  rng: rngState,
  series: z.array(z.object({ symbol: z.string(), initialPrice: num, mid: num.positive(), lastReturn: num, candles: z.array(z.array(num).length(7)) })),
});
const pairs = z.array(z.tuple([num, num]));
const exchangeState: z.ZodType<ExchangeState> = z.object({
  accounts: z.array(accountState),
  orders: z.array(order),
  executions: z.array(execution),
  seq: num,
  lastTrade: z.record(z.object({ price: num, dir: z.string() })),
  consumed: z.array(z.object({ key: z.string(), step: num, buy: pairs, sell: pairs })),
  prices: priceState,
});
const stateFile: z.ZodType<SimStateFile> = z.object({
  format: z.literal(STATE_FORMAT),
  version: z.literal(STATE_VERSION),
  createdAt: num,
  savedAt: num,
  seed: num,
  instances: z.array(z.object({ nonce: z.string(), startedAt: num })),
  exchange: exchangeState,
});

function unusable(file: string, reason: string): FatalError {
  return new FatalError('sim_state_unreadable', `simulator state file ${file} cannot be used: ${reason}. The simulator does not replace an account it cannot read; to start a fresh paper account on purpose: ${FRESH_HINT.replace('<file>', file)}`);
}

/** References the state must keep (an order of an unknown account could never be served). */
function consistencyProblem(s: SimStateFile): string | undefined {
  const uids = new Set(s.exchange.accounts.map((a) => a.uid));
  const ids = new Set<string>();
  for (const o of s.exchange.orders) {
    if (!uids.has(o.uid)) return `order ${o.orderId} belongs to uid ${o.uid}, which has no account`;
    if (ids.has(o.orderId)) return `orderId ${o.orderId} appears twice`;
    ids.add(o.orderId);
  }
  for (const e of s.exchange.executions) if (!ids.has(e.orderId)) return `execution ${e.execId} refers to unknown order ${e.orderId}`;
  return undefined;
}

/** The state in `file`, or undefined when there is no file. Anything unreadable throws (FatalError). */
export function loadStateFile(file: string): SimStateFile | undefined {
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
  if (head.version !== STATE_VERSION) throw unusable(file, `state version ${JSON.stringify(head.version)}, this simulator reads version ${STATE_VERSION}`);
  const r = stateFile.safeParse(json);
  if (!r.success) throw unusable(file, `invalid content: ${r.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const problem = consistencyProblem(r.data);
  if (problem) throw unusable(file, `inconsistent content: ${problem}`);
  return r.data;
}

/** A fresh account on purpose: the old file (if any) becomes `<file>.bak`. */
export function setAside(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  renameSync(file, `${file}.bak`);
  fsyncDirSync(dirname(file));
  return `${file}.bak`;
}

export interface StateSummary {
  file: string;
  createdAt: number;
  savedAt: number;
  uids: string[];
  orders: number;
  openOrders: number;
  executions: number;
  starts: number;
}

export function summarize(file: string, s: SimStateFile): StateSummary {
  return {
    file,
    createdAt: s.createdAt,
    savedAt: s.savedAt,
    uids: s.exchange.accounts.map((a) => a.uid),
    orders: s.exchange.orders.length,
    openOrders: s.exchange.orders.filter((o) => o.orderStatus === 'New' || o.orderStatus === 'PartiallyFilled').length,
    executions: s.exchange.executions.length,
    starts: s.instances.length,
  };
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
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
  /** Size of the last file written, bytes. */
  bytes: number;
  /** Main-thread time of the last snapshot + serialisation, ms. */
  lastSerializeMs: number;
  /** Wall time of the last write, snapshot to rename, ms. */
  lastWriteMs: number;
  /** Main-thread time of every snapshot + serialisation so far, ms. */
  totalSerializeMs: number;
}

export interface StateWriterOptions {
  file: string;
  /** The state to write, serialised at once. */
  snapshot: () => SimStateFile;
  /** An account change is on disk within this, ms. Default 200. */
  delayMs?: number;
  /** A market-only change (price steps) is on disk within this, ms. Default 30000. */
  marketDelayMs?: number;
  logger?: Logger;
}

/** Coalescing, crash-safe writer of one state file. */
export class StateWriter {
  readonly stats: StateWriterStats = { writes: 0, failures: 0, bytes: 0, lastSerializeMs: 0, lastWriteMs: 0, totalSerializeMs: 0 };
  private readonly delayMs: number;
  private readonly marketDelayMs: number;
  private dirty = false;
  private writing = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
  /** Generation of the last snapshot taken, and of the last one renamed into place. */
  private gen = 0;
  private landed = 0;
  private lastEnd = 0;
  private tmpSeq = 0;

  constructor(private readonly opts: StateWriterOptions) {
    this.delayMs = opts.delayMs ?? 200;
    this.marketDelayMs = opts.marketDelayMs ?? 30_000;
    mkdirSync(dirname(opts.file), { recursive: true });
    for (const t of strayTemps(opts.file)) rmSync(t, { force: true });
  }

  /** Something changed; `account`: an account change (short delay), else market only. */
  changed(account: boolean): void {
    this.dirty = true;
    if (this.stopped) return;
    this.schedule(account ? this.delayMs : this.marketDelayMs);
  }

  private schedule(delay: number): void {
    // The main-thread part of a write is its serialisation; the disk part runs off the event loop.
    const earliest = this.lastEnd + 10 * this.stats.lastSerializeMs;
    const at = Math.max(performance.now() + delay, earliest);
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      if (!this.writing && this.dirty && !this.stopped) void this.writeAsync();
    }, Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  private serialize(): { text: string; gen: number } {
    const t0 = performance.now();
    const text = JSON.stringify(this.opts.snapshot());
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
    this.stats.bytes = bytes;
    this.stats.lastWriteMs = performance.now() - t0;
    this.lastEnd = performance.now();
  }

  private async writeAsync(): Promise<void> {
    this.writing = true;
    const t0 = performance.now();
    const { text, gen } = this.serialize();
    const tmp = this.tmpName();
    try {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      // Rename in this same turn as the check: a synchronous flush in between cannot be overtaken.
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
    } finally {
      this.writing = false;
      if (this.dirty && !this.stopped) this.schedule(this.delayMs);
    }
  }

  /** Write the current state now, synchronously, unless what is on disk is already current. */
  flushSync(): void {
    if (!this.dirty && this.landed === this.gen && this.gen > 0) return;
    const t0 = performance.now();
    const { text, gen } = this.serialize();
    const tmp = this.tmpName();
    try {
      const fd = openSync(tmp, 'w');
      try {
        const buf = Buffer.from(text);
        for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.opts.file);
    } catch (err) {
      this.dirty = true;
      rmSync(tmp, { force: true });
      throw err;
    }
    this.landedAt(gen, Buffer.byteLength(text), t0);
    fsyncDirSync(dirname(this.opts.file));
  }

  /** No more scheduled writes (flushSync still works). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
