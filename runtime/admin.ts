// Admin HTTP server: /healthz (process alive), /readyz (every registered check passes: consumers
// joined, stack reachable), /metrics (prom-client). Bound to loopback by default; routes that change
// anything require `Authorization: Bearer $ADMIN_TOKEN` and are refused outright when no token is set.
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.ts';

export type ReadinessCheck = () => boolean | Promise<boolean>;
/** What a unit wants an operator to see in /readyz besides ready or not (e.g. records it dead-lettered as conflicts). */
export type ReadinessDetail = () => unknown;

export interface AdminRoute {
  method: 'GET' | 'POST';
  path: string;
  mutating: boolean;
  handler: (body: unknown, req: IncomingMessage) => Promise<{ status: number; body: unknown }>;
}

export interface AdminServer {
  port: number;
  url: string;
  addCheck(name: string, check: ReadinessCheck, detail?: ReadinessDetail): void;
  addRoute(route: AdminRoute): void;
  /** `details` only when some unit has something to show. */
  readiness(): Promise<{ ready: boolean; checks: Record<string, boolean>; details?: Record<string, unknown> }>;
  close(): Promise<void>;
}

function tokenOk(header: string | undefined, token: string): boolean {
  const given = Buffer.from((header ?? '').replace(/^Bearer\s+/i, ''));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

async function readBody(req: IncomingMessage, limit = 1 << 20): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new Error('body too large');
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  res.writeHead(status, { 'content-type': type });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

export async function startAdmin(opts: { host: string; port: number; token?: string; registry: Registry; logger: Logger }): Promise<AdminServer> {
  const checks = new Map<string, ReadinessCheck>();
  const details = new Map<string, ReadinessDetail>();
  const routes: AdminRoute[] = [];

  const readiness = async () => {
    const results: Record<string, boolean> = {};
    for (const [name, check] of checks) {
      try {
        results[name] = await check();
      } catch {
        results[name] = false;
      }
    }
    const shown: Record<string, unknown> = {};
    for (const [name, detail] of details) {
      try {
        const d = detail();
        if (d !== undefined) shown[name] = d;
      } catch (err) {
        shown[name] = { error: (err as Error).message };
      }
    }
    const ready = checks.size > 0 && Object.values(results).every(Boolean);
    return Object.keys(shown).length ? { ready, checks: results, details: shown } : { ready, checks: results };
  };

  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    try {
      if (req.method === 'GET' && path === '/healthz') return send(res, 200, { status: 'ok' });
      if (req.method === 'GET' && path === '/readyz') {
        const r = await readiness();
        return send(res, r.ready ? 200 : 503, r);
      }
      if (req.method === 'GET' && path === '/metrics') {
        return send(res, 200, await opts.registry.metrics(), opts.registry.contentType);
      }
      const route = routes.find((r) => r.method === req.method && r.path === path);
      if (!route) return send(res, 404, { error: 'not_found' });
      if (route.mutating) {
        if (!opts.token) return send(res, 403, { error: 'admin_token_not_configured' });
        if (!tokenOk(req.headers.authorization, opts.token)) return send(res, 401, { error: 'unauthorized' });
      }
      const out = await route.handler(await readBody(req), req);
      return send(res, out.status, out.body);
    } catch (err) {
      opts.logger.error({ err, path }, 'admin request failed');
      return send(res, 500, { error: 'internal', message: (err as Error).message });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  opts.logger.info({ host: opts.host, port }, 'admin server listening');

  return {
    port,
    url: `http://${opts.host}:${port}`,
    addCheck: (name, check, detail) => {
      checks.set(name, check);
      if (detail) details.set(name, detail);
    },
    addRoute: (r) => void routes.push(r),
    readiness,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
