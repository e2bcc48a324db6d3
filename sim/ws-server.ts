// Websocket side of the simulator, on the same HTTP server as REST. Every path is accepted
// (bybit-api sends all its connections to `wsUrl` when it is set), so one endpoint serves:
//  - private topics after {op:'auth'}: order, execution, position, wallet (and their .spot /
//    .linear category variants), as {id, topic, creationTime, data:[...]};
//  - private dcp.future / dcp.spot / dcp.option: arm disconnection protection (sim/dcp.ts);
//  - public topics: tickers.{symbol}, publicTrade.{symbol}, orderbook.{1|50|200|1000}.{symbol}
//    (a snapshot, then deltas) and kline.{interval}.{symbol} (sim/ws-feeds.ts).
// Public topics name no category; /v5/public/spot and /v5/public/linear pick one, any other path
// uses `publicCategory` (default linear, falling back to spot for spot-only symbols).
// Ping answers follow Bybit: private connections get {op:'pong'}, public ones {op:'ping', ret_msg:'pong'}.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { Authenticator } from './auth.ts';
import { DCP_TOPICS, type DcpGuard } from './dcp.ts';
import type { Exchange, ExchangeEvent } from './exchange.ts';
import type { FaultController } from './faults.ts';
import type { Category } from './instruments.ts';
import { ticker } from './market-data.ts';
import { parsePublicTopic, type PublicFeeds } from './ws-feeds.ts';

const PRIVATE_TOPICS = new Set(['order', 'order.spot', 'order.linear', 'execution', 'execution.spot', 'execution.linear', 'position', 'position.linear', 'wallet', ...Object.keys(DCP_TOPICS)]);

interface Conn {
  id: string;
  ws: WebSocket;
  path: string;
  uid?: string;
  subs: Set<string>;
  /** Messages held back by the reorder fault, per topic. */
  held: Map<string, { text: string; timer: NodeJS.Timeout }>;
  sent: number;
}

export interface WsDeps {
  ex: Exchange;
  auth: Authenticator;
  faults: FaultController;
  logger: Logger;
  publicCategory: Category;
  feeds: PublicFeeds;
  dcp: DcpGuard;
}

export class SimWsServer {
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly conns = new Set<Conn>();
  private nextConn = 1;
  private disconnectTimer?: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  /** Books changed since the last flush ("category:symbol"), and whether a price step was among the changes. */
  private readonly dirtyBooks = new Set<string>();
  private bookStep = false;
  private flushQueued = false;

  constructor(server: Server, private readonly deps: WsDeps) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
    });
    this.unsubscribe = deps.ex.on((e) => this.onExchangeEvent(e));
    deps.faults.bindWs(
      (which) => this.disconnect(which),
      () => this.armDisconnectTimer(),
    );
    this.armDisconnectTimer();
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  connections(): Array<{ id: string; path: string; uid?: string; subscriptions: string[]; sent: number }> {
    return [...this.conns].map((c) => ({ id: c.id, path: c.path, uid: c.uid, subscriptions: [...c.subs], sent: c.sent }));
  }

  /** Terminate connections abruptly (no close frame), like a network drop. */
  disconnect(which: 'all' | 'private' | 'public' = 'all'): number {
    let n = 0;
    for (const c of [...this.conns]) {
      if (which === 'private' && !c.uid) continue;
      if (which === 'public' && c.uid) continue;
      c.ws.terminate();
      n++;
    }
    return n;
  }

  close(): Promise<void> {
    this.unsubscribe();
    if (this.disconnectTimer) clearInterval(this.disconnectTimer);
    for (const c of this.conns) {
      for (const h of c.held.values()) clearTimeout(h.timer);
      c.ws.terminate();
    }
    this.conns.clear();
    return new Promise((r) => this.wss.close(() => r()));
  }

  private armDisconnectTimer(): void {
    if (this.disconnectTimer) clearInterval(this.disconnectTimer);
    this.disconnectTimer = undefined;
    const every = this.deps.faults.wsDisconnectEveryMs;
    if (every > 0) {
      this.disconnectTimer = setInterval(() => this.deps.faults.disconnectWs('all'), every);
      this.disconnectTimer.unref();
    }
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const conn: Conn = { id: `sim-${this.nextConn++}`, ws, path: new URL(req.url ?? '/', 'http://sim.local').pathname, subs: new Set(), held: new Map(), sent: 0 };
    this.conns.add(conn);
    ws.on('message', (raw) => this.onMessage(conn, raw.toString()));
    ws.on('close', () => {
      for (const h of conn.held.values()) clearTimeout(h.timer);
      this.conns.delete(conn);
      if (conn.uid) this.deps.dcp.closed(conn.id);
    });
    ws.on('error', (err) => this.deps.logger.debug({ err, conn: conn.id }, 'ws error'));
  }

  private reply(conn: Conn, msg: Record<string, unknown>): void {
    if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(msg));
  }

  private onMessage(conn: Conn, text: string): void {
    let msg: { op?: unknown; args?: unknown; req_id?: unknown };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      this.reply(conn, { success: false, ret_msg: 'error:invalid message', conn_id: conn.id, op: '' });
      return;
    }
    const reqId = typeof msg.req_id === 'string' ? msg.req_id : undefined;
    const base = (op: string) => ({ conn_id: conn.id, ...(reqId !== undefined ? { req_id: reqId } : {}), op });
    switch (msg.op) {
      case 'ping':
        if (conn.uid) this.reply(conn, { ...(reqId !== undefined ? { req_id: reqId } : {}), op: 'pong', args: [String(Date.now())], conn_id: conn.id });
        else this.reply(conn, { success: true, ret_msg: 'pong', ...base('ping') });
        return;
      case 'auth': {
        const r = this.deps.auth.verifyWs(msg.args);
        if ('error' in r) {
          this.reply(conn, { success: false, ret_msg: r.error, ...base('auth') });
          return;
        }
        conn.uid = r.uid;
        this.reply(conn, { success: true, ret_msg: '', ...base('auth') });
        return;
      }
      case 'subscribe':
      case 'unsubscribe': {
        const op = msg.op;
        const topics = Array.isArray(msg.args) ? msg.args.filter((t): t is string => typeof t === 'string') : [];
        const bad = topics.filter((t) => !this.validTopic(conn, t));
        if (topics.length === 0 || bad.length) {
          const needsAuth = bad.some((t) => PRIVATE_TOPICS.has(t)) && !conn.uid;
          this.reply(conn, { success: false, ret_msg: needsAuth ? 'Request not authorized' : `error:handler not found,topic:${bad.join(',') || '(none)'}`, ...base(op) });
          return;
        }
        for (const t of topics) {
          if (op === 'subscribe') conn.subs.add(t);
          else conn.subs.delete(t);
          if (conn.uid && t in DCP_TOPICS) {
            if (op === 'subscribe') this.deps.dcp.subscribed(conn.id, conn.uid, t);
            else this.deps.dcp.unsubscribed(conn.id, conn.uid, t);
          }
        }
        this.reply(conn, { success: true, ret_msg: '', ...base(op) });
        if (op === 'subscribe') for (const t of topics) this.initialSnapshot(conn, t);
        return;
      }
      default:
        this.reply(conn, { success: false, ret_msg: `error:unsupported op ${String(msg.op)}`, ...base(String(msg.op ?? '')) });
    }
  }

  private categoryFor(conn: Conn, symbol: string): Category | undefined {
    const { ex, publicCategory } = this.deps;
    if (conn.path.endsWith('/public/spot')) return ex.instruments.get('spot', symbol) ? 'spot' : undefined;
    if (conn.path.endsWith('/public/linear')) return ex.instruments.get('linear', symbol) ? 'linear' : undefined;
    if (ex.instruments.get(publicCategory, symbol)) return publicCategory;
    const other: Category = publicCategory === 'linear' ? 'spot' : 'linear';
    return ex.instruments.get(other, symbol) ? other : undefined;
  }

  private validTopic(conn: Conn, t: string): boolean {
    if (PRIVATE_TOPICS.has(t)) return conn.uid !== undefined;
    const p = parsePublicTopic(t);
    return p !== undefined && this.categoryFor(conn, p.symbol) !== undefined;
  }

  /** Another connection listens to the same feed (topic and category) as `conn`. */
  private othersListening(conn: Conn, topic: string, cat: Category, symbol: string): boolean {
    for (const c of this.conns) if (c !== conn && c.subs.has(topic) && this.categoryFor(c, symbol) === cat) return true;
    return false;
  }

  private initialSnapshot(conn: Conn, t: string): void {
    const p = parsePublicTopic(t);
    if (!p) return;
    if (p.kind !== 'orderbook' && p.kind !== 'kline') {
      if (p.kind === 'tickers') this.pushPublic(conn, t, p.symbol);
      return;
    }
    const cat = this.categoryFor(conn, p.symbol);
    const inst = cat && this.deps.ex.instruments.get(cat, p.symbol);
    if (!cat || !inst) return;
    const others = this.othersListening(conn, t, cat, p.symbol);
    const msg = p.kind === 'orderbook' ? this.deps.feeds.bookSnapshot(cat, inst, p.depth, others) : this.deps.feeds.klineSnapshot(cat, inst, p.interval, others);
    if (msg) this.deliver(conn, t, msg);
  }

  private pushPublic(conn: Conn, topic: string, symbol: string): void {
    const { ex } = this.deps;
    const cat = this.categoryFor(conn, symbol);
    const inst = cat && ex.instruments.get(cat, symbol);
    if (!inst) return;
    const now = ex.now();
    const data = { ...ticker(ex, inst), ...(inst.category === 'linear' ? { tickDirection: ex.tickDirection(symbol) } : {}) };
    this.deliver(conn, topic, { topic, type: 'snapshot', data, cs: ex.prices.steps, ts: now });
  }

  /** Subscribers of each orderbook or kline feed, by "category topic". */
  private feedSubscribers(kind: 'orderbook' | 'kline'): Map<string, { cat: Category; topic: string; p: ReturnType<typeof parsePublicTopic> & object; conns: Conn[] }> {
    const out = new Map<string, { cat: Category; topic: string; p: ReturnType<typeof parsePublicTopic> & object; conns: Conn[] }>();
    for (const c of this.conns) {
      for (const t of c.subs) {
        const p = parsePublicTopic(t);
        if (!p || p.kind !== kind) continue;
        const cat = this.categoryFor(c, p.symbol);
        if (!cat) continue;
        const k = `${cat} ${t}`;
        const f = out.get(k);
        if (f) f.conns.push(c);
        else out.set(k, { cat, topic: t, p, conns: [c] });
      }
    }
    return out;
  }

  /** A book may have changed: its feeds send their delta once the current turn of work is done. */
  private bookChanged(keys: string[], step: boolean): void {
    for (const k of keys) this.dirtyBooks.add(k);
    this.bookStep ||= step;
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flushBooks());
  }

  private flushBooks(): void {
    this.flushQueued = false;
    const step = this.bookStep;
    this.bookStep = false;
    const dirty = new Set(this.dirtyBooks);
    this.dirtyBooks.clear();
    for (const f of this.feedSubscribers('orderbook').values()) {
      if (f.p.kind !== 'orderbook' || !dirty.has(`${f.cat}:${f.p.symbol}`)) continue;
      const inst = this.deps.ex.instruments.get(f.cat, f.p.symbol);
      const msg = inst && this.deps.feeds.bookUpdate(f.cat, inst, f.p.depth, step);
      if (msg) for (const c of f.conns) this.deliver(c, f.topic, msg);
    }
  }

  private pushKlines(symbols: string[]): void {
    for (const f of this.feedSubscribers('kline').values()) {
      if (f.p.kind !== 'kline' || !symbols.includes(f.p.symbol)) continue;
      const inst = this.deps.ex.instruments.get(f.cat, f.p.symbol);
      if (!inst) continue;
      for (const msg of this.deps.feeds.klineUpdate(f.cat, inst, f.p.interval)) for (const c of f.conns) this.deliver(c, f.topic, msg);
    }
  }

  private onExchangeEvent(e: ExchangeEvent): void {
    if (e.type === 'private') {
      for (const c of this.conns) {
        if (c.uid !== e.uid) continue;
        for (const t of [e.topic, `${e.topic}.spot`, `${e.topic}.linear`]) {
          if (!c.subs.has(t)) continue;
          const cat = t.split('.')[1];
          const data = cat ? e.data.filter((d) => d.category === cat) : e.data;
          if (e.topic === 'wallet' || data.length) this.deliver(c, t, { id: this.deps.ex.messageId(), topic: t, creationTime: e.creationTime, data: e.topic === 'wallet' ? e.data : data });
        }
      }
      return;
    }
    if (e.type === 'trades') {
      const topic = `publicTrade.${e.symbol}`;
      for (const c of this.conns) {
        if (c.subs.has(topic) && this.categoryFor(c, e.symbol) === e.category) this.deliver(c, topic, { topic, type: 'snapshot', ts: this.deps.ex.now(), data: e.trades });
      }
      this.bookChanged([`${e.category}:${e.symbol}`], false);
      return;
    }
    for (const c of this.conns) {
      for (const t of c.subs) {
        const p = parsePublicTopic(t);
        if (p?.kind === 'tickers' && e.symbols.includes(p.symbol)) this.pushPublic(c, t, p.symbol);
      }
    }
    this.bookChanged(e.symbols.flatMap((s) => [`spot:${s}`, `linear:${s}`]), true);
    this.pushKlines(e.symbols);
  }

  /** Send a topic push through the websocket faults (drop, duplicate, reorder, latency). */
  private deliver(conn: Conn, topic: string, msg: Record<string, unknown>): void {
    const d = this.deps.faults.wsDelivery(topic);
    if (d.drop) return;
    const text = JSON.stringify(msg);
    const send = () => {
      if (conn.ws.readyState !== WebSocket.OPEN) return;
      if (d.reorder && !conn.held.has(topic)) {
        const timer = setTimeout(() => this.flushHeld(conn, topic), d.holdMs);
        timer.unref();
        conn.held.set(topic, { text, timer });
        return;
      }
      conn.ws.send(text);
      conn.sent++;
      if (d.duplicate) {
        conn.ws.send(text);
        conn.sent++;
      }
      this.flushHeld(conn, topic);
    };
    if (d.latencyMs > 0) setTimeout(send, d.latencyMs).unref();
    else send();
  }

  /** Deliver the message held back on `topic`, now after the one that overtook it. */
  private flushHeld(conn: Conn, topic: string): void {
    const h = conn.held.get(topic);
    if (!h) return;
    conn.held.delete(topic);
    clearTimeout(h.timer);
    if (conn.ws.readyState === WebSocket.OPEN) {
      conn.ws.send(h.text);
      conn.sent++;
    }
  }
}
