// Test fixtures for the model service: a market session on the exchange simulator (its planted
// momentum pattern or a pure random walk, manual clock, fixed seed) with the warm-up emitter
// trading every step and the order manager's answers synthesised from the simulator's book
// (fills at the touch with the linear taker fee, some signals rejected), as the records the
// window builder reads from the three topics. The session itself is stack/model-session.ts (the
// regime study runs it too); these are the tests' settings of it.
import { parseModelConfig, type ModelConfig } from '../../model/config.ts';
import { simulateSession as simulateStackSession, SESSION_T0, SESSION_TOPICS, type Session } from '../../stack/model-session.ts';

export { answer, orderEvent, tickerRecord, type Session } from '../../stack/model-session.ts';
export const T0 = SESSION_T0;
export const TOPICS = SESSION_TOPICS;

export function testModelConfig(over: Record<string, string> = {}): ModelConfig {
  return parseModelConfig({
    MODEL_ASSETS: 'BTCUSDT,ETHUSDT',
    MODEL_HORIZON_MS: '1000',
    MODEL_ALLOWED_LATENESS_MS: '500',
    MODEL_ORDER_EVENTS_MAX_WAIT_MS: '2000',
    WARMUP_INTERVAL_MS: '1000',
    MODEL_SIGNAL_INTERVAL_MS: '1000',
    WARMUP_DURATION_MS: '0',
    ...over,
  });
}

/**
 * Run the simulator `steps` price steps (1 s each); the warm-up emitter trades each asset every step.
 * `volatility` / `momentum`: the simulator's PriceProcess options (default 1 bp per step, AR 0.6).
 * Inputs are in arrival order: each step's tickers, then its signals, then their order events.
 */
export async function simulateSession(opts: { mode: 'pattern' | 'random-walk'; seed: number; steps: number; cfg?: ModelConfig; rejectEvery?: number; volatility?: number; momentum?: number }): Promise<Session> {
  return simulateStackSession({
    seed: opts.seed,
    steps: opts.steps,
    cfg: opts.cfg ?? testModelConfig(),
    rejectEvery: opts.rejectEvery,
    priceProcess: { mode: opts.mode, stepMs: 1000, historyMinutes: 1, volatility: opts.volatility, momentum: opts.momentum },
  });
}
