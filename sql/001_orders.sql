-- 001_orders.sql: the order manager's own records.
--
-- signals (every signal seen, with its single outcome), orders (the exact local state of every
-- order, ours or adopted from the exchange), order_state_history (every applied transition),
-- invalid_transitions (refused ones, kept for inspection), executions (fills, unique by execId) and
-- decisions (the audit of every create / amend / cancel / reject decision of the risk stage).
--
-- Conventions for every migration in sql/:
--   * money, prices and quantities are numeric (exact; read back as decimal strings by runtime/db.ts);
--   * wall-clock times are timestamptz; exchange times that order updates are kept as Bybit's epoch
--     milliseconds in bigint columns named *_ms;
--   * Bybit enums keep Bybit's spelling (Buy/Sell, Market/Limit, New/Filled, ...);
--   * no foreign keys between tables written by different pipeline stages: stages run concurrently
--     and a fill may arrive before the submission is recorded. Keys and indexes instead.
-- Applied by runtime/migrate.ts in one transaction; never edit an applied file, add a new one.

CREATE TABLE signals (
  signal_id        uuid PRIMARY KEY,
  status           text NOT NULL DEFAULT 'received'
                   CHECK (status IN ('received', 'valid', 'rejected', 'decided')),
  outcome          text CHECK (outcome IN ('create', 'amend', 'cancel', 'rejected')),
  outcome_reason   text,
  outcome_at       timestamptz,
  strategy_id      text,
  model_version    text,
  is_warmup        boolean,
  confidence       numeric CHECK (confidence >= 0 AND confidence <= 1),
  asset            text,
  side             text CHECK (side IN ('buy', 'sell')),
  amount           numeric CHECK (amount > 0),
  snapshot_price   numeric CHECK (snapshot_price > 0),
  signal_ts        timestamptz,
  trace_id         text,
  payload          jsonb NOT NULL,
  received_at      timestamptz NOT NULL DEFAULT now(),
  duplicate_count  integer NOT NULL DEFAULT 0 CHECK (duplicate_count >= 0),
  last_duplicate_at timestamptz,
  CHECK ((outcome IS NULL) = (outcome_at IS NULL)),
  CHECK (outcome IS DISTINCT FROM 'rejected' OR outcome_reason IS NOT NULL)
);
COMMENT ON TABLE signals IS 'Every trading signal received (valid or not, once its signal_id is known), with exactly one final outcome. The primary key on signal_id makes a repeated signal "already done" (counted in duplicate_count).';
COMMENT ON COLUMN signals.payload IS 'The signal as received (parsed JSON), including market_data_snapshot and metadata.';
COMMENT ON COLUMN signals.outcome IS 'Final result: create/amend/cancel (an order action was decided) or rejected (outcome_reason holds the machine-readable reason code).';
COMMENT ON COLUMN signals.side IS 'signal_type of the signal (the alias "signal" is normalised to it).';
COMMENT ON COLUMN signals.amount IS 'Order size in quote currency, as requested by the signal.';
COMMENT ON COLUMN signals.snapshot_price IS 'market_data_snapshot.price at signal time; the reference for slippage.';
CREATE INDEX signals_asset_received_idx ON signals (asset, received_at);
CREATE INDEX signals_strategy_received_idx ON signals (strategy_id, received_at);
CREATE INDEX signals_open_idx ON signals (received_at) WHERE outcome IS NULL;

CREATE TABLE orders (
  id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_link_id           text UNIQUE
                          CHECK (char_length(order_link_id) BETWEEN 1 AND 36 AND order_link_id ~ '^[A-Za-z0-9_-]+$'),
  order_id                text,
  signal_id               uuid,
  decision_id             bigint,
  strategy_id             text,
  category                text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol                  text NOT NULL,
  side                    text NOT NULL CHECK (side IN ('Buy', 'Sell')),
  order_type              text NOT NULL CHECK (order_type IN ('Market', 'Limit')),
  time_in_force           text CHECK (time_in_force IN ('GTC', 'IOC', 'FOK', 'PostOnly')),
  market_unit             text CHECK (market_unit IN ('baseCoin', 'quoteCoin')),
  reduce_only             boolean NOT NULL DEFAULT false,
  qty                     numeric NOT NULL CHECK (qty > 0),
  price                   numeric CHECK (price > 0),
  trigger_price           numeric CHECK (trigger_price > 0),
  status                  text NOT NULL CHECK (status IN (
                            -- Bybit v5 orderStatus values
                            'New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled',
                            'Rejected', 'Untriggered', 'Triggered', 'Deactivated',
                            -- local states, before / while the exchange answers
                            'Intent', 'Submitted', 'PendingAmend', 'PendingCancel', 'Unknown')),
  cum_exec_qty            numeric NOT NULL DEFAULT 0 CHECK (cum_exec_qty >= 0),
  cum_exec_value          numeric NOT NULL DEFAULT 0 CHECK (cum_exec_value >= 0),
  cum_exec_fee            numeric NOT NULL DEFAULT 0,
  avg_price               numeric CHECK (avg_price > 0),
  leaves_qty              numeric CHECK (leaves_qty >= 0),
  external                boolean NOT NULL DEFAULT false,
  last_exchange_update_ms bigint,
  expires_at              timestamptz,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now(),
  submitted_at            timestamptz,
  acknowledged_at         timestamptz,
  first_fill_at           timestamptz,
  final_at                timestamptz,
  reject_ret_code         integer,
  reject_reason           text,
  context                 jsonb NOT NULL DEFAULT '{}'::jsonb,
  CHECK (order_link_id IS NOT NULL OR (external AND order_id IS NOT NULL)),
  CHECK (order_type <> 'Limit' OR price IS NOT NULL)
);
COMMENT ON TABLE orders IS 'Exact local state of every order: placed by us (keyed by order_link_id) or adopted from the exchange (external). Changed only through the order state machine; each change is in order_state_history.';
COMMENT ON COLUMN orders.order_link_id IS 'Bybit orderLinkId: deterministic per intent, at most 36 chars of [A-Za-z0-9_-]. NULL only for external orders placed without one.';
COMMENT ON COLUMN orders.order_id IS 'Bybit orderId, known once the exchange acknowledged the order; unique when set.';
COMMENT ON COLUMN orders.qty IS 'Order quantity in base coin, or in quote coin when market_unit = quoteCoin (spot market buys sized in quote).';
COMMENT ON COLUMN orders.status IS 'Bybit orderStatus, or a local in-flight state: Intent (decided, not sent), Submitted (sent, no answer yet), PendingAmend, PendingCancel, Unknown (outcome uncertain, to be resolved by query).';
COMMENT ON COLUMN orders.last_exchange_update_ms IS 'Bybit updatedTime (ms) of the newest exchange update applied; older updates must not undo newer state.';
COMMENT ON COLUMN orders.external IS 'true when the order was found at the exchange (reconciler) rather than placed by this system.';
COMMENT ON COLUMN orders.context IS 'Signal context carried into order events: signal_id, strategy_id, model_version, is_warmup, confidence, trace_id, snapshot price.';
COMMENT ON COLUMN orders.expires_at IS 'For limit orders with a time-to-live: when the order manager cancels it if still open.';
CREATE UNIQUE INDEX orders_order_id_key ON orders (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX orders_signal_idx ON orders (signal_id) WHERE signal_id IS NOT NULL;
CREATE INDEX orders_open_idx ON orders (category, symbol, strategy_id, side)
  WHERE status IN ('Intent', 'Submitted', 'New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingAmend', 'PendingCancel', 'Unknown');
CREATE INDEX orders_updated_idx ON orders (updated_at);

CREATE TABLE order_state_history (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_row_id       bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  order_link_id      text,
  order_id           text,
  from_status        text,
  to_status          text NOT NULL,
  cause              text NOT NULL,
  event_id           text,
  exchange_update_ms bigint,
  details            jsonb NOT NULL DEFAULT '{}'::jsonb,
  at                 timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE order_state_history IS 'Every applied order state transition (from_status NULL at creation), with its cause (submission, ws_order, execution, reconcile, amend, cancel, ...) and the id of the event that caused it.';
COMMENT ON COLUMN order_state_history.event_id IS 'Id of the causing event (e.g. Kafka topic/partition/offset or ws message id); unique per order and target status, so a replayed event is "already done".';
CREATE INDEX order_state_history_order_idx ON order_state_history (order_row_id, id);
CREATE UNIQUE INDEX order_state_history_event_key ON order_state_history (order_row_id, event_id, to_status) WHERE event_id IS NOT NULL;

CREATE TABLE invalid_transitions (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_row_id  bigint,
  order_link_id text,
  order_id      text,
  from_status   text,
  to_status     text,
  cause         text NOT NULL,
  event_id      text,
  reason        text NOT NULL,
  payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
  at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE invalid_transitions IS 'Order updates the state machine refused (not in the transition table, or older than the applied state). Kept for inspection, never applied.';
CREATE INDEX invalid_transitions_at_idx ON invalid_transitions (at);
CREATE INDEX invalid_transitions_order_idx ON invalid_transitions (order_link_id, order_id);

CREATE TABLE executions (
  exec_id       text PRIMARY KEY,
  order_link_id text,
  order_id      text NOT NULL,
  category      text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol        text NOT NULL,
  side          text NOT NULL CHECK (side IN ('Buy', 'Sell')),
  exec_type     text NOT NULL DEFAULT 'Trade',
  exec_qty      numeric NOT NULL CHECK (exec_qty >= 0),
  exec_price    numeric NOT NULL CHECK (exec_price >= 0),
  exec_value    numeric,
  exec_fee      numeric NOT NULL DEFAULT 0,
  fee_currency  text,
  is_maker      boolean,
  exec_time     timestamptz NOT NULL,
  seq           bigint,
  source        text NOT NULL DEFAULT 'ws' CHECK (source IN ('ws', 'rest', 'reconcile')),
  raw           jsonb,
  received_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE executions IS 'Fills reported by Bybit, one row per execId: a duplicate execId is "already done", so a fill is never counted twice.';
COMMENT ON COLUMN executions.exec_fee IS 'Fee of this fill in fee_currency (negative for a maker rebate).';
CREATE INDEX executions_order_id_idx ON executions (order_id);
CREATE INDEX executions_order_link_id_idx ON executions (order_link_id) WHERE order_link_id IS NOT NULL;
CREATE INDEX executions_symbol_time_idx ON executions (symbol, exec_time);

CREATE TABLE decisions (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key text UNIQUE,
  signal_id       uuid,
  order_link_id   text,
  action          text NOT NULL CHECK (action IN ('create', 'amend', 'cancel', 'reject')),
  reason          text NOT NULL,
  trading_state   text CHECK (trading_state IN ('ACTIVE', 'REDUCING', 'HALTED')),
  inputs          jsonb NOT NULL DEFAULT '{}'::jsonb,
  output          jsonb NOT NULL DEFAULT '{}'::jsonb,
  at              timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE decisions IS 'Audit of every risk / sizing decision: the action, its machine-readable reason code, every input it was taken from (balances, positions, open orders, filters, prices, settings) and its output (the intent or the rejection).';
COMMENT ON COLUMN decisions.idempotency_key IS 'Deterministic key (e.g. signal_id:n) so a replayed signal does not audit its decision twice.';
CREATE INDEX decisions_signal_idx ON decisions (signal_id);
CREATE INDEX decisions_at_idx ON decisions (at);
CREATE INDEX decisions_action_at_idx ON decisions (action, at);
