-- 005_decisions_order_link.sql: find the risk stage's pending amend / cancel decisions of an order.
--
-- Before every chunk the risk and sizing stage reads each open order with the newest amend or cancel
-- it decided for that order after the row's last change (not yet confirmed by the exchange), so a
-- later signal neither cancels the same order twice nor undercounts an amended order's exposure.
-- Conventions: see the header of 001_orders.sql.
CREATE INDEX decisions_order_link_at_idx ON decisions (order_link_id, at) WHERE order_link_id IS NOT NULL;
