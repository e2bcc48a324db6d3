// Child process of tests/security/security.test.ts (not a test itself): real failing Bybit calls through the unmodified
// bybit-api client (the project's client options, from the environment: BYBIT_ENV=sim,
// BYBIT_SIM_PORT = a server that answers 500 or closes the connection), and every way the errors are
// written: the REST adapter's own debug lines, its mapped errors (whose cause is the client's error)
// logged, the client's raw errors logged as they are and wrapped as a cause (as exchange-sync wraps
// them); with the argument `startup`, then the startup failure path of a service (`failStartup`,
// which exits the process) with such an error as the cause.
import { RestClientV5 } from 'bybit-api';
import { loadConfig } from '../../runtime/config.ts';
import { createLogger } from '../../runtime/logger.ts';
import { RetriableError } from '../../runtime/errors.ts';
import { clientOptions, createBybitRest, parseConfig as restConfig } from '../../connectors/bybit-rest.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const cfg = loadConfig(process.env, UNIT_SCHEMAS);
const log = createLogger(cfg, 'leak-probe');
const rest = createBybitRest({ config: restConfig(cfg), logger: log });
try {
  await rest.createOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price: '50000', orderLinkId: 'leak-probe-1' });
} catch (err) {
  log.warn({ err }, 'create failed (mapped error, the client error as its cause)');
}
try {
  await rest.findOrder({ category: 'linear', symbol: 'BTCUSDT', orderLinkId: 'leak-probe-1' });
} catch (err) {
  log.warn({ err }, 'query failed (mapped error, the client error as its cause)');
}
const client = new RestClientV5(clientOptions(restConfig(cfg)));
let last: unknown = null;
for (const call of [() => client.getWalletBalance({ accountType: 'UNIFIED' }), () => client.getActiveOrders({ category: 'linear' })]) {
  try {
    await call();
  } catch (raw) {
    last = raw;
    log.debug({ err: raw, raw }, 'the client error as it is');
    log.error({ err: new RetriableError('bybit_unreachable', 'wallet-balance', undefined, { cause: raw }) }, 'wrapped as a cause');
  }
}
process.stdout.write('probe: calls done\n');
if (process.argv[2] === 'startup') {
  const { failStartup } = await import('../../stack/service-main.ts');
  failStartup(new RetriableError('bybit_unreachable', 'exchange state could not be loaded', undefined, { cause: new RetriableError('bybit_unreachable', 'wallet-balance', undefined, { cause: last }) }), 'leak-probe');
}
