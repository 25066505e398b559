/** Helpers shared by the server's tests: start on loopback port 0, read SSE streams. */
import { type BuildServerOptions, buildServer, type KascadeServer } from './server.js';

export interface Started {
  readonly server: KascadeServer;
  readonly url: string;
  close(): Promise<void>;
}

export async function start(options: BuildServerOptions): Promise<Started> {
  const server = await buildServer({ processMetrics: false, ...options });
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, url, close: () => server.shutdown({ graceMs: 0 }) };
}

export async function postJson(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Splits an SSE body into its `data:` payloads, checking the framing on the way. */
export function sseEvents(text: string): string[] {
  if (!text.endsWith('\n\n'))
    throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(text.slice(-40))}`);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((event) => {
      if (!event.startsWith('data: ') || event.includes('\n'))
        throw new Error(`bad SSE event: ${JSON.stringify(event)}`);
      return event.slice('data: '.length);
    });
}

export async function waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
