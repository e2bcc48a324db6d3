-- 012_pnl.sql: profit and loss books, as the exchange counts them (pipelines/pnl.ts has the rules).
--
-- The tracking stage is the only writer: it books every new execution in the same transaction that
-- stores it, so a fill is booked exactly once (a replayed chunk finds its executions stored and books
-- nothing). A database upgraded from a release without these tables starts with empty books; the
-- tracking stage rebuilds them from the stored executions at its start (pipelines/pnl-sql.ts
-- rebuildBooks), before it consumes anything.
-- Conventions: see the header of 001_orders.sql.
CREATE TABLE pnl_books (
  category     text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol       text NOT NULL,
  strategy_id  text NOT NULL,
  qty          numeric NOT NULL,
  avg_entry    numeric NOT NULL,
  realised     numeric NOT NULL,
  fees         numeric NOT NULL,
  funding      numeric NOT NULL,
  version      bigint NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (category, symbol, strategy_id)
);
COMMENT ON TABLE pnl_books IS 'One average-cost book per (category, symbol, strategy): position (linear, signed) or holding bought by this system (spot), average entry, realised P&L before fees and funding, fees and funding, all in the quote coin. strategy_id is the order''s strategy, ''external'' for adopted orders, ''unattributed'' for fills of orders with no known strategy.';
COMMENT ON COLUMN pnl_books.version IS 'Incremented by every write; a writer that loaded another version retries (two trackers during a rebalance).';

CREATE TABLE pnl_days (
  day          date NOT NULL,
  category     text NOT NULL CHECK (category IN ('spot', 'linear')),
  symbol       text NOT NULL,
  strategy_id  text NOT NULL,
  realised     numeric NOT NULL DEFAULT 0,
  fees         numeric NOT NULL DEFAULT 0,
  funding      numeric NOT NULL DEFAULT 0,
  fills        integer NOT NULL DEFAULT 0,
  PRIMARY KEY (day, category, symbol, strategy_id)
);
COMMENT ON TABLE pnl_days IS 'What each UTC day''s executions booked (by execution time): realised before fees, fees, funding, quote coin. The daily loss limit reads the current day''s sum.';

-- The daily loss limit now reads the books (pnl_days for the day's net realised P&L, pnl_books at
-- the latest prices for the open positions' unrealised P&L). These columns were never written by a
-- release (only by tests), so the limit never saw a loss: they go, rather than stay as a second,
-- wrong source of the same figure.
ALTER TABLE trading_state DROP COLUMN trading_day, DROP COLUMN day_realised_pnl, DROP COLUMN day_fees, DROP COLUMN day_start_equity;
COMMENT ON TABLE trading_state IS 'Singleton row (id = true): ACTIVE trades normally, REDUCING allows only risk-reducing orders, HALTED nothing but cancels. The kill switch forces HALTED. The daily loss limit reads the P&L books (pnl_days, pnl_books); a state it caused ends with the UTC day of updated_at.';
