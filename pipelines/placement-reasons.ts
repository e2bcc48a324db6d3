// Placement's own reason codes on orders.submissions (`reason_code`), written by the placement
// stage (place.ts) and read by tracking's state machine (order-state.ts). Bybit's refusals use the
// codes of connectors/bybit-errors.ts.
export const PLACEMENT_REASONS = {
  expired: 'expired',
  superseded: 'superseded',
  targetSuperseded: 'target_superseded',
  invalidIntent: 'invalid_intent',
  resolvedByQuery: 'resolved_by_query',
  alreadyApplied: 'already_applied',
  alreadyCancelled: 'already_cancelled',
} as const;
