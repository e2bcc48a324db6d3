-- 008_model_samples_outcome.sql: what the model service needs beyond 003 to evaluate and replay
-- training samples: the market return over the horizon (the held-out simulated PnL of a candidate
-- that would have taken another side needs it), the signal's confidence, and the outcome details
-- (reference and horizon prices, fill, slippage, rejection reason). Additive only.
ALTER TABLE training_samples
  ADD COLUMN market_return_bps double precision,
  ADD COLUMN confidence        double precision,
  ADD COLUMN details           jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN training_samples.market_return_bps IS 'Market log return from the reference price at signal time to the price at signal time + horizon, bps.';
COMMENT ON COLUMN training_samples.details IS 'Outcome details: price_ref, price_horizon, reason_code, slippage_bps, filled_qty, avg_fill_price, amount.';
