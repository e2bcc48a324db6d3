// Shared helpers of the simulator tests: a simulator per test on an ephemeral port, bybit-api
// clients pointed at it, and bounded polling instead of sleeps.
import { RestClientV5, WebsocketClient } from 'bybit-api';
import { ManualClock } from '../../runtime/clock.ts';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../sim/server.ts';

export const KEY = 'sim-key';
export const SECRET = 'sim-secret';
export const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);

/** bybit-api's websocket logger, silenced (its default prints every connect to the console). */
export const quietLogger = { trace: () => {}, info: () => {}, error: () => {} };

export async function manualSim(opts: SimulatorOptions = {}): Promise<Simulator & { clock: ManualClock }> {
  const clock = new ManualClock(T0);
  const sim = await startSimulator({ seed: 7, clock, ...opts });
  return Object.assign(sim, { clock });
}

export function restClient(sim: Simulator, extra: Record<string, unknown> = {}, network: Record<string, unknown> = {}): RestClientV5 {
  return new RestClientV5({ key: KEY, secret: SECRET, baseUrl: sim.restUrl, parseAPIRateLimits: true, ...extra }, network);
}

export async function waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface WsMessage {
  topic: string;
  id?: string;
  creationTime?: number;
  type?: string;
  ts?: number;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  wsKey?: string;
}

/** A bybit-api WebsocketClient with every update, response and exception recorded. */
export class WsRecorder {
  readonly updates: WsMessage[] = [];
  readonly responses: Array<Record<string, unknown>> = [];
  readonly exceptions: unknown[] = [];
  reconnected = 0;
  authenticated = 0;
  readonly client: WebsocketClient;

  readonly authEvents: Array<Record<string, unknown>> = [];

  constructor(sim: Simulator, opts: { key?: string; secret?: string; wsUrl?: string } = {}) {
    this.client = new WebsocketClient({ key: opts.key ?? KEY, secret: opts.secret ?? SECRET, wsUrl: opts.wsUrl ?? sim.wsUrl, market: 'v5' }, quietLogger);
    this.client.on('update', (m: WsMessage) => this.updates.push(m));
    this.client.on('response', (m: Record<string, unknown>) => this.responses.push(m));
    this.client.on('exception', (m: unknown) => this.exceptions.push(m));
    this.client.on('reconnected', () => this.reconnected++);
    this.client.on('authenticated', (m: Record<string, unknown>) => {
      this.authenticated++;
      this.authEvents.push(m);
    });
  }

  /** Subscribe and wait for the exchange to confirm. */
  async subscribe(topics: string[], category: 'spot' | 'linear', isPrivate = false): Promise<void> {
    const before = this.responses.filter((r) => r.op === 'subscribe' && r.success === true).length;
    this.client.subscribeV5(topics, category, isPrivate);
    await waitFor(() => this.responses.filter((r) => r.op === 'subscribe' && r.success === true).length > before, `subscription to ${topics.join(',')}`);
  }

  of(topic: string): WsMessage[] {
    return this.updates.filter((u) => u.topic === topic);
  }

  /** Data items of a topic, flattened. */
  items(topic: string): any[] { // eslint-disable-line @typescript-eslint/no-explicit-any
    return this.of(topic).flatMap((m) => (Array.isArray(m.data) ? m.data : [m.data]));
  }

  close(): void {
    this.client.closeAll(true);
  }
}

export const PRIVATE_TOPICS = ['order', 'execution', 'position', 'wallet'];
