// The account's trading state: ACTIVE → REDUCING → HALTED, and the kill switch. Pure: no I/O, no
// clock of its own. The risk stage evaluates it before every chunk of signals (and records any
// change in trading_state / trading_state_transitions); the kill-switch command and an operator's
// resume use the same transition table, so nobody moves the state any other way (house style 5).
//
//   ACTIVE    every order the risk rules allow
//   REDUCING  only risk-reducing orders (spot sells of holdings, reduce-only linear orders) and cancels
//   HALTED    nothing but cancels
//
// Automatic moves only escalate: the day's loss (pipelines/pnl.ts dayPnl: the UTC day's realised P&L
// after fees and funding, plus the open positions' unrealised loss) reaching the reduce limit moves
// ACTIVE → REDUCING, reaching the halt limit moves to HALTED; the kill switch forces HALTED. The way
// back is a new UTC day after the one the state was entered on (only for a state the loss limit
// caused) or an operator's resume (kill switch off first). Any move that is not in the
// table is an InvalidStateTransition.

export type TradingStateName = 'ACTIVE' | 'REDUCING' | 'HALTED';

export type TransitionCause =
  | 'daily_loss_reduce' // the day's loss reached the reduce limit
  | 'daily_loss_halt' // the day's loss reached the halt limit
  | 'kill_switch' // the kill switch was switched on
  | 'new_trading_day' // a state caused by the loss limit ends with its UTC day
  | 'manual_reduce' // operator: reduce only
  | 'manual_halt' // operator: halt
  | 'manual_resume' // operator: back to ACTIVE (the kill switch must be off)
  | 'state_conflict'; // a placed order or an exchange fact could not be recorded (pipelines/runner.ts)

/** The exhaustive transition table: from → cause → to. */
export const TRANSITIONS: Readonly<Record<TradingStateName, Readonly<Partial<Record<TransitionCause, TradingStateName>>>>> = Object.freeze({
  ACTIVE: { daily_loss_reduce: 'REDUCING', daily_loss_halt: 'HALTED', kill_switch: 'HALTED', manual_reduce: 'REDUCING', manual_halt: 'HALTED', state_conflict: 'HALTED' },
  REDUCING: { daily_loss_halt: 'HALTED', kill_switch: 'HALTED', manual_halt: 'HALTED', new_trading_day: 'ACTIVE', manual_resume: 'ACTIVE', state_conflict: 'HALTED' },
  HALTED: { kill_switch: 'HALTED', new_trading_day: 'ACTIVE', manual_resume: 'ACTIVE', manual_reduce: 'REDUCING', state_conflict: 'HALTED' },
});

export class InvalidStateTransition extends Error {
  constructor(readonly from: TradingStateName, readonly transitionCause: TransitionCause, detail = '') {
    super(`invalid trading state transition: ${transitionCause} from ${from}${detail ? ` (${detail})` : ''}`);
    this.name = 'InvalidStateTransition';
  }
}

/** The state `cause` moves `from` to; throws InvalidStateTransition when the table has no such move. */
export function transition(from: TradingStateName, cause: TransitionCause): TradingStateName {
  const to = TRANSITIONS[from][cause];
  if (!to) throw new InvalidStateTransition(from, cause);
  return to;
}

export type OrderKind = 'increase' | 'reduce' | 'cancel';

/** What a trading state lets through. */
export function permits(state: TradingStateName, kind: OrderKind): boolean {
  if (kind === 'cancel') return true;
  if (state === 'ACTIVE') return true;
  if (state === 'REDUCING') return kind === 'reduce';
  return false;
}

/** The trading_state row as the risk stage reads it (decimals as strings, day as YYYY-MM-DD). */
export interface TradingStateRow {
  state: TradingStateName;
  killSwitch: boolean;
  reason: string | null;
  /** UTC day (YYYY-MM-DD) the state was last moved on (trading_state.updated_at). */
  stateDay: string;
  /** Today's P&L in the quote coin (pipelines/pnl.ts dayPnl); a loss is negative. */
  dayPnl: string;
}

export interface LossLimits {
  /** Loss (positive quote amount) at which ACTIVE becomes REDUCING; 0 = no such limit. */
  reduceAt: number;
  /** Loss at which the state becomes HALTED; 0 = no such limit. */
  haltAt: number;
}

export interface Evaluated {
  state: TradingStateName;
  killSwitch: boolean;
  reason: string | null;
  /** The day's loss the evaluation used (0 when the day's P&L is not a loss). */
  dayLoss: number;
  /** Set when the evaluation moved the state: what to record in trading_state_transitions. */
  change: { from: TradingStateName; to: TradingStateName; cause: TransitionCause } | null;
}

export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

const RANK: Record<TradingStateName, number> = { ACTIVE: 0, REDUCING: 1, HALTED: 2 };

/**
 * Where the state should be now. Pure: `now` decides the UTC day. PnL is compared as a number
 * (money thresholds in whole quote units; the float error of a sum of a day's PnL is far below a
 * cent, and the limit is a guard, not a ledger).
 */
export function evaluate(row: TradingStateRow, limits: LossLimits, now: number): Evaluated {
  const today = utcDay(now);
  const pnl = Number(row.dayPnl);
  const dayLoss = Number.isFinite(pnl) && pnl < 0 ? -pnl : 0;
  const keep: Evaluated = { state: row.state, killSwitch: row.killSwitch, reason: row.reason, dayLoss, change: null };
  const move = (cause: TransitionCause, reason: string): Evaluated => {
    const to = transition(row.state, cause);
    return { state: to, killSwitch: row.killSwitch, reason, dayLoss, change: { from: row.state, to, cause } };
  };

  if (row.killSwitch) return row.state === 'HALTED' ? keep : move('kill_switch', 'kill_switch');

  let desired: TradingStateName = 'ACTIVE';
  if (limits.haltAt > 0 && dayLoss >= limits.haltAt) desired = 'HALTED';
  else if (limits.reduceAt > 0 && dayLoss >= limits.reduceAt) desired = 'REDUCING';

  if (RANK[desired] > RANK[row.state]) {
    return desired === 'HALTED'
      ? move('daily_loss_halt', `daily_loss_halt: day loss ${dayLoss} >= ${limits.haltAt}`)
      : move('daily_loss_reduce', `daily_loss_reduce: day loss ${dayLoss} >= ${limits.reduceAt}`);
  }
  // A state the loss limit caused lasts for its trading day only; kill switch and operator states
  // stay until an operator resumes.
  if (row.state !== 'ACTIVE' && row.stateDay !== today && (row.reason ?? '').startsWith('daily_loss') && desired === 'ACTIVE') {
    return move('new_trading_day', `new_trading_day: ${row.stateDay} -> ${today}`);
  }
  return keep;
}

/** The kill switch (for the kill-switch command): on forces HALTED; off needs an operator resume. */
export function setKillSwitch(row: Pick<TradingStateRow, 'state' | 'killSwitch'>, on: boolean): { state: TradingStateName; killSwitch: boolean; change: Evaluated['change'] } {
  if (on) {
    const to = transition(row.state, 'kill_switch');
    return { state: to, killSwitch: true, change: row.state === to && row.killSwitch ? null : { from: row.state, to, cause: 'kill_switch' } };
  }
  // Switching it off does not resume trading by itself: the state stays HALTED until manual_resume.
  return { state: row.state, killSwitch: false, change: null };
}

/** Operator resume: refused while the kill switch is on. */
export function resume(row: Pick<TradingStateRow, 'state' | 'killSwitch'>): TradingStateName {
  if (row.killSwitch) throw new InvalidStateTransition(row.state, 'manual_resume', 'kill switch is on');
  return row.state === 'ACTIVE' ? 'ACTIVE' : transition(row.state, 'manual_resume');
}
