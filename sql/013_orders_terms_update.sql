-- 013_orders_terms_update.sql: the exchange time of the update that last changed an order's terms.
-- Additive only.
--
-- Tracking decides whether an accepted amend's submission, arriving after the order stream's
-- updates, is still pending: it is not once an update sent after the amend changed the terms, the
-- amend's own terms or a later amend's (pipelines/order-state.ts). last_exchange_update_ms moves
-- with every update (a fill too), so it cannot tell; this column moves only with a terms change.
-- Conventions: see the header of 001_orders.sql.
ALTER TABLE orders ADD COLUMN terms_update_ms bigint;
-- Rows written before this migration: unknown (NULL), so an amend accepted before the upgrade and
-- replayed after it is judged by its own terms only, as that release did.
COMMENT ON COLUMN orders.terms_update_ms IS 'Bybit updatedTime (ms) of the newest exchange update that changed the order''s price or quantity (an amend shown); NULL when none did or before this column existed.';
