-- 009_reconcile_runs.sql: every reconciliation run of the order manager's reconciler.
--
-- The reconciler (connectors/reconciler.ts) compares Bybit REST with PostgreSQL at start, on its
-- node-cron schedule and on demand (admin endpoint, `npm run cli -- reconcile`) and writes its
-- corrections into the exchange topics; it never writes `orders`. What it found and emitted is kept
-- here so an operator (`npm run cli -- status`) sees the last run from any process.
-- Conventions: see the header of 001_orders.sql.
CREATE TABLE reconcile_runs (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  trigger       text NOT NULL CHECK (trigger IN ('startup', 'schedule', 'admin', 'cli', 'manual')),
  started_at    timestamptz NOT NULL,
  finished_at   timestamptz NOT NULL,
  ok            boolean NOT NULL,
  error         text,
  checked       jsonb NOT NULL DEFAULT '{}'::jsonb,
  discrepancies jsonb NOT NULL DEFAULT '{}'::jsonb,
  corrections   jsonb NOT NULL DEFAULT '{}'::jsonb,
  details       jsonb NOT NULL DEFAULT '[]'::jsonb,
  CHECK (finished_at >= started_at),
  CHECK (ok OR error IS NOT NULL)
);
COMMENT ON TABLE reconcile_runs IS 'One row per reconciliation run: what was checked, the discrepancies found by kind, the corrections written to the exchange topics (exchange.orders, exchange.executions, exchange.positions, exchange.wallet with source reconciler).';
COMMENT ON COLUMN reconcile_runs.details IS 'The first discrepancies of the run (kind, order ids, local and exchange status), for inspection; capped.';
CREATE INDEX reconcile_runs_started_idx ON reconcile_runs (started_at);
