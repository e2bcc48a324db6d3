// Bybit v5 authentication, checked exactly as the exchange does it:
//  REST: X-BAPI-SIGN = hex HMAC-SHA256(secret, timestamp + apiKey + recvWindow + payload), where
//        payload is the raw query string (GET) or the raw JSON body (POST); the timestamp must
//        satisfy serverTime - recvWindow <= timestamp < serverTime + 1000.
//  WS:   {op:'auth', args:[apiKey, expires, signature]}, signature = hex HMAC-SHA256(secret,
//        'GET/realtime' + expires), expires in the future.
// Times are compared with the wall clock (`authClock`): clients sign with Date.now() even when the
// exchange runs on a manual clock.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../runtime/clock.ts';
import { RetCode, SimError } from './errors.ts';

export interface Credential {
  key: string;
  secret: string;
  uid: string;
}

export function hmacHex(secret: string, message: string): string {
  return createHmac('sha256', secret).update(message).digest('hex');
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase());
  const y = Buffer.from(b.toLowerCase());
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Authenticator {
  private readonly byKey = new Map<string, Credential>();

  constructor(credentials: Credential[], private readonly clock: Clock) {
    for (const c of credentials) this.byKey.set(c.key, c);
  }

  credential(key: string): Credential | undefined {
    return this.byKey.get(key);
  }

  add(c: Credential): void {
    this.byKey.set(c.key, c);
  }

  /** Returns the caller's uid or throws the SimError Bybit would answer with. */
  verifyRest(headers: Record<string, string | string[] | undefined>, payload: string): Credential {
    const h = (name: string) => {
      const v = headers[name.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    };
    const key = h('X-BAPI-API-KEY');
    if (!key) throw new SimError(RetCode.API_KEY, 'API key is invalid.');
    const cred = this.byKey.get(key);
    if (!cred) throw new SimError(RetCode.API_KEY, 'API key is invalid.');
    const tsRaw = h('X-BAPI-TIMESTAMP');
    const sign = h('X-BAPI-SIGN');
    const recvRaw = h('X-BAPI-RECV-WINDOW') ?? '5000';
    const ts = Number(tsRaw);
    const recv = Number(recvRaw);
    const now = this.clock.now();
    if (!tsRaw || !Number.isFinite(ts) || !Number.isFinite(recv) || recv <= 0) {
      throw new SimError(RetCode.PARAMS, 'params error: X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW must be numbers');
    }
    if (ts < now - recv || ts >= now + 1000) {
      throw new SimError(
        RetCode.TIMESTAMP,
        `invalid request, please check your server timestamp or recv_window param. req_timestamp[${ts}],server_timestamp[${now}],recv_window[${recv}]`,
      );
    }
    const origin = `${tsRaw}${key}${recvRaw}${payload}`;
    if (!sign || !sameHex(sign, hmacHex(cred.secret, origin))) {
      throw new SimError(RetCode.SIGN, `error sign! origin_string[${tsRaw}${'*'.repeat(Math.min(8, key.length))}${recvRaw}${payload}]`);
    }
    return cred;
  }

  /** WS auth op. Returns the credential or an error message for {success:false, ret_msg}. */
  verifyWs(args: unknown): Credential | { error: string } {
    if (!Array.isArray(args) || args.length < 3) return { error: 'Params Error' };
    const [key, expires, signature] = args as [unknown, unknown, unknown];
    const cred = typeof key === 'string' ? this.byKey.get(key) : undefined;
    if (!cred) return { error: 'Invalid apikey' };
    const exp = Number(expires);
    if (!Number.isFinite(exp)) return { error: 'Params Error' };
    if (exp <= this.clock.now()) return { error: 'error:request expired' };
    if (typeof signature !== 'string' || !sameHex(signature, hmacHex(cred.secret, `GET/realtime${expires}`))) {
      return { error: 'Invalid sign' };
    }
    return cred;
  }
}
