-- 007_order_events.sql: the order events the tracking stage emitted, for replays and inspection.
--
-- The tracking stage (pipelines/track.ts) applies exchange facts to `orders` and emits one
-- OrderEvent per state change. Its persist runs before the Kafka commit, so after a crash in
-- between the same input records come back while `orders` already holds their effects: the stage
-- then re-emits exactly the events recorded here for those records (source_record) instead of
-- applying them again. The newest row per order is also the tracker's own view of the order's
-- status and event sequence.
-- Conventions: see the header of 001_orders.sql.
CREATE TABLE order_events (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id      text NOT NULL UNIQUE,
  order_row_id  bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  order_link_id text,
  order_id      text,
  sequence      integer NOT NULL CHECK (sequence >= 1),
  event_type    text NOT NULL,
  status        text NOT NULL,
  cause         text NOT NULL,
  cause_id      text,
  source_record text NOT NULL,
  occurred_at   bigint NOT NULL,
  payload       jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (order_row_id, sequence)
);
COMMENT ON TABLE order_events IS 'Every OrderEvent the tracking stage emitted (payload = the event as published), one per order state change; unique by event_id and by (order, sequence).';
COMMENT ON COLUMN order_events.source_record IS 'Kafka record (topic/partition/offset) the event was derived from: a replay of that record re-emits these events verbatim.';
COMMENT ON COLUMN order_events.cause_id IS 'intent_id of a submission, execId of an execution, or Bybit message id of an order update.';
COMMENT ON COLUMN order_events.occurred_at IS 'Epoch ms of the fact (for a pending amend/cancel: when it was sent).';
CREATE INDEX order_events_source_idx ON order_events (source_record);

-- invalid_transitions rows are written once per refused fact: the tracker checks event_id (the
-- source record) before inserting, so a replayed chunk does not add them again.
CREATE INDEX invalid_transitions_event_idx ON invalid_transitions (event_id) WHERE event_id IS NOT NULL;
