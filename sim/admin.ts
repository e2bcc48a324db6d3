// Admin HTTP API under /sim/ on the simulator's own port (unauthenticated; the simulator binds to
// loopback). Everything here is also available to embedding code through the Simulator object.
//   GET    /sim/state                 prices, accounts (wallet, positions), counts, faults, ws connections,
//                                     the paper account (state file, id, opened at, starts, writer figures)
//   GET    /sim/orders[?uid=]         every order ever accepted (Bybit order shape + uid + source)
//   GET    /sim/executions[?uid=]     every execution
//   POST   /sim/orders                place an order directly, as another client would {uid?, ...create params}
//   GET    /sim/requests              REST requests per path since the start (or the last reset)
//   DELETE /sim/requests              reset those counts
//   GET    /sim/faults                current fault configuration and counters
//   POST   /sim/faults                merge a fault configuration (a key set to null removes it)
//   DELETE /sim/faults                clear every fault
//   POST   /sim/ws/disconnect         {which?: all|private|public} drop websocket connections now
//   POST   /sim/price                 {symbol, price} move a mid price now
//   POST   /sim/advance               {ms?, steps?} advance a manual clock and run the price process
//   POST   /sim/balance               {uid?, coin, amount} set a wallet balance
//   GET    /sim/instruments           every instrument ever listed, with its status
//   POST   /sim/instruments           add an instrument, or change a listed one's filters, fees or
//                                     status ({category, symbol, ...}; status Closed / Delivering delists)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { SimError } from './errors.ts';
import type { Simulator } from './server.ts';
import { envelope, sendJson } from './rest-server.ts';

const priceBody = z.object({ symbol: z.string(), price: z.number().positive() }).strict();
const advanceBody = z.object({ ms: z.number().min(0).optional(), steps: z.number().int().min(0).optional() }).strict();
const balanceBody = z.object({ uid: z.string().optional(), coin: z.string(), amount: z.number() }).strict();
const disconnectBody = z.object({ which: z.enum(['all', 'private', 'public']).optional() }).strict();

export function createAdminHandler(sim: () => Simulator) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<void> => {
    const s = sim();
    const now = s.exchange.now();
    const ok = (result: unknown) => sendJson(res, 200, envelope(now, 0, 'OK', result));
    const fail = (status: number, msg: string) => sendJson(res, status, envelope(now, 10001, msg));
    let json: unknown = {};
    if (body) {
      try {
        json = JSON.parse(body);
      } catch {
        return fail(400, 'body is not JSON');
      }
    }
    const route = `${req.method} ${url.pathname.replace(/\/$/, '')}`;
    const uid = url.searchParams.get('uid') ?? undefined;
    try {
      switch (route) {
        case 'GET /sim/state':
          return ok(s.state());
        case 'GET /sim/orders':
          return ok({ list: s.orders(uid) });
        case 'GET /sim/executions':
          return ok({ list: s.executions(uid) });
        case 'POST /sim/orders': {
          const { uid: who, ...params } = json as Record<string, unknown>;
          return ok(s.placeOrder(params, { uid: typeof who === 'string' ? who : undefined }));
        }
        case 'GET /sim/requests':
          return ok({ requests: s.requests.snapshot() });
        case 'DELETE /sim/requests':
          s.requests.reset();
          return ok({ requests: s.requests.snapshot() });
        case 'GET /sim/faults':
          return ok({ config: s.faults.config, stats: s.faults.stats });
        case 'POST /sim/faults':
          return ok({ config: s.faults.set(json as Record<string, unknown>), stats: s.faults.stats });
        case 'DELETE /sim/faults':
          s.faults.reset();
          return ok({ config: s.faults.config, stats: s.faults.stats });
        case 'POST /sim/ws/disconnect':
          return ok({ closed: s.faults.disconnectWs(disconnectBody.parse(json).which ?? 'all') });
        case 'POST /sim/price': {
          const b = priceBody.parse(json);
          s.setPrice(b.symbol, b.price);
          return ok({ symbol: b.symbol, mid: String(s.exchange.mid(b.symbol)) });
        }
        case 'POST /sim/advance': {
          const b = advanceBody.parse(json);
          if (b.steps !== undefined) s.tick(b.steps);
          else s.advance(b.ms ?? 0);
          return ok({ time: s.exchange.now(), steps: s.exchange.prices.steps });
        }
        case 'GET /sim/instruments':
          return ok({ list: s.instruments() });
        case 'POST /sim/instruments': {
          if (!json || typeof json !== 'object' || Array.isArray(json)) return fail(400, 'body must be a JSON object');
          return ok(s.changeInstrument(json as Record<string, unknown>));
        }
        case 'POST /sim/balance': {
          const b = balanceBody.parse(json);
          s.exchange.setBalance(b.uid ?? s.credentials[0]!.uid, b.coin, b.amount);
          return ok({});
        }
        default:
          return fail(404, `no admin route ${route}`);
      }
    } catch (e) {
      if (e instanceof SimError) return sendJson(res, 200, envelope(now, e.retCode, e.retMsg));
      if (e instanceof z.ZodError) return fail(400, e.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      if (e instanceof Error) return fail(400, e.message);
      throw e;
    }
  };
}
