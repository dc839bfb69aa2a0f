/**
 * Webhook delivery of trigger events: one POST per event, the event as JSON, its idempotency
 * key in a header. Any 2xx acknowledges it; anything else (another status, a network error,
 * no answer within the timeout) rejects, and the trigger core retries with backoff, with the
 * same key. Redirects are not followed: a receiver that moved is a configuration error to see.
 *
 * Configured header values may hold secrets: they are sent, never logged, and failure messages
 * (which /status shows as `lastError`) name the URL without its credentials or query.
 */
import type { WebhookTarget } from './trigger-config.js';

/** What a delivery needs of a trigger event: it is sent whole, as JSON. */
export interface WebhookEvent {
  /** The idempotency key: the same for every attempt at delivering one write, at every leader. */
  key: string;
}

export type WebhookHandler = (event: WebhookEvent) => Promise<void>;

/**
 * The URL as failure messages show it: scheme, host and port. A path can be a secret too
 * (many services put the webhook's key in it), and so can a query or credentials.
 */
export function describeUrl(url: string): string {
  const u = new URL(url);
  return u.pathname === '/' && u.search === '' ? u.origin : `${u.origin}/...`;
}

/**
 * A trigger handler that POSTs each event to `target.url`. `trigger` names the trigger in the
 * `x-polyarch-trigger` header; `fetchImpl` is for tests (defaults to Node's global fetch).
 * Credentials in the URL (`https://user:pass@host/`) are sent as Basic authorization, unless
 * an `authorization` header is configured: fetch refuses them in the URL.
 */
export function webhookHandler(
  trigger: string,
  target: WebhookTarget,
  fetchImpl: typeof fetch = fetch,
): WebhookHandler {
  const url = new URL(target.url);
  const user = decode(url.username);
  const password = decode(url.password);
  const secrets = [
    ...Object.values(target.headers),
    user,
    password,
    url.search,
    url.pathname === '/' ? '' : url.pathname,
  ].filter((s) => s.length > 2);
  const headers: Record<string, string> = { ...target.headers };
  if (url.username !== '' || url.password !== '') {
    headers['authorization'] ??= `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  const shown = `POST ${describeUrl(target.url)}`;
  // Belt and braces: whatever an error says, it never shows a secret.
  const scrub = (text: string): string => secrets.reduce((t, secret) => t.split(secret).join('***'), text);
  return async (event) => {
    let res: Response;
    try {
      res = await fetchImpl(url.href, {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/json',
          'idempotency-key': event.key,
          'x-polyarch-trigger': trigger,
        },
        body: JSON.stringify(event),
        redirect: 'manual',
        signal: AbortSignal.timeout(target.timeoutMs),
      });
    } catch (e) {
      throw new Error(`${shown}: ${scrub(failure(e, target.timeoutMs))}`);
    }
    // The body is not read: the status is the answer. Cancelling frees the connection.
    await res.body?.cancel().catch(() => {});
    if (res.status < 200 || res.status > 299) {
      const redirect = res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : '';
      throw new Error(`${shown} answered ${res.status}${redirect}`);
    }
  };
}

/** A percent-encoded URL part, or the part as it is when it is not valid percent-encoding. */
function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Why a request got no answer, in a few words (undici puts the system error in `cause`). */
function failure(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  if (typeof err.cause?.code === 'string') return `request failed (${err.cause.code})`;
  return `request failed: ${err.cause?.message ?? err.message ?? String(e)}`;
}
