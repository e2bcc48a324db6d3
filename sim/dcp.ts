// Disconnection protection (DCP), as https://bybit-exchange.github.io/docs/v5/order/dcp and
// .../websocket/private/dcp describe it:
//  - POST /v5/order/disconnected-cancel-all sets the time window (3..300 s) of one product:
//    `OPTIONS` (the default when `product` is absent), `DERIVATIVES` (here: linear) or `SPOT`.
//    GET /v5/account/query-dcp-info lists what is set (nothing until something is set).
//  - A private websocket arms the protection of a product by subscribing its topic: dcp.future
//    (DERIVATIVES), dcp.spot (SPOT), dcp.option (OPTIONS). When every connection of the account
//    that subscribed the topic is gone, the timing starts; a connection that subscribes it again
//    resets it; if none comes back within the window, the account's open orders of that product
//    are cancelled with cancelType `CancelByDCP` and the protection waits for the next subscription.
//    Connections that never subscribed the topic do not count (the doc's example 3), and an
//    unsubscribe is not a disconnection.
// The simulator has no options, so an OPTIONS window cancels nothing. Time is the exchange clock:
// the guard is checked whenever the simulator advances (and on a timer with the wall clock).
import { paramsError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { Category } from './instruments.ts';

export type DcpProduct = 'OPTIONS' | 'DERIVATIVES' | 'SPOT';
const PRODUCTS: readonly DcpProduct[] = ['OPTIONS', 'DERIVATIVES', 'SPOT'];

/** Private websocket topic arming each product. */
export const DCP_TOPICS: Readonly<Record<string, DcpProduct>> = Object.freeze({ 'dcp.future': 'DERIVATIVES', 'dcp.spot': 'SPOT', 'dcp.option': 'OPTIONS' });

const COVERS: Readonly<Record<DcpProduct, readonly Category[]>> = { DERIVATIVES: ['linear'], SPOT: ['spot'], OPTIONS: [] };

/** What the state file keeps: the windows set (connections are gone after a restart anyway). */
export interface DcpState {
  settings: Array<{ uid: string; product: DcpProduct; timeWindow: number }>;
}

export interface DcpTrigger {
  uid: string;
  product: DcpProduct;
  at: number;
  cancelled: string[];
}

const key = (uid: string, product: DcpProduct) => `${uid}\u0000${product}`;

export class DcpGuard {
  private readonly windows = new Map<string, { uid: string; product: DcpProduct; timeWindow: number }>();
  /** Live connections subscribed to each (uid, product) topic. */
  private readonly watchers = new Map<string, Set<string>>();
  /** Armed protections: when the last watcher went away. */
  private readonly lostAt = new Map<string, number>();
  readonly triggers: DcpTrigger[] = [];
  /** Called when a window is set (the state file saves it). */
  onChange: () => void = () => {};

  constructor(private readonly ex: Exchange, restore?: DcpState) {
    for (const s of restore?.settings ?? []) this.windows.set(key(s.uid, s.product), { ...s });
  }

  snapshot(): DcpState {
    return { settings: [...this.windows.values()].map((s) => ({ ...s })) };
  }

  /** POST /v5/order/disconnected-cancel-all. */
  set(uid: string, params: Record<string, unknown>): void {
    const raw = params.timeWindow;
    if (raw === undefined || raw === null || raw === '') throw paramsError('timeWindow is required');
    const timeWindow = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(timeWindow) || timeWindow < 3 || timeWindow > 300) throw paramsError('timeWindow must be an integer in [3, 300]');
    const product = params.product === undefined || params.product === '' ? 'OPTIONS' : params.product;
    if (!PRODUCTS.includes(product as DcpProduct)) throw paramsError(`product must be one of ${PRODUCTS.join(', ')}`);
    this.windows.set(key(uid, product as DcpProduct), { uid, product: product as DcpProduct, timeWindow });
    this.onChange();
  }

  /** GET /v5/account/query-dcp-info: the products with a window, empty when none is set. */
  info(uid: string): Array<{ product: DcpProduct; dcpStatus: 'ON'; timeWindow: string }> {
    return PRODUCTS.flatMap((product) => {
      const w = this.windows.get(key(uid, product));
      return w ? [{ product, dcpStatus: 'ON' as const, timeWindow: String(w.timeWindow) }] : [];
    });
  }

  subscribed(connId: string, uid: string, topic: string): void {
    const product = DCP_TOPICS[topic];
    if (!product) return;
    const k = key(uid, product);
    let set = this.watchers.get(k);
    if (!set) this.watchers.set(k, (set = new Set()));
    set.add(connId);
    this.lostAt.delete(k);
  }

  unsubscribed(connId: string, uid: string, topic: string): void {
    const product = DCP_TOPICS[topic];
    if (product) this.watchers.get(key(uid, product))?.delete(connId);
  }

  /** A private connection is gone: the protections it was the last watcher of start timing. */
  closed(connId: string): void {
    const now = this.ex.now();
    for (const [k, set] of this.watchers) {
      if (!set.delete(connId) || set.size > 0) continue;
      if (this.windows.has(k)) this.lostAt.set(k, now);
    }
  }

  /** Trigger every armed protection whose window has passed. */
  check(): DcpTrigger[] {
    const now = this.ex.now();
    const fired: DcpTrigger[] = [];
    for (const [k, since] of [...this.lostAt]) {
      const w = this.windows.get(k);
      if (!w || now - since < w.timeWindow * 1000) continue;
      this.lostAt.delete(k);
      const covers = COVERS[w.product];
      const cancelled = this.ex.cancelOpenOrders((o) => o.uid === w.uid && covers.includes(o.category), 'CancelByDCP');
      const t = { uid: w.uid, product: w.product, at: now, cancelled: cancelled.map((o) => o.orderId) };
      this.triggers.push(t);
      fired.push(t);
    }
    return fired;
  }
}
