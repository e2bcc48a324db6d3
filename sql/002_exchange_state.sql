-- 002_exchange_state.sql: what the order manager knows about the account and the market, and its
-- own trading state.
--
-- positions, balances, instruments and tickers are caches of the exchange's state, kept fresh from
-- the exchange streams (ws-gateway) and repaired by the reconciler; each row keeps the exchange time
-- of the update it holds (*_ms) so an older message never overwrites a newer one. trading_state is
-- the single row the risk stage reads before every decision (ACTIVE / REDUCING / HALTED, kill
-- switch, the day's realised PnL); trading_state_transitions logs its every change.
-- Conventions: see the header of 001_orders.sql.

CREATE TABLE positions (
  category         text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol           text NOT NULL,
  side             text NOT NULL DEFAULT '' CHECK (side IN ('Buy', 'Sell', '')),
  size             numeric NOT NULL DEFAULT 0 CHECK (size >= 0),
  avg_price        numeric,
  mark_price       numeric,
  position_value   numeric,
  leverage         numeric,
  liq_price        numeric,
  unrealised_pnl   numeric NOT NULL DEFAULT 0,
  realised_pnl     numeric NOT NULL DEFAULT 0,
  cum_realised_pnl numeric NOT NULL DEFAULT 0,
  updated_ms       bigint NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (category, symbol)
);
COMMENT ON TABLE positions IS 'Latest position per (category, symbol) from the exchange position stream and the reconciler. side is '''' when flat (Bybit''s spelling). Spot holdings are in balances.';
COMMENT ON COLUMN positions.updated_ms IS 'Bybit updatedTime (ms) of the applied update; apply an update only when newer.';

CREATE TABLE balances (
  coin           text PRIMARY KEY,
  wallet_balance numeric NOT NULL DEFAULT 0,
  available      numeric NOT NULL DEFAULT 0,
  locked         numeric NOT NULL DEFAULT 0,
  equity         numeric,
  usd_value      numeric,
  updated_ms     bigint NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE balances IS 'Latest wallet balance per coin (unified account) from the wallet stream and the reconciler.';
COMMENT ON COLUMN balances.available IS 'What new orders can use: wallet balance minus what open orders and positions hold.';
COMMENT ON COLUMN balances.locked IS 'Held by open orders.';

CREATE TABLE instruments (
  category             text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol               text NOT NULL,
  base_coin            text NOT NULL,
  quote_coin           text NOT NULL,
  status               text NOT NULL DEFAULT 'Trading',
  enabled              boolean NOT NULL DEFAULT true,
  tick_size            numeric NOT NULL CHECK (tick_size > 0),
  qty_step             numeric CHECK (qty_step > 0),
  base_precision       numeric CHECK (base_precision > 0),
  quote_precision      numeric CHECK (quote_precision > 0),
  min_order_qty        numeric NOT NULL DEFAULT 0 CHECK (min_order_qty >= 0),
  max_order_qty        numeric CHECK (max_order_qty > 0),
  max_market_order_qty numeric CHECK (max_market_order_qty > 0),
  min_order_amt        numeric CHECK (min_order_amt >= 0),
  max_order_amt        numeric CHECK (max_order_amt > 0),
  min_notional_value   numeric CHECK (min_notional_value >= 0),
  raw                  jsonb,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (category, symbol),
  CHECK (qty_step IS NOT NULL OR base_precision IS NOT NULL)
);
COMMENT ON TABLE instruments IS 'Bybit instrument filters used to round and bound orders (from /v5/market/instruments-info). enabled = false takes an asset out of trading without deleting its filters.';
COMMENT ON COLUMN instruments.qty_step IS 'Quantity step (linear lotSizeFilter.qtyStep).';
COMMENT ON COLUMN instruments.base_precision IS 'Quantity step in base coin (spot lotSizeFilter.basePrecision).';
COMMENT ON COLUMN instruments.quote_precision IS 'Amount step in quote coin (spot lotSizeFilter.quotePrecision), for quote-sized market buys.';
COMMENT ON COLUMN instruments.min_order_amt IS 'Minimum order value in quote coin (spot).';
COMMENT ON COLUMN instruments.min_notional_value IS 'Minimum order value in quote coin (linear).';
CREATE INDEX instruments_symbol_idx ON instruments (symbol);

CREATE TABLE tickers (
  category   text NOT NULL DEFAULT 'spot' CHECK (category IN ('spot', 'linear')),
  symbol     text NOT NULL,
  bid        numeric,
  ask        numeric,
  last       numeric,
  mark_price numeric,
  volume_24h numeric,
  turnover_24h numeric,
  ts         timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (category, symbol),
  CHECK (bid IS NULL OR ask IS NULL OR bid <= ask)
);
COMMENT ON TABLE tickers IS 'Latest ticker per (category, symbol) from the market ticker stream; ts is the exchange time of the tick (apply only when newer). The best available price for sizing.';

CREATE TABLE trading_state (
  id               boolean PRIMARY KEY DEFAULT true CHECK (id),
  state            text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'REDUCING', 'HALTED')),
  kill_switch      boolean NOT NULL DEFAULT false,
  reason           text,
  trading_day      date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
  day_realised_pnl numeric NOT NULL DEFAULT 0,
  day_fees         numeric NOT NULL DEFAULT 0,
  day_start_equity numeric,
  updated_by       text,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (NOT kill_switch OR state = 'HALTED')
);
COMMENT ON TABLE trading_state IS 'Singleton row (id = true): ACTIVE trades normally, REDUCING allows only risk-reducing orders, HALTED nothing but cancels. The kill switch forces HALTED. The day''s realised PnL and fees (UTC trading_day) drive the daily loss limit.';
COMMENT ON COLUMN trading_state.day_realised_pnl IS 'Realised PnL of trading_day in quote currency (USDT), net of fees; reset when the UTC day changes.';
INSERT INTO trading_state (id) VALUES (true);

CREATE TABLE trading_state_transitions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  from_state  text NOT NULL,
  to_state    text NOT NULL CHECK (to_state IN ('ACTIVE', 'REDUCING', 'HALTED')),
  kill_switch boolean NOT NULL,
  reason      text NOT NULL,
  actor       text,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb,
  at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trading_state_transitions IS 'Every change of trading_state: daily loss limit, kill switch, manual resume, with who or what caused it.';
CREATE INDEX trading_state_transitions_at_idx ON trading_state_transitions (at);
