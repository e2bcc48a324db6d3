// The unified account's margin mode (POST /v5/account/set-margin-mode, GET /v5/account/info):
// REGULAR_MARGIN (cross, the default), ISOLATED_MARGIN or PORTFOLIO_MARGIN for the whole account.
// A refused switch answers 3400045 "Set margin mode failed" with its reasons in result.reasons, as
// the documentation's example does; the simulator knows one reason: portfolio margin needs an
// equity of at least 1000 USD (reasonCode 3400000). What the mode changes here: it is reported by
// account/info, and in isolated margin the two sides of a hedge-mode symbol may have different
// leverage (set-leverage). Margin figures are computed the same way in every mode.
// https://bybit-exchange.github.io/docs/v5/account/set-margin-mode
import type { MarginMode } from './accounts.ts';
import { paramsError, RetCode, SimError } from './errors.ts';
import type { Exchange } from './exchange.ts';

export const MARGIN_MODES: readonly MarginMode[] = ['ISOLATED_MARGIN', 'REGULAR_MARGIN', 'PORTFOLIO_MARGIN'];
/** Portfolio margin's entry condition, in USD of equity. */
export const PORTFOLIO_MIN_EQUITY = 1000;

export function setMarginMode(ex: Exchange, uid: string, p: Record<string, unknown>): { reasons: Array<{ reasonCode: string; reasonMsg: string }> } {
  const mode = p.setMarginMode;
  if (!MARGIN_MODES.includes(mode as MarginMode)) throw paramsError(`setMarginMode must be one of ${MARGIN_MODES.join(', ')}`);
  const acc = ex.account(uid);
  const reasons: Array<{ reasonCode: string; reasonMsg: string }> = [];
  if (mode === 'PORTFOLIO_MARGIN') {
    const w = ex.wallet(uid);
    if (w.totalWallet + w.totalUpl < PORTFOLIO_MIN_EQUITY) reasons.push({ reasonCode: '3400000', reasonMsg: `Equity needs to be equal to or greater than ${PORTFOLIO_MIN_EQUITY} USDC` });
  }
  if (reasons.length) throw new SimError(RetCode.SET_MARGIN_MODE_FAILED, 'Set margin mode failed', { reasons });
  if (acc.marginMode !== mode) {
    acc.marginMode = mode as MarginMode;
    acc.updatedTime = ex.now();
    ex.apply((t) => t.wallet(uid)); // an account change: saved like the others
  }
  return { reasons };
}

/** GET /v5/account/info. `openedAt`: when the account was opened, its updatedTime until a setting changes. */
export function accountInfo(ex: Exchange, uid: string, openedAt: number): Record<string, unknown> {
  const acc = ex.account(uid);
  return {
    unifiedMarginStatus: 5, // unified trading account 2.0
    marginMode: acc.marginMode,
    isMasterTrader: false,
    spotHedgingStatus: 'OFF',
    updatedTime: String(acc.updatedTime || openedAt),
    dcpStatus: 'OFF', // deprecated by Bybit: always OFF and 0
    timeWindow: 0,
    smpGroup: 0,
  };
}
