-- The Kafka record each signal outcome was decided from, so the validation stage can tell a replay
-- (the same record read again after a crash before the Kafka commit: emit again) from a duplicate
-- (another record with the same signal_id: recorded, never a second order).
ALTER TABLE signals ADD COLUMN source_record text;
COMMENT ON COLUMN signals.source_record IS 'Kafka record (topic/partition/offset of signals.raw) the validation stage recorded this outcome from. The same record read again after a crash before the Kafka commit is a replay (emitted again); another record with this signal_id is a duplicate.';
