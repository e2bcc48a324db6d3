// TypeScript shapes of the Avro records in schemas/*.avsc, written by hand so they read well in the
// stages. They are kept in sync with the .avsc files by tests/schemas/types.test.ts: every sample in
// samples.ts is typed by these interfaces, must be `isValid` for its schema, and must name exactly
// the schema's fields (nested records too). Conventions, as in the schemas:
//   - optional fields are `T | null` (Avro union with null, default null), never `undefined`;
//   - times are epoch milliseconds (Avro long, logicalType timestamp-millis) as JS numbers;
//   - exchange/order decimals are exact strings; the signal's own floats stay numbers (as in the seed).

// ---- shared pieces --------------------------------------------------------------------------------

export type SignalType = 'buy' | 'sell';
export type Category = 'spot' | 'linear';
export type OrderSide = 'Buy' | 'Sell';
export type OrderType = 'Market' | 'Limit';
export type MarketUnit = 'baseCoin' | 'quoteCoin';
export type TimeInForce = 'GTC' | 'IOC' | 'FOK' | 'PostOnly';
export type IntentAction = 'create' | 'amend' | 'cancel';
export type SubmissionOutcome = 'accepted' | 'rejected' | 'already_placed' | 'unknown';
export type ExchangeSource = 'ws' | 'rest' | 'reconciler';

export const ORDER_EVENT_TYPES = [
  'signal_rejected',
  'order_submitted',
  'order_submit_failed',
  'order_submission_unknown',
  'order_acknowledged',
  'order_partially_filled',
  'order_filled',
  'order_amended',
  'order_amend_rejected',
  'order_cancelled',
  'order_partially_filled_cancelled',
  'order_cancel_rejected',
  'order_rejected',
  'order_expired',
  'order_untriggered',
  'order_triggered',
  'order_deactivated',
  'order_adopted',
  'other',
] as const;
export type OrderEventType = (typeof ORDER_EVENT_TYPES)[number];

export interface OrderbookDepth {
  bid_depth: number;
  ask_depth: number;
}

export interface MarketDataSnapshot {
  price: number;
  spread: number;
  volume_24h: number;
  volatility: number;
  orderbook_depth: OrderbookDepth | null;
  /** Numeric indicators by name; nested input objects flattened with dotted keys. */
  technical_indicators: Record<string, number> | null;
}

/** The originating signal's context, carried by intents and submissions. */
export interface SignalContext {
  signal_id: string;
  signal_type: SignalType;
  asset: string;
  amount: number;
  confidence: number;
  strategy_id: string;
  model_version: string | null;
  is_warmup: boolean;
  trace_id: string | null;
  /** Epoch ms. */
  signal_timestamp: number;
  snapshot_price: number | null;
}

// ---- records, one per schema ------------------------------------------------------------------------

/** signals.valid: a validated signal. */
export interface Signal {
  signal_id: string;
  signal_type: SignalType;
  asset: string;
  amount: number;
  confidence: number;
  /** Epoch ms. */
  timestamp: number;
  strategy_id: string;
  model_version: string | null;
  is_warmup: boolean;
  market_data_snapshot: MarketDataSnapshot;
  /** The metadata object as JSON text. */
  metadata: string | null;
  trace_id: string | null;
  received_at: number;
  validated_at: number | null;
}

export interface ModelSignalMetadata {
  reasoning: string | null;
  risk_score: number | null;
  randomness_level: number | null;
  mode: string | null;
  /** Further metadata as JSON object text. */
  extra: string | null;
}

/** model.signals: what the model service emits (the seed's signal JSON). */
export interface ModelSignal {
  signal_id: string;
  signal_type: SignalType;
  asset: string;
  amount: number;
  confidence: number;
  /** Epoch ms (ISO 8601 in the published JSON). */
  timestamp: number;
  strategy_id: string;
  model_version: string | null;
  is_warmup: boolean;
  market_data_snapshot: MarketDataSnapshot;
  metadata: ModelSignalMetadata | null;
  trace_id: string | null;
}

/** orders.intents: a create / amend / cancel decision. */
export interface OrderIntent {
  intent_id: string;
  action: IntentAction;
  order_link_id: string;
  target_order_id: string | null;
  sequence: number;
  signal: SignalContext | null;
  category: Category;
  symbol: string;
  side: OrderSide;
  order_type: OrderType;
  qty: string | null;
  price: string | null;
  market_unit: MarketUnit | null;
  time_in_force: TimeInForce;
  reduce_only: boolean;
  expires_at: number | null;
  decided_at: number;
  reason: string;
  reason_detail: string | null;
}

/** orders.submissions: outcome of an intent's REST call(s). */
export interface OrderSubmission {
  intent_id: string;
  order_link_id: string;
  action: IntentAction;
  outcome: SubmissionOutcome;
  order_id: string | null;
  ret_code: number;
  ret_msg: string;
  reason_code: string | null;
  attempts: number;
  sent_at: number;
  acked_at: number | null;
  category: Category;
  symbol: string;
  side: OrderSide;
  order_type: OrderType;
  qty: string | null;
  price: string | null;
  market_unit: MarketUnit | null;
  signal: SignalContext | null;
}

/** exchange.orders: one Bybit v5 order stream item. */
export interface ExchangeOrderUpdate {
  orderId: string;
  orderLinkId: string;
  symbol: string;
  category: string;
  side: string;
  orderType: string;
  price: string;
  qty: string;
  marketUnit: string | null;
  timeInForce: string | null;
  orderStatus: string;
  cumExecQty: string;
  cumExecValue: string;
  cumExecFee: string;
  avgPrice: string;
  leavesQty: string;
  rejectReason: string;
  cancelType: string | null;
  reduceOnly: boolean | null;
  createdTime: number;
  updatedTime: number;
  source: ExchangeSource;
  streamMessageId: string | null;
  creationTime: number | null;
  observedAt: number;
}

/** exchange.executions: one Bybit v5 fill. */
export interface Execution {
  execId: string;
  orderId: string;
  orderLinkId: string;
  symbol: string;
  category: string;
  side: string;
  orderType: string | null;
  execType: string | null;
  execPrice: string;
  execQty: string;
  execValue: string | null;
  execFee: string;
  feeCurrency: string | null;
  feeRate: string | null;
  isMaker: boolean;
  leavesQty: string | null;
  execTime: number;
  source: ExchangeSource;
  observedAt: number;
  /** TakeProfit, StopLoss, TrailingStop, PartialTakeProfit, PartialStopLoss: a fill of the exchange's TP/SL order of a position. */
  stopOrderType: string | null;
}

/** exchange.positions: one Bybit v5 position snapshot. */
export interface Position {
  category: string;
  symbol: string;
  side: string;
  size: string;
  positionIdx: number;
  avgPrice: string;
  positionValue: string;
  markPrice: string | null;
  liqPrice: string | null;
  leverage: string | null;
  positionIM: string | null;
  unrealisedPnl: string;
  cumRealisedPnl: string;
  positionStatus: string | null;
  updatedTime: number;
  source: ExchangeSource;
  observedAt: number;
}

export interface CoinBalance {
  coin: string;
  equity: string;
  walletBalance: string;
  free: string | null;
  locked: string;
  availableToWithdraw: string | null;
  usdValue: string | null;
  unrealisedPnl: string | null;
  cumRealisedPnl: string | null;
  totalOrderIM: string | null;
  totalPositionIM: string | null;
}

/** exchange.wallet: one Bybit v5 wallet snapshot of an account. */
export interface WalletBalance {
  accountType: string;
  totalEquity: string | null;
  totalWalletBalance: string | null;
  totalAvailableBalance: string | null;
  totalMarginBalance: string | null;
  coin: CoinBalance[];
  updatedTime: number;
  source: ExchangeSource;
  observedAt: number;
}

/** market.tickers: best bid/ask and last price of one symbol. */
export interface Ticker {
  symbol: string;
  category: string;
  lastPrice: string;
  bid1Price: string | null;
  bid1Size: string | null;
  ask1Price: string | null;
  ask1Size: string | null;
  volume24h: string;
  turnover24h: string | null;
  price24hPcnt: string | null;
  markPrice: string | null;
  ts: number;
  source: ExchangeSource;
  observedAt: number;
}

export interface OrderLatencies {
  signal_to_submitted_ms: number | null;
  submitted_to_ack_ms: number | null;
  submitted_to_first_fill_ms: number | null;
  to_final_ms: number | null;
}

/** orders.events: one enriched order event (also mirrored to RabbitMQ as JSON). */
export interface OrderEvent {
  event_id: string;
  event_type: OrderEventType;
  occurred_at: number;
  observed_at: number;
  order_link_id: string | null;
  order_id: string | null;
  status: string | null;
  previous_status: string | null;
  category: string | null;
  symbol: string | null;
  side: string | null;
  order_type: string | null;
  qty: string | null;
  price: string | null;
  filled_qty: string | null;
  avg_fill_price: string | null;
  fees: string | null;
  fee_currency: string | null;
  remaining_qty: string | null;
  last_exec_id: string | null;
  last_exec_qty: string | null;
  last_exec_price: string | null;
  slippage_bps: number | null;
  latencies: OrderLatencies;
  reason_code: string | null;
  reason_detail: string | null;
  signal_id: string | null;
  strategy_id: string | null;
  model_version: string | null;
  is_warmup: boolean | null;
  confidence: number | null;
  trace_id: string | null;
  source: string | null;
  external: boolean;
  sequence: number | null;
}

/** *.dlq: a record that could not be processed, with its original bytes. */
export interface DeadLetter {
  original_topic: string;
  original_partition: number;
  original_offset: number;
  original_timestamp: number | null;
  original_key: Buffer | null;
  original_value: Buffer | null;
  headers: Record<string, string>;
  stage: string;
  reason_code: string;
  reason_detail: string;
  error_kind: string | null;
  attempts: number;
  signal_id: string | null;
  trace_id: string | null;
  failed_at: number;
}

// ---- the catalogue -----------------------------------------------------------------------------------

/** Record kind (= Avro record name, without namespace) to its TypeScript type. */
export interface RecordTypes {
  Signal: Signal;
  OrderIntent: OrderIntent;
  OrderSubmission: OrderSubmission;
  ExchangeOrderUpdate: ExchangeOrderUpdate;
  Execution: Execution;
  Position: Position;
  WalletBalance: WalletBalance;
  Ticker: Ticker;
  OrderEvent: OrderEvent;
  ModelSignal: ModelSignal;
  DeadLetter: DeadLetter;
}

export type RecordKind = keyof RecordTypes;

export const RECORD_KINDS = [
  'Signal',
  'OrderIntent',
  'OrderSubmission',
  'ExchangeOrderUpdate',
  'Execution',
  'Position',
  'WalletBalance',
  'Ticker',
  'OrderEvent',
  'ModelSignal',
  'DeadLetter',
] as const satisfies readonly RecordKind[];

/** The .avsc file of each record kind, relative to this folder. */
export const SCHEMA_FILES: Readonly<Record<RecordKind, string>> = Object.freeze({
  Signal: 'signal.avsc',
  OrderIntent: 'order-intent.avsc',
  OrderSubmission: 'order-submission.avsc',
  ExchangeOrderUpdate: 'exchange-order-update.avsc',
  Execution: 'execution.avsc',
  Position: 'position.avsc',
  WalletBalance: 'wallet-balance.avsc',
  Ticker: 'ticker.avsc',
  OrderEvent: 'order-event.avsc',
  ModelSignal: 'model-signal.avsc',
  DeadLetter: 'dead-letter.avsc',
});

/**
 * Default topic -> record kind, mirroring the topic catalogue in runtime/topics.ts (a test checks
 * they agree). `signals.raw` carries the original JSON bytes, not Avro, so it has no entry. Any
 * other topic ending in `.dlq` carries DeadLetter.
 */
export const DEFAULT_TOPIC_RECORDS: Readonly<Record<string, RecordKind>> = Object.freeze({
  'signals.valid': 'Signal',
  'signals.dlq': 'DeadLetter',
  'orders.intents': 'OrderIntent',
  'orders.submissions': 'OrderSubmission',
  'orders.dlq': 'DeadLetter',
  'exchange.orders': 'ExchangeOrderUpdate',
  'exchange.executions': 'Execution',
  'exchange.positions': 'Position',
  'exchange.wallet': 'WalletBalance',
  'exchange.dlq': 'DeadLetter',
  'market.tickers': 'Ticker',
  'orders.events': 'OrderEvent',
  'model.signals': 'ModelSignal',
});
