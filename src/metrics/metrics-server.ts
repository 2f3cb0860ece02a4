// The metrics and health endpoint: plain HTTP on its own port, apart from the mTLS gRPC
// listener, so a scraper or a load balancer probe needs no client certificate.
//
//   GET /metrics  Prometheus text exposition
//   GET /healthz  200 while the process runs (liveness)
//   GET /readyz   200 when ready, else 503 with {"ready":false,"reasons":[…]}
//
// HEAD is answered like GET without a body (HTTP requires it of general-purpose
// servers); other methods get 405 with an Allow header, other paths 404. A malformed
// request gets 400 from the parser hook; a failing handler gets 500; neither stops the
// server. Nothing here echoes request data back.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Metrics } from './metrics.js';
import type { Readiness } from './readiness.js';

export interface MetricsServerOptions {
  /** `host:port`; `[v6]:port` for IPv6 literals; port 0 picks a free one. */
  listen: string;
  metrics: Pick<Metrics, 'text' | 'contentType'>;
  ready: () => Readiness;
}

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  port: number;
  host: string;
  /** Stops listening and closes idle and open connections. Idempotent. */
  close(): Promise<void>;
}

/** Splits `host:port`. Throws a TypeError naming what is wrong. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen);
  if (!m)
    throw new TypeError(
      `metrics listen address must be host:port (or [ipv6]:port), got ${JSON.stringify(listen)}`,
    );
  const port = Number(m[3]);
  if (port > 65535) throw new TypeError(`metrics listen port must be 0..65535, got ${port}`);
  return { host: (m[1] ?? m[2])!, port };
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListen(opts.listen);

  const server = createServer((req, res) => {
    handle(opts, req, res).catch(() => {
      if (!res.headersSent)
        send(res, 500, 'text/plain; charset=utf-8', 'internal error\n', req.method === 'HEAD');
      else res.destroy();
    });
  });
  // Scrapes are small and quick: do not let slow or idle clients hold sockets for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  server.on('clientError', (_err, socket: Socket) => {
    if (socket.writable && !socket.destroyed) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    } else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // A later server error (none expected once listening) must not crash the daemon.
  server.on('error', () => undefined);

  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    host,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function handle(opts: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // A GET has no body; drain whatever a client sends so the connection stays usable.
  req.resume();
  const head = req.method === 'HEAD';
  const path = pathOf(req.url);
  if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n', head);
    return;
  }
  if (req.method !== 'GET' && !head) {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false);
    return;
  }
  if (path === '/healthz') {
    send(res, 200, 'text/plain; charset=utf-8', 'ok\n', head);
    return;
  }
  if (path === '/readyz') {
    let r: Readiness;
    try {
      r = opts.ready();
    } catch {
      r = { ready: false, reasons: ['readiness check failed'] };
    }
    const ready = r.ready === true;
    const reasons = ready
      ? []
      : Array.isArray(r.reasons) && r.reasons.length > 0
        ? r.reasons.map(String)
        : ['not ready'];
    send(
      res,
      ready ? 200 : 503,
      'application/json; charset=utf-8',
      `${JSON.stringify({ ready, reasons })}\n`,
      head,
    );
    return;
  }
  const text = await opts.metrics.text();
  send(res, 200, opts.metrics.contentType, text, head);
}

function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.search(/[?#]/);
  return q === -1 ? url : url.slice(0, q);
}

function send(res: ServerResponse, code: number, type: string, body: string, head: boolean): void {
  const buf = Buffer.from(body, 'utf8');
  res.statusCode = code;
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', buf.length);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.end(head ? undefined : buf);
}
