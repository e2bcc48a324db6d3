// The order manager signs Bybit requests with node's crypto (connectors/bybit-sign.ts) through
// bybit-api's customSignMessageFn. Its signatures must be the very ones bybit-api's default signer
// (the Web Crypto API) makes, for both key types Bybit takes: an HMAC secret and an RSA private key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import { signMessage } from '../../connectors/bybit-sign.ts';

const require = createRequire(import.meta.url);
const webCrypto = require('bybit-api/lib/util/webCryptoAPI.js') as { signMessage: (message: string, secret: string, method?: 'hex' | 'base64') => Promise<string> };

// What bybit-api signs: a REST request's timestamp + key + recv_window + query or body, and a
// websocket's "GET/realtime" + expiry.
const messages = ['1733551234567sim-key5000category=spot&symbol=BTCUSDT', '1733551234567sim-key5000{"category":"linear","symbol":"ÉTHUSDT","qty":"0.01"}', 'GET/realtime1733551299999', ''];

test('HMAC secrets: the same hex signatures as bybit-api\'s default signer', async () => {
  for (const secret of ['sim-secret', 'a'.repeat(100)]) {
    for (const m of messages) assert.equal(await signMessage(m, secret), await webCrypto.signMessage(m, secret), `${secret.slice(0, 10)} / ${m}`);
  }
  assert.match(await signMessage(messages[0]!, 'sim-secret'), /^[0-9a-f]{64}$/);
  assert.notEqual(await signMessage(messages[0]!, 'sim-secret'), await signMessage(messages[0]!, 'other-secret'));
});

test('RSA private keys (PKCS#8 and PKCS#1 PEM): the same base64 signatures as bybit-api\'s default signer', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const pkcs1 = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  assert.match(pkcs1, /BEGIN RSA PRIVATE KEY/);
  for (const m of messages) {
    const ours = await signMessage(m, pkcs8);
    assert.equal(ours, await webCrypto.signMessage(m, pkcs8), m);
    assert.equal(await signMessage(m, pkcs1), ours, 'the same key in PKCS#1 signs the same');
    assert.match(ours, /^[A-Za-z0-9+/]+=*$/);
  }
});
