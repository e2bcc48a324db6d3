// Websocket side of the simulator, on the same HTTP server as REST. Every path is accepted
// (bybit-api sends all its connections to `wsUrl` when it is set), so one endpoint serves:
//  - private topics after {op:'auth'}: order, execution, position, wallet (and their .spot /
//    .linear category variants), as {id, topic, creationTime, data:[...]};
//  - public topics: tickers.{symbol}, publicTrade.{symbol}, orderbook.{1|50|200}.{symbol}.
// Public topics name no category; /v5/public/spot and /v5/public/linear pick one, any other path
// uses `publicCategory` (default linear, falling back to spot for spot-only symbols).
// Ping answers follow Bybit: private connections get {op:'pong'}, public ones {op:'ping', ret_msg:'pong'}.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { Authenticator } from './auth.ts';
import type { Exchange, ExchangeEvent } from './exchange.ts';
import type { FaultController } from './faults.ts';
import type { Category } from './instruments.ts';
import { orderbook, ticker } from './market-data.ts';

const PRIVATE_TOPICS = new Set(['order', 'order.spot', 'order.linear', 'execution', 'execution.spot', 'execution.linear', 'position', 'position.linear', 'wallet']);
const PUBLIC_RE = /^(tickers|publicTrade)\.([A-Z0-9]+)$|^orderbook\.(1|50|200)\.([A-Z0-9]+)$/;

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
}

export class SimWsServer {
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly conns = new Set<Conn>();
  private nextConn = 1;
  private disconnectTimer?: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

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
    const m = PUBLIC_RE.exec(t);
    if (!m) return false;
    const symbol = m[2] ?? m[4]!;
    return this.categoryFor(conn, symbol) !== undefined;
  }

  private initialSnapshot(conn: Conn, t: string): void {
    const m = PUBLIC_RE.exec(t);
    if (!m || m[1] === 'publicTrade') return;
    const symbol = m[2] ?? m[4]!;
    this.pushPublic(conn, t, symbol);
  }

  private pushPublic(conn: Conn, topic: string, symbol: string): void {
    const { ex } = this.deps;
    const cat = this.categoryFor(conn, symbol);
    const inst = cat && ex.instruments.get(cat, symbol);
    if (!inst) return;
    const now = ex.now();
    if (topic.startsWith('tickers.')) {
      const data = { ...ticker(ex, inst), ...(inst.category === 'linear' ? { tickDirection: ex.tickDirection(symbol) } : {}) };
      this.deliver(conn, topic, { topic, type: 'snapshot', data, cs: ex.prices.steps, ts: now });
    } else if (topic.startsWith('orderbook.')) {
      const depth = Number(topic.split('.')[1]);
      this.deliver(conn, topic, { topic, type: 'snapshot', ts: now, data: { ...orderbook(ex, inst, depth), u: ex.prices.steps, seq: ex.prices.steps }, cts: now });
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
      return;
    }
    for (const c of this.conns) {
      for (const t of c.subs) {
        const m = PUBLIC_RE.exec(t);
        if (!m || m[1] === 'publicTrade') continue;
        const symbol = m[2] ?? m[4]!;
        if (e.symbols.includes(symbol)) this.pushPublic(c, t, symbol);
      }
    }
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
