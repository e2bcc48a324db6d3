-- 010_stage_conflicts.sql: records a stage could not apply to the state it keeps.
--
-- A record whose effects conflict with stored state (a unique key another row holds, a value
-- PostgreSQL refuses, an output larger than the broker takes) fails the same way on every retry and
-- after every restart. The stage runner (pipelines/runner.ts, the only writer) dead-letters it and
-- keeps one row here, so the conflict is visible from any process (`npm run cli -- status`) and the
-- partition goes on. `action` says what else happened: 'dead_letter' only, or 'halt' (trading moved to
-- HALTED, for the stages whose conflicts leave PostgreSQL and the exchange disagreeing).
-- Conventions: see the header of 001_orders.sql.
CREATE TABLE stage_conflicts (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stage         text NOT NULL,
  group_id      text NOT NULL,
  source        text NOT NULL,
  record_key    text,
  reason        text NOT NULL,
  action        text NOT NULL CHECK (action IN ('dead_letter', 'halt')),
  pg_code       text,
  constraint_name text,
  detail        text NOT NULL,
  at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (group_id, source)
);
COMMENT ON TABLE stage_conflicts IS 'One row per input record a stage dead-lettered because its effects could not be stored (state_conflict, invalid_record, record_too_large); source is topic/partition/offset, unique per consumer group so a replay records it once.';
CREATE INDEX stage_conflicts_at_idx ON stage_conflicts (at);

-- Trading halts on such a conflict with its own reason in trading_state_transitions; no new column.
