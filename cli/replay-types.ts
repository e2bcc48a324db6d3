// The replay's options and report, shared by its parts (cli/replay*.ts).

/** One recorded signal: the raw bytes as received, with what the replay needs to know of them. */
export interface SourceRecord {
  value: Buffer;
  key: string | null;
  traceId: string | null;
  /** Kafka record timestamp (topic source) or null (file). */
  recordTime: number | null;
}

/** Per-partition offsets: one number for every partition, or partition → offset. */
export type OffsetSpec = number | Record<number, number>;

export interface ReplayOptions {
  /** Report name: reports/backtest-<name>.{json,html}. */
  name: string;
  /** Simulator seed (default 1). */
  seed?: number;
  /** JSON-lines file of signals (one signal JSON per line). */
  file?: string;
  /** Source namespace (TOPIC_PREFIX) whose `signals.raw` topic is replayed. */
  topicPrefix?: string;
  /** First offset per partition (inclusive); default the partition's start. */
  fromOffset?: OffsetSpec;
  /** Last offset per partition (exclusive); default the high watermark when the replay starts. */
  toOffset?: OffsetSpec;
  /** Record timestamps (epoch ms) from (inclusive) / to (exclusive). */
  fromTime?: number;
  toTime?: number;
  /** Where reports go (default `reports`). */
  reportsDir?: string;
  /** Progress bar on stderr (default true). */
  progress?: boolean;
  /** How long one signal may take through the pipeline before the replay moves on (default 30 s). */
  signalTimeoutMs?: number;
  /** Longest simulated market time between two signals (default 60 s); see docs/backtest.md. */
  maxGapMs?: number;
  /** pino level of the replayed services (default silent). */
  logLevel?: string;
  /** Extra settings for the replayed services (e.g. RISK_MAX_ORDER_NOTIONAL). */
  settings?: Record<string, string>;
  /** Stops the replay between signals; the namespace is still cleaned up. */
  signal?: AbortSignal;
  /** Strategies compared (default all four: recorded, warm-up, buy-and-hold, coin-flip); the recorded one always runs. */
  strategies?: Array<'recorded' | 'warm-up' | 'buy-and-hold' | 'coin-flip'>;
  /** Seed of the coin flip and of the warm-up heuristic's ties (default: the simulator seed). */
  coinSeed?: number;
  /** Most strategy worlds run at once (default: all of them). */
  parallel?: number;
}

/** One strategy of the comparison (cli/replay-strategies.ts), measured in its own world. */
export interface StrategyComparisonRow {
  strategy: 'recorded' | 'warm-up' | 'buy-and-hold' | 'coin-flip';
  /** strategy_id of its signals (null: the recorded ones, as recorded). */
  strategy_id: string | null;
  signals: number;
  placed: number;
  fills: number;
  volume: number;
  fees: number;
  realised_pnl: number;
  unrealised_pnl: number;
  /** After fees, marked to the final mids. */
  pnl: number;
  /** Side sent at each recorded signal, in replay order: B buy, S sell, . nothing. */
  sides: string;
  /** Signals with fills, judged for the hit rate. */
  trades: number;
  /** Share of trades the mid moved the way of, until the strategy's next trade in the asset (or the end). */
  hit_rate: number | null;
  /** Executed value / capital. */
  turnover: number;
  max_drawdown: number;
  /** Mean / standard deviation of the per-signal returns (equity change over one recorded signal, / capital). */
  sharpe_per_signal: number | null;
  /** Equity after each recorded signal, index 0 before the first (as `equity_curve`). */
  equity_curve: number[];
}

export interface StrategyRow {
  strategy_id: string;
  signals: number;
  placed: number;
  rejected: number;
  orders: number;
  fills: number;
  volume: number;
  fees: number;
  realised_pnl: number;
  unrealised_pnl: number;
  pnl: number;
}

export interface SignalRow {
  index: number;
  signal_id: string | null;
  strategy_id: string | null;
  asset: string | null;
  side: string | null;
  /** placed | rejected | invalid (refused before any decision) | timeout */
  outcome: string;
  reason: string | null;
  orders: number;
  fills: number;
}

export interface BacktestReport {
  name: string;
  seed: number;
  input: { source: 'file' | 'topic'; what: string; records: number };
  settings: Record<string, string>;
  signals: { total: number; placed: number; rejected: number; invalid: number; timeouts: number; reasons: Record<string, number> };
  orders: number;
  fills: number;
  volume: number;
  fees: number;
  slippage_bps: { avg_weighted: number; avg: number; worst: number };
  pnl: { realised: number; unrealised: number; total: number };
  max_drawdown: { amount: number; peak_index: number; trough_index: number };
  final_prices: Record<string, number>;
  per_strategy: StrategyRow[];
  per_signal: SignalRow[];
  /** Equity (PnL of the replayed trades, USDT) after each signal; index 0 = before the first. */
  equity_curve: Array<{ index: number; equity: number }>;
  /** The strategy comparison, one row per strategy, each measured in its own world (docs/backtest.md). */
  strategies: StrategyComparisonRow[];
  /** What the comparison is measured against and how the alternatives were drawn. */
  comparison: {
    /** Total amount of the usable recorded signals, USDT: base of turnover and returns. */
    capital: number;
    coin_seed: number;
    /** WARMUP_HEURISTIC of the warm-up row. */
    heuristic: string;
    /** Where the warm-up heuristic's features came from, per signal. */
    warmup_features: { recorded: number; replay_market: number; none: number };
  };
}

export interface ReplayResult {
  report: BacktestReport;
  jsonPath: string;
  htmlPath: string;
}

