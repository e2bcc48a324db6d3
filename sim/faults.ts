// Fault injection, switchable at run time (POST /sim/faults or the embedding API). Every fault is
// either counted ("the next N matching requests") or probabilistic (seeded, so a run with the same
// seed and the same request sequence sees the same faults). Faults can be scoped to paths.
import { z } from 'zod';
import { Rng } from './rng.ts';

const rule = {
  /** Fire on the next `count` matching requests / messages. */
  count: z.number().int().min(0).optional(),
  /** Otherwise fire with this probability. */
  probability: z.number().min(0).max(1).optional(),
  /** Only for these REST paths (e.g. "/v5/order/create"); all when absent. */
  paths: z.array(z.string()).optional(),
};

export const faultConfigSchema = z
  .object({
    /** Added delay before every REST answer (and the same for websocket pushes when wsLatencyMs is unset). */
    latencyMs: z.number().min(0).optional(),
    latencyJitterMs: z.number().min(0).optional(),
    latencyPaths: z.array(z.string()).optional(),
    /** Answer with an HTTP 5xx. afterProcessing: the request IS executed, then the 5xx is sent. */
    http5xx: z.object({ ...rule, status: z.number().int().min(500).max(599).optional(), afterProcessing: z.boolean().optional() }).strict().optional(),
    /** Execute the request, then lose the answer: "reset" destroys the socket, "hang" never answers. */
    loseResponse: z.object({ ...rule, mode: z.enum(['reset', 'hang']).optional(), hangMs: z.number().min(0).optional() }).strict().optional(),
    /** Answer retCode 10006 without executing (a storm of rate-limit refusals). */
    rateLimitStorm: z.object({ ...rule, untilMs: z.number().optional() }).strict().optional(),
    /** Accept orders (retCode 0, an orderId) and then publish them as Rejected. */
    rejectOrders: z.object(rule).strict().optional(),
    ws: z
      .object({
        /** Private/public topic pushes only (never op replies such as auth, subscribe, pong). */
        topics: z.array(z.string()).optional(),
        drop: z.object({ count: rule.count, probability: rule.probability }).strict().optional(),
        duplicate: z.object({ count: rule.count, probability: rule.probability }).strict().optional(),
        /** Hold a message back and deliver it after the next one of the same topic on that connection (or after holdMs). */
        reorder: z.object({ count: rule.count, probability: rule.probability, holdMs: z.number().min(0).optional() }).strict().optional(),
        latencyMs: z.number().min(0).optional(),
        /** Close every connection at this period (ms). */
        disconnectEveryMs: z.number().min(0).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type FaultConfig = z.infer<typeof faultConfigSchema>;
type Rule = { count?: number; probability?: number; paths?: string[] };

export interface FaultStats {
  latency: number;
  http5xx: number;
  loseResponse: number;
  rateLimitStorm: number;
  rejectOrders: number;
  wsDrop: number;
  wsDuplicate: number;
  wsReorder: number;
  wsDisconnect: number;
}

export class FaultController {
  private cfg: FaultConfig = {};
  private readonly rng: Rng;
  readonly stats: FaultStats = { latency: 0, http5xx: 0, loseResponse: 0, rateLimitStorm: 0, rejectOrders: 0, wsDrop: 0, wsDuplicate: 0, wsReorder: 0, wsDisconnect: 0 };
  private disconnectHook: (which: 'all' | 'private' | 'public') => number = () => 0;
  private changeHook: () => void = () => {};

  constructor(seed: number, initial: FaultConfig = {}, private readonly now: () => number = Date.now) {
    this.rng = new Rng(seed, 4);
    this.set(initial);
  }

  /** Merge a partial configuration: a key set to null (admin JSON) or undefined removes that fault. */
  set(partial: Partial<Record<keyof FaultConfig, unknown>>): FaultConfig {
    const merged: Record<string, unknown> = { ...this.cfg };
    for (const [k, v] of Object.entries(partial)) {
      if (v === null || v === undefined) delete merged[k];
      else merged[k] = v;
    }
    this.cfg = faultConfigSchema.parse(merged);
    this.changeHook();
    return this.config;
  }

  reset(): void {
    this.cfg = {};
    this.changeHook();
  }

  get config(): FaultConfig {
    return structuredClone(this.cfg);
  }

  /** Close websocket connections now. Returns how many were closed. */
  disconnectWs(which: 'all' | 'private' | 'public' = 'all'): number {
    const n = this.disconnectHook(which);
    this.stats.wsDisconnect += n;
    return n;
  }

  /** Wiring for the websocket server (not for callers). */
  bindWs(disconnect: (which: 'all' | 'private' | 'public') => number, onChange: () => void): void {
    this.disconnectHook = disconnect;
    this.changeHook = onChange;
  }

  private fire(r: Rule | undefined, path?: string): boolean {
    if (!r) return false;
    if (path !== undefined && r.paths && !r.paths.includes(path)) return false;
    if (r.count !== undefined) {
      if (r.count <= 0) return false;
      r.count -= 1;
      return true;
    }
    return r.probability !== undefined && this.rng.next() < r.probability;
  }

  latencyFor(path: string): number {
    const base = this.cfg.latencyMs ?? 0;
    if (base <= 0 && !this.cfg.latencyJitterMs) return 0;
    if (this.cfg.latencyPaths && !this.cfg.latencyPaths.includes(path)) return 0;
    this.stats.latency++;
    return base + (this.cfg.latencyJitterMs ? this.rng.next() * this.cfg.latencyJitterMs : 0);
  }

  http5xx(path: string): { status: number; afterProcessing: boolean } | undefined {
    if (!this.fire(this.cfg.http5xx, path)) return undefined;
    this.stats.http5xx++;
    return { status: this.cfg.http5xx?.status ?? 503, afterProcessing: this.cfg.http5xx?.afterProcessing ?? false };
  }

  loseResponse(path: string): { mode: 'reset' | 'hang'; hangMs: number } | undefined {
    if (!this.fire(this.cfg.loseResponse, path)) return undefined;
    this.stats.loseResponse++;
    return { mode: this.cfg.loseResponse?.mode ?? 'reset', hangMs: this.cfg.loseResponse?.hangMs ?? 30000 };
  }

  rateLimitStorm(path: string): boolean {
    const r = this.cfg.rateLimitStorm;
    if (!r) return false;
    if (r.untilMs !== undefined && this.now() >= r.untilMs) return false;
    const hit = r.count === undefined && r.probability === undefined ? (!r.paths || r.paths.includes(path)) : this.fire(r, path);
    if (hit) this.stats.rateLimitStorm++;
    return hit;
  }

  rejectOrder(path: string): boolean {
    const hit = this.fire(this.cfg.rejectOrders, path);
    if (hit) this.stats.rejectOrders++;
    return hit;
  }

  /** What to do with one websocket topic push. */
  wsDelivery(topic: string): { drop: boolean; duplicate: boolean; reorder: boolean; holdMs: number; latencyMs: number } {
    const w = this.cfg.ws;
    const none = { drop: false, duplicate: false, reorder: false, holdMs: 0, latencyMs: w?.latencyMs ?? 0 };
    if (!w) return none;
    if (w.topics && !w.topics.some((t) => topic === t || topic.startsWith(`${t}.`))) return none;
    const drop = this.fire(w.drop);
    if (drop) {
      this.stats.wsDrop++;
      return { ...none, drop };
    }
    const duplicate = this.fire(w.duplicate);
    if (duplicate) this.stats.wsDuplicate++;
    const reorder = this.fire(w.reorder);
    if (reorder) this.stats.wsReorder++;
    return { drop: false, duplicate, reorder, holdMs: w.reorder?.holdMs ?? 250, latencyMs: w.latencyMs ?? 0 };
  }

  get wsDisconnectEveryMs(): number {
    return this.cfg.ws?.disconnectEveryMs ?? 0;
  }
}
