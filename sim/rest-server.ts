// HTTP front of the simulator: Bybit's envelope, authentication, per-UID rate limits with the
// X-Bapi-Limit-* headers, and REST fault injection, around the routes of routes.ts. Paths under
// /sim/ go to the admin API.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from './auth.ts';
import { RetCode, SimError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { FaultController } from './faults.ts';
import type { RateLimiter } from './rate-limit.ts';
import { findRoute } from './routes.ts';
import { batchCost, BATCH_PATHS, WithExtInfo } from './batch-routes.ts';
import type { SimExt } from './routes-ext.ts';

export interface RestDeps {
  ex: Exchange;
  auth: Authenticator;
  limiter: RateLimiter;
  faults: FaultController;
  logger: Logger;
  startedAt: number;
  ext: SimExt;
  requests: RequestCounter;
  admin: (req: IncomingMessage, res: ServerResponse, url: URL, body: string) => Promise<void>;
}

export function envelope(now: number, retCode: number, retMsg: string, result: unknown = {}, retExtInfo: Record<string, unknown> = {}): string {
  return JSON.stringify({ retCode, retMsg, result, retExtInfo, time: now });
}

/** REST requests per path that reached a served route (any answer: refused, faulted or executed). */
export class RequestCounter {
  private readonly counts = new Map<string, number>();
  add(path: string): void {
    this.counts.set(path, (this.counts.get(path) ?? 0) + 1);
  }
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }
  reset(): void {
    this.counts.clear();
  }
}

export function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.writableEnded || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

export function readBody(req: IncomingMessage, max = 1 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new SimError(RetCode.PARAMS, 'params error: request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function createRestHandler(deps: RestDeps) {
  const hung = new Set<ServerResponse>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim.local');
    const path = url.pathname;
    if (path.startsWith('/sim/') || path === '/sim') return deps.admin(req, res, url, await readBody(req));
    const { ex, auth, limiter, faults } = deps;

    const route = findRoute(req.method ?? 'GET', path);
    if (!route || route === 'method') {
      // Bybit's gateway answers a path it does not serve (or a method a path does not take) with
      // HTTP 404 and an empty JSON body, before authentication or rate limits (error page: "404
      // Cannot find path"; the answer's headers as recorded in ccxt/ccxt#19322: Content-Length 0,
      // Content-Type application/json; charset=utf-8). Whatever body came with it is not read.
      req.resume();
      sendJson(res, 404, '');
      return;
    }
    deps.requests.add(path);
    const body = await readBody(req);
    const latency = faults.latencyFor(path);
    if (latency > 0) await sleep(latency);
    let params: Record<string, unknown>;
    let payload: string;
    if (route.method === 'GET') {
      params = Object.fromEntries(url.searchParams.entries());
      const q = (req.url ?? '').indexOf('?');
      payload = q >= 0 ? (req.url ?? '').slice(q + 1) : '';
    } else {
      payload = body;
      try {
        const parsed: unknown = body ? JSON.parse(body) : {};
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
        params = parsed as Record<string, unknown>;
      } catch {
        sendJson(res, 200, envelope(ex.now(), RetCode.PARAMS, 'params error: request body is not a JSON object'));
        return;
      }
    }

    let uid = '';
    if (route.private) {
      try {
        uid = auth.verifyRest(req.headers, payload).uid;
      } catch (e) {
        const err = e instanceof SimError ? e : new SimError(RetCode.PARAMS, String(e));
        sendJson(res, 200, envelope(ex.now(), err.retCode, err.retMsg));
        return;
      }
    }
    const category = typeof params.category === 'string' ? params.category : undefined;
    const who = route.private ? `uid:${uid}` : `ip:${req.socket.remoteAddress ?? ''}`;
    const isBatch = (BATCH_PATHS as readonly string[]).includes(path);
    const d = limiter.check(who, path, category, route.private, isBatch ? batchCost(params) : 1);
    const storm = faults.rateLimitStorm(path);
    const headers = {
      'X-Bapi-Limit': String(d.limit),
      'X-Bapi-Limit-Status': String(storm ? 0 : d.remaining),
      'X-Bapi-Limit-Reset-Timestamp': String(storm ? ex.now() + 1000 : d.resetAt),
    };
    if (storm || !d.allowed) {
      sendJson(res, 200, envelope(ex.now(), RetCode.RATE_LIMIT, 'Too many visits!'), headers);
      return;
    }
    const f5 = faults.http5xx(path);
    if (f5 && !f5.afterProcessing) {
      sendError5xx(res, f5.status);
      return;
    }
    let out: string;
    try {
      const forceReject = path === '/v5/order/create' && faults.rejectOrder(path);
      const rejectOrder = isBatch ? () => faults.rejectOrder(path) : undefined;
      const result = route.handler({ ex, uid, params, forceReject, startedAt: deps.startedAt, ext: deps.ext, admitted: d.admitted, rejectOrder });
      out = result instanceof WithExtInfo ? envelope(ex.now(), RetCode.OK, route.okMsg ?? 'OK', result.result, result.retExtInfo) : envelope(ex.now(), RetCode.OK, route.okMsg ?? 'OK', result);
    } catch (e) {
      if (!(e instanceof SimError)) throw e;
      out = envelope(ex.now(), e.retCode, e.retMsg, e.result);
    }
    if (f5) {
      sendError5xx(res, f5.status);
      return;
    }
    const lost = faults.loseResponse(path);
    if (lost) {
      deps.logger.debug({ path, mode: lost.mode }, 'fault: answer lost');
      if (lost.mode === 'reset') {
        req.socket.destroy();
      } else {
        hung.add(res);
        setTimeout(() => {
          hung.delete(res);
          res.socket?.destroy();
        }, lost.hangMs).unref();
      }
      return;
    }
    sendJson(res, 200, out, headers);
  }

  function sendError5xx(res: ServerResponse, status: number): void {
    const body = `<html><head><title>${status}</title></head><body><center><h1>${status} Service Temporarily Unavailable</h1></center></body></html>`;
    if (res.writableEnded) return;
    res.writeHead(status, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  return {
    listener(req: IncomingMessage, res: ServerResponse): void {
      handle(req, res).catch((e: unknown) => {
        deps.logger.error({ err: e, url: req.url }, 'simulator request failed');
        sendJson(res, 500, envelope(deps.ex.now(), 10016, 'Internal System Error.'));
      });
    },
    /** Drop answers held by the "hang" fault (on close). */
    releaseHung(): void {
      for (const r of hung) r.socket?.destroy();
      hung.clear();
    },
  };
}
