-- 003_model.sql: the model service's records.
--
-- model_versions (every trained model: weights, feature spec, training range, held-out and live
-- metrics, lifecycle candidate -> active -> retired | rolled_back; at most one active),
-- training_samples (one labelled sample per signal, built from its order events and the price after
-- the horizon; unique per signal_id, so a replay of the same offsets is "already done"), and
-- model_mode_transitions (every warm-up <-> model switch, with its reason and the metrics behind it).
-- Conventions: see the header of 001_orders.sql. Model metrics are floats (double precision):
-- they are statistics, not money.

CREATE TABLE model_versions (
  version           text PRIMARY KEY,
  status            text NOT NULL DEFAULT 'candidate'
                    CHECK (status IN ('candidate', 'active', 'retired', 'rolled_back')),
  parent_version    text REFERENCES model_versions (version),
  topology          jsonb,
  weights           bytea NOT NULL,
  weight_specs      jsonb NOT NULL DEFAULT '[]'::jsonb,
  feature_spec      jsonb NOT NULL,
  train_from_offsets jsonb,
  train_to_offsets  jsonb,
  train_from_ts     timestamptz,
  train_to_ts       timestamptz,
  sample_count      integer NOT NULL DEFAULT 0 CHECK (sample_count >= 0),
  metrics           jsonb NOT NULL DEFAULT '{}'::jsonb,
  live_metrics      jsonb NOT NULL DEFAULT '{}'::jsonb,
  notes             text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  promoted_at       timestamptz,
  retired_at        timestamptz,
  CHECK (status <> 'active' OR promoted_at IS NOT NULL),
  CHECK (train_from_ts IS NULL OR train_to_ts IS NULL OR train_from_ts <= train_to_ts)
);
COMMENT ON TABLE model_versions IS 'Every trained model version with what is needed to reload and judge it. At most one row is active (unique partial index).';
COMMENT ON COLUMN model_versions.topology IS 'tf.js model topology (modelTopology of the saved model artifacts).';
COMMENT ON COLUMN model_versions.weights IS 'tf.js weight data (concatenated binary), described by weight_specs.';
COMMENT ON COLUMN model_versions.feature_spec IS 'Feature names, order, normalisation and horizon the model was trained with.';
COMMENT ON COLUMN model_versions.train_from_offsets IS 'Order-event topic offsets per partition ({"0": 123, ...}) where the training data starts; train_to_offsets where it ends.';
COMMENT ON COLUMN model_versions.metrics IS 'Held-out evaluation: hit rate, log-loss / Brier, calibration, simulated PnL after fees, sample counts.';
COMMENT ON COLUMN model_versions.live_metrics IS 'Quality measured on live outcomes since promotion; drives rollback.';
CREATE UNIQUE INDEX model_versions_one_active ON model_versions ((true)) WHERE status = 'active';
CREATE INDEX model_versions_created_idx ON model_versions (created_at);

CREATE TABLE training_samples (
  signal_id        uuid PRIMARY KEY,
  asset            text NOT NULL,
  side             text CHECK (side IN ('buy', 'sell')),
  ts               timestamptz NOT NULL,
  features         double precision[] NOT NULL,
  feature_spec     text NOT NULL,
  label            double precision,
  reward           double precision,
  outcome          text,
  is_warmup        boolean NOT NULL DEFAULT false,
  model_version    text,
  strategy_id      text,
  source_topic     text,
  source_partition integer,
  source_offset    bigint,
  source_offsets   jsonb,
  created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE training_samples IS 'One labelled training window per signal (features at signal time, label / reward from the realised outcome net of fees and slippage, rejections included). Unique per signal_id: rebuilding from the same offsets yields the same rows.';
COMMENT ON COLUMN training_samples.features IS 'Feature vector in the order given by feature_spec.';
COMMENT ON COLUMN training_samples.feature_spec IS 'Identifier (name or hash) of the feature specification the vector follows.';
COMMENT ON COLUMN training_samples.outcome IS 'How the signal ended: filled, partially_filled, cancelled, rejected, ...';
COMMENT ON COLUMN training_samples.source_offsets IS 'The order-event topic offsets the sample was built from (topic/partition/offset of each event).';
CREATE INDEX training_samples_ts_idx ON training_samples (ts);
CREATE INDEX training_samples_asset_ts_idx ON training_samples (asset, ts);
CREATE INDEX training_samples_source_idx ON training_samples (source_topic, source_partition, source_offset);

CREATE TABLE model_mode_transitions (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  from_mode     text NOT NULL CHECK (from_mode IN ('warmup', 'model')),
  to_mode       text NOT NULL CHECK (to_mode IN ('warmup', 'model')),
  model_version text REFERENCES model_versions (version),
  reason        text NOT NULL,
  metrics       jsonb NOT NULL DEFAULT '{}'::jsonb,
  at            timestamptz NOT NULL DEFAULT now(),
  CHECK (to_mode <> 'model' OR model_version IS NOT NULL)
);
COMMENT ON TABLE model_mode_transitions IS 'Every switch between warm-up and model mode (and between model versions): reason (quality threshold reached, degradation, rollback, manual) and the metrics it was judged on.';
CREATE INDEX model_mode_transitions_at_idx ON model_mode_transitions (at);
