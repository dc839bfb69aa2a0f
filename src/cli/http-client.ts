/**
 * The CLI's HTTP client: one request helper that turns the server's `{ error, message }`
 * answers and network failures into CliError with an exit code, so every command reports
 * failures the same way.
 */

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

let clientToken: string | undefined;

/** The token every later request sends (`Authorization: Bearer`); undefined sends none. */
export function setClientToken(token: string | undefined): void {
  clientToken = token === undefined || token === '' ? undefined : token;
}

export async function request(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  let url: URL;
  try {
    url = new URL(path, base.endsWith('/') ? base : `${base}/`);
  } catch {
    throw new CliError(`--url ${JSON.stringify(base)} is not a valid URL`, 2);
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(clientToken === undefined ? {} : { authorization: `Bearer ${clientToken}` }),
        ...options.headers,
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (res.status >= 400) {
    const err = body as { error?: string; message?: string };
    throw new CliError(`${res.status} ${err.error ?? res.statusText}: ${err.message ?? text}`);
  }
  return { status: res.status, body, headers: res.headers };
}

/** Encodes a collection and id into the document path. */
export function docPath(collection: string, id: string): string {
  return `db/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`;
}
