-- 011_ticker_book_ts.sql: the exchange time of a ticker's best bid / ask, which can be older than the
-- row's own time. Additive only.
--
-- `tickers` is the tracking stage's projection of market.tickers (REST snapshots published by
-- exchange sync, and the websocket). Bybit's spot ticker stream carries no bid1/ask1: a newer spot
-- tick updates last price and ts but keeps the bid / ask an earlier record brought. The risk stage
-- judges the row's freshness by ts; book_ts lets it judge the bid / ask by their own age, so a fresh
-- spot tick cannot pass off a stale book as fresh.
-- Conventions: see the header of 001_orders.sql.
ALTER TABLE tickers ADD COLUMN book_ts timestamptz;
-- Rows written before this migration had their bid / ask from the same record as the rest.
UPDATE tickers SET book_ts = ts WHERE bid IS NOT NULL OR ask IS NOT NULL;
COMMENT ON COLUMN tickers.book_ts IS 'Exchange time of bid / ask (the record that brought them; <= ts); NULL when there are none.';
COMMENT ON TABLE tickers IS 'Latest ticker per (category, symbol), projected by the tracking stage from market.tickers (websocket and exchange sync''s REST snapshots); ts is the exchange time of the tick (applied only when newer), book_ts that of bid / ask. The best available price for sizing.';
